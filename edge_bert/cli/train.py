"""`edge-bert finetune` and `edge-bert distill` (and `run --distill`): the user's data -> a small model.

Registered on the main app by ``register(app)``. Torch and the converter modules are imported inside
the command bodies only: the runner side of the CLI must import no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from edge_bert.cli.common import fail as _fail
from edge_bert.cli.logs import quiet_verb
from edge_bert.errors import EdgeBertError
from edge_bert.render.terminal import console

DataOpt = Annotated[str, typer.Option("--data", help="Labelled training data (.tsv/.csv/.jsonl/.json or hub id).")]
EvalDataOpt = Annotated[
    Optional[str], typer.Option(help="Labelled evaluation data (default: none; accuracy is then not measured).")
]
SplitOpt = Annotated[Optional[str], typer.Option(help="Split of --data in a .json/hub dataset (e.g. train).")]
EvalSplitOpt = Annotated[Optional[str], typer.Option(help="Split of --eval-data (e.g. test).")]
TextColumnOpt = Annotated[Optional[str], typer.Option(help="Text column (default: text, sentence, ...).")]
LabelColumnOpt = Annotated[Optional[str], typer.Option(help="Label column (default: label, intent, ...).")]
OutOpt = Annotated[Path, typer.Option(help="Output directory (a save_pretrained model).")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Random seed (runs are deterministic per seed).")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="Torch threads (default 1: fastest on a small busy CPU).")]
EpochsOpt = Annotated[Optional[int], typer.Option(help="Training epochs.")]
MaxTrainOpt = Annotated[Optional[int], typer.Option(help="Random subsample of the training rows (0 = all).")]
BatchOpt = Annotated[Optional[int], typer.Option(help="Batch size.")]
MaxLengthOpt = Annotated[Optional[int], typer.Option(help="Token limit while training.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace OUT if it exists.")]


def _read(location: Optional[str], split: Optional[str], text_column: Optional[str], label_column: Optional[str]):
    from edge_bert.evaldata import read_labelled

    return None if location is None else read_labelled(location, text_column, label_column, split)


class _Bar:
    """A rich progress bar fed by the training loop's per-step callback: loss and examples/s."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, info: dict[str, Any]) -> None:
        stage = info["stage"]
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=info["total"], info="")
        terms = " ".join(f"{k} {v:.4f}" for k, v in info.items() if k not in _NOT_TERMS)
        text = f"epoch {info['epoch']}/{info['epochs']} {terms} {info['examples_per_s']:.0f} ex/s"
        self.progress.update(self.tasks[stage], completed=info["step"], info=text)


_NOT_TERMS = {"stage", "epoch", "epochs", "step", "total", "examples_per_s"}


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title=f"edge-bert {summary['command']} → {summary.get('out')}", show_header=False)
    rows = {k: v for k, v in summary.items() if k not in ("settings", "out", "command")}
    for key, value in rows.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    console.print(table)


@quiet_verb()
def finetune_command(
    base: Annotated[
        Optional[str], typer.Argument(help="Hub id or save_pretrained dir (default: embedded MiniLM).")
    ] = None,
    data: DataOpt = ...,  # type: ignore[assignment]
    out: OutOpt = ...,  # type: ignore[assignment]
    eval_data: EvalDataOpt = None,
    split: SplitOpt = None,
    eval_split: EvalSplitOpt = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    preset: Annotated[Optional[str], typer.Option(help="Measured settings: clinc150 | sst2.")] = None,
    epochs: EpochsOpt = None,
    max_train: MaxTrainOpt = None,
    frozen_layers: Annotated[
        Optional[int], typer.Option(help="Bottom encoder layers kept frozen and cached (BERT-type bases).")
    ] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate of the encoder layers that train.")] = None,
    head_lr: Annotated[Optional[float], typer.Option(help="Learning rate of the pooler and classifier.")] = None,
    batch_size: BatchOpt = None,
    max_length: MaxLengthOpt = None,
    seed: SeedOpt = None,
    threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False,
    revision: Annotated[Optional[str], typer.Option(help="Hub revision.")] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the checkpoint's own Python code to run.")] = False,
) -> None:
    """Fine-tune BASE on your labelled texts into a ...ForSequenceClassification directory (convert takes it).
    Writes OUT/training_log.jsonl and OUT/eval_summary.json; an interrupted run resumes from its last epoch."""
    try:
        from edge_bert.training.finetune import finetune, settings_for

        settings = settings_for(
            preset,
            epochs=epochs,
            max_train=max_train,
            frozen_layers=frozen_layers,
            lr=lr,
            head_lr=head_lr,
            batch_size=batch_size,
            max_length=max_length,
            seed=seed,
            threads=threads,
        )
        train = _read(data, split, text_column, label_column)
        evaluation = _read(eval_data, eval_split, text_column, label_column)
        with _Bar() as bar:
            summary = finetune(base, train, out, settings, evaluation, overwrite, revision, trust_remote_code, bar)
    except EdgeBertError as exc:
        raise _fail(exc) from exc
    _print_summary(summary)


@quiet_verb()
def distill_command(
    teacher: Annotated[Optional[str], typer.Argument(help="Teacher: hub id or dir (default: embedded MiniLM).")] = None,
    data: DataOpt = ...,  # type: ignore[assignment]
    layers: Annotated[int, typer.Option(help="Student layers (at most the teacher's).")] = ...,  # type: ignore[assignment]
    out: OutOpt = ...,  # type: ignore[assignment]
    hidden_size: Annotated[
        Optional[int], typer.Option(help="Student width (TinyBERT recipe; a multiple of the teacher's heads).")
    ] = None,
    recipe: Annotated[
        str, typer.Option(help="auto | distilbert | tinybert | embedding (auto: by teacher task and width).")
    ] = "auto",
    eval_data: EvalDataOpt = None,
    split: SplitOpt = None,
    eval_split: EvalSplitOpt = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    epochs: EpochsOpt = None,
    pred_epochs: Annotated[
        Optional[int], typer.Option(help="TinyBERT prediction-layer stage epochs (default 10).")
    ] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default 1e-4; TinyBERT 5e-4).")] = None,
    temperature: Annotated[
        Optional[float], typer.Option(help="Soft-target temperature (default 2; TinyBERT 1).")
    ] = None,
    alpha_kd: Annotated[Optional[float], typer.Option(help="DistilBERT: weight of the soft-target KL.")] = None,
    alpha_ce: Annotated[Optional[float], typer.Option(help="DistilBERT: weight of the hard-label CE.")] = None,
    alpha_cos: Annotated[Optional[float], typer.Option(help="DistilBERT: weight of the hidden-state cosine.")] = None,
    max_train: MaxTrainOpt = None,
    batch_size: BatchOpt = None,
    max_length: MaxLengthOpt = None,
    seed: SeedOpt = None,
    threads: ThreadsOpt = None,
    min_pct_of_teacher: Annotated[
        Optional[float], typer.Option(help="Gate: student accuracy as % of the teacher's (default 95).")
    ] = None,
    min_neighbour_recall: Annotated[
        Optional[float], typer.Option(help="Gate for embedding students (default 0.9).")
    ] = None,
    train_word_embeddings: Annotated[
        bool, typer.Option(help="Also train the word embeddings (default: kept as the teacher's; 2x faster steps).")
    ] = False,
    overwrite: OverwriteOpt = False,
    revision: Annotated[Optional[str], typer.Option(help="Hub revision.")] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the checkpoint's own Python code to run.")] = False,
) -> None:
    """Distil TEACHER into a --layers student (DistilBERT / TinyBERT / embedding recipe), gated on how much of
    the teacher it keeps on --eval-data. Exit 0 pass, 1 gate failed (the student is still written), 2 bad input."""
    summary = _distill(
        teacher,
        data,
        out,
        split,
        eval_data,
        eval_split,
        text_column,
        label_column,
        overwrite,
        revision,
        trust_remote_code,
        layers=layers,
        hidden_size=hidden_size,
        recipe=recipe,
        epochs=epochs,
        pred_epochs=pred_epochs,
        lr=lr,
        temperature=temperature,
        alpha_kd=alpha_kd,
        alpha_ce=alpha_ce,
        alpha_cos=alpha_cos,
        max_train=max_train,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        threads=threads,
        min_pct_of_teacher=min_pct_of_teacher,
        min_neighbour_recall=min_neighbour_recall,
        freeze_word_embeddings=not train_word_embeddings,
    )
    _print_summary(summary)
    if not summary["passed"]:
        gate = summary["gate"]
        console.print(
            f"[red]gate failed:[/red] {gate['metric']} {gate['value']} < {gate['threshold']}", highlight=False
        )
        raise typer.Exit(1)


def _distill(
    teacher,
    data,
    out,
    split,
    eval_data,
    eval_split,
    text_column,
    label_column,
    overwrite,
    revision,
    trust_remote_code,
    **options: Any,
) -> dict[str, Any]:
    try:
        from edge_bert.training.distill import DistillSettings, distill

        settings = DistillSettings(**{k: v for k, v in options.items() if v is not None})
        train = _read(data, split, text_column, label_column)
        evaluation = _read(eval_data, eval_split, text_column, label_column)
        with _Bar() as bar:
            return distill(teacher, train, out, settings, evaluation, overwrite, revision, trust_remote_code, bar)
    except EdgeBertError as exc:
        raise _fail(exc) from exc


def run_distill(
    teacher: Optional[str],
    layers: int,
    data: str,
    target: str = "auto",
    out: Path = Path("bundles"),
    runs: int = 30,
    split: Optional[str] = None,
    eval_data: Optional[str] = None,
    eval_split: Optional[str] = None,
    report_dir: Path = Path("reports"),
) -> None:
    """`edge-bert run TEACHER --distill N --data ...`: teacher -> student (models/NAME-lN) -> bundles of both
    for the target -> validate (on --eval-data) -> bench; one table with teacher and student side by side."""
    from edge_bert.bench.protocol import bench as run_bench
    from edge_bert.render.terminal import machine_line, write_reports
    from edge_bert.validate import validate as run_validate

    try:
        from edge_bert.convert.pipeline import convert
        from edge_bert.training.data import resolve_source

        source = resolve_source(teacher)
        name = Path(source.rstrip("/")).name.lower() if teacher else "all-minilm-l6-v2"
        student_dir = Path("models") / f"{name}-l{layers}"
        summary = _distill(
            source, data, student_dir, split, eval_data, eval_split, None, None, True, None, False, layers=layers
        )
        evaluation = _read(eval_data, eval_split, None, None)
        rows = []
        for role, model_dir in (("teacher", source), ("student", str(student_dir))):
            log = lambda m: console.print(f"[dim]{m}[/dim]", highlight=False)  # noqa: E731
            outcomes = convert(
                model_dir,
                target,
                out,
                eval_data=evaluation,
                name=name if role == "teacher" else student_dir.name,
                overwrite=True,
                log=log,
            )
            for outcome in (o for o in outcomes if o.passed):
                console.print(f"[dim]validate + bench {outcome.bundle.name}[/dim]", highlight=False)
                check = run_validate(outcome.bundle, data=evaluation)
                write_reports(check, report_dir)
                rows.append((role, outcome, check, run_bench(outcome.bundle, runs=runs, warmup=5)))
    except EdgeBertError as exc:
        raise _fail(exc) from exc
    if not rows:
        raise typer.Exit(1)
    evaluated = summary.get("eval") or {}
    teacher_fp32 = evaluated.get("teacher", {}).get("accuracy") or evaluated.get("teacher_knn_accuracy")
    lengths = [row["seq_length"] for row in rows[0][3]["latency"]]
    table = Table(
        title=f"edge-bert run --distill {layers}: teacher and student ({summary['recipe']} recipe)",
        caption=machine_line(rows[0][3]["machine"]) + f" · {rows[0][3]['settings']['threads']} threads",
    )
    for column in ["model", "recipe", "parameters", "MB", "validate", "accuracy", "% of teacher"] + [
        f"p50 @{n} ms" for n in lengths
    ]:
        table.add_column(column, justify="right")
    for role, outcome, check, timing in rows:
        metrics = (check.get("accuracy") or {}).get("metrics") or {}
        accuracy = metrics.get("accuracy", metrics.get("knn_accuracy"))
        params = summary[f"{role}_parameters"]
        pct = f"{100 * accuracy / teacher_fp32:.1f}" if accuracy is not None and teacher_fp32 else "-"
        table.add_row(
            role,
            outcome.recipe,
            f"{params / 1e6:.2f}M",
            f"{timing['model_bytes'] / 1e6:.1f}",
            "pass" if check["passed"] else "fail",
            "-" if accuracy is None else f"{accuracy:.4f}",
            pct,
            *[f"{row['p50_ms']:.2f}" for row in timing["latency"]],
        )
    console.print(table)
    raise typer.Exit(0 if summary["passed"] and all(check["passed"] for _, _, check, _ in rows) else 1)


def register(app: typer.Typer) -> None:
    """Add `finetune` and `distill` to the edge-bert app."""
    app.command("finetune")(finetune_command)
    app.command("distill")(distill_command)


__all__ = ["register", "run_distill"]
