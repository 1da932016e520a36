"""`edge-bert finetune` and `edge-bert distill` (and `run --distill`): the user's data -> a small model.

Registered on the main app by ``register(app)``. Torch and the converter modules are imported inside
the command bodies only: the runner side of the CLI must import no torch. Each command builds its typed
settings (``FinetuneSettings`` / ``DistillSettings``) and a ``Job`` here and hands them to the library.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table

from edge_bert.cli.common import JsonOpt, deprecated, out_console, preflight, read_data
from edge_bert.cli.common import fail as _fail
from edge_bert.cli.logs import quiet_verb
from edge_bert.cli.train_view import Bar, show
from edge_bert.errors import EdgeBertError, InputError
from edge_bert.render.terminal import write_json

if TYPE_CHECKING:
    from edge_bert.cli.run import Chain
    from edge_bert.training.setup import Job

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
TorchThreadsOpt = Annotated[Optional[int], typer.Option(help="Torch threads (default 1: fastest on a small busy CPU).")]
OldThreadsOpt = Annotated[Optional[int], typer.Option("--threads", hidden=True, help="Deprecated: --torch-threads.")]
EpochsOpt = Annotated[Optional[int], typer.Option(help="Training epochs.")]
MaxTrainOpt = Annotated[Optional[int], typer.Option(help="Random subsample of the training rows (0 = all).")]
BatchOpt = Annotated[Optional[int], typer.Option(help="Batch size.")]
MaxLengthOpt = Annotated[Optional[int], typer.Option(help="Token limit while training.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace OUT if it exists.")]
RevisionOpt = Annotated[Optional[str], typer.Option(help="Hub revision.")]
TrustOpt = Annotated[bool, typer.Option(help="Allow the checkpoint's own Python code to run.")]


@dataclass(frozen=True)
class TrainingData:
    """Where the training and evaluation rows come from (read here, in the CLI, into LabelledData)."""

    data: str
    split: Optional[str] = None
    eval_data: Optional[str] = None
    eval_split: Optional[str] = None
    text_column: Optional[str] = None
    label_column: Optional[str] = None

    def read(self) -> tuple[Any, Any]:
        """(training rows, evaluation rows or None); unusable data exits 2."""
        columns = (self.text_column, self.label_column)
        train = read_data(self.data, *columns, self.split, None)
        return train, read_data(self.eval_data, *columns, self.eval_split, None)


def _train(command: str, job: Job, data: TrainingData, settings: Any, json_out: Optional[str]) -> dict[str, Any]:
    """Read the data, run ``command`` of the training library, return its summary (schema first)."""
    try:
        from edge_bert.training import distill, finetune
    except ImportError as exc:
        raise _fail(InputError(f"{command} needs the converter extra ({exc.name} is missing): "
                               "pip install 'edge-bert[convert]'")) from exc  # fmt: skip
    train, evaluation = data.read()
    try:
        with Bar(out_console(json_out)) as bar:
            summary = {"finetune": finetune.finetune, "distill": distill.distill}[command](
                job, train, settings, evaluation, bar
            )
    except EdgeBertError as exc:
        raise _fail(exc) from exc
    return {"schema": f"edge-bert/{command}/v1", **summary}


def _settings(build, **options: Any):  # build: the library's settings constructor, may raise InputError
    try:
        return build(**options)
    except EdgeBertError as exc:
        raise _fail(exc) from exc


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
    task: Annotated[
        Optional[str],
        typer.Option(help="text-classification | question-answering | token-classification (default: from --data)."),
    ] = None,
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
    torch_threads: TorchThreadsOpt = None,
    threads: OldThreadsOpt = None,
    min_accuracy: Annotated[
        Optional[float],
        typer.Option(
            help="Gate: --eval-data accuracy (QA: F1, NER: entity F1; 0-1) at least this, else exit 1 "
            "(default: the preset's)."
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
    revision: RevisionOpt = None,
    trust_remote_code: TrustOpt = False,
    json_out: JsonOpt = None,
) -> None:
    """Fine-tune BASE on your labelled data into a ...ForSequenceClassification (texts), ...ForQuestionAnswering
    (SQuAD-format .json) or ...ForTokenClassification (CoNLL .conll) directory (convert takes it).
    Writes OUT/training_log.jsonl and OUT/eval_summary.json; an interrupted run resumes from its last epoch.
    Exit 0 pass, 1 eval accuracy below --min-accuracy (the model is still written), 2 bad input."""
    preflight(json_out)
    torch_threads = deprecated(torch_threads, threads, "--threads", "--torch-threads")
    from edge_bert.training.finetune import settings_for
    from edge_bert.training.setup import Job

    if min_accuracy is not None and not 0 <= min_accuracy <= 1:
        raise _fail(InputError(f"--min-accuracy {min_accuracy}: an accuracy between 0 and 1"))
    if min_accuracy is not None and eval_data is None:
        raise _fail(InputError("--min-accuracy needs labelled --eval-data to measure the accuracy on"))
    settings = _settings(
        settings_for,
        preset=preset,
        epochs=epochs,
        max_train=max_train,
        frozen_layers=frozen_layers,
        lr=lr,
        head_lr=head_lr,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        threads=torch_threads,
        min_accuracy=min_accuracy,
        task=task,
    )
    job = Job(base, out, overwrite, revision, trust_remote_code)
    inputs = TrainingData(data, split, eval_data, eval_split, text_column, label_column)
    summary = _train("finetune", job, inputs, settings, json_out)
    show(summary, json_out)
    raise typer.Exit(0 if summary["passed"] else 1)


@quiet_verb()
def distill_command(
    teacher: Annotated[Optional[str], typer.Argument(help="Teacher: hub id or dir (default: embedded MiniLM).")] = None,
    data: DataOpt = ...,  # type: ignore[assignment]
    layers: Annotated[int, typer.Option(help="Student layers (at most the teacher's).")] = ...,  # type: ignore[assignment]
    out: OutOpt = ...,  # type: ignore[assignment]
    hidden_size: Annotated[
        Optional[int], typer.Option(help="Student width (TinyBERT method; a multiple of the teacher's heads).")
    ] = None,
    method: Annotated[
        Optional[str],
        typer.Option(
            help="auto | distilbert | tinybert | albert | mobilebert | embedding (auto: by teacher task and width)."
        ),
    ] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", hidden=True, help="Deprecated: --method.")] = None,
    embedding_size: Annotated[
        Optional[int], typer.Option(help="ALBERT / MobileBERT: factorised word-embedding size E (default 128).")
    ] = None,
    bottleneck: Annotated[
        Optional[int], typer.Option(help="MobileBERT: intra-block bottleneck width (default 128).")
    ] = None,
    eval_data: EvalDataOpt = None,
    split: SplitOpt = None,
    eval_split: EvalSplitOpt = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    epochs: EpochsOpt = None,
    pred_epochs: Annotated[
        Optional[int],
        typer.Option(help="Prediction-layer stage epochs (TinyBERT 10, ALBERT / MobileBERT: see docs/training.md)."),
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
    torch_threads: TorchThreadsOpt = None,
    threads: OldThreadsOpt = None,
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
    revision: RevisionOpt = None,
    trust_remote_code: TrustOpt = False,
    json_out: JsonOpt = None,
) -> None:
    """Distil TEACHER into a --layers student (DistilBERT / TinyBERT / ALBERT / MobileBERT / embedding method),
    gated on how much of the teacher it keeps on --eval-data. Exit 0 pass, 1 gate failed (the student is still
    written), 2 bad input."""
    preflight(json_out)
    torch_threads = deprecated(torch_threads, threads, "--threads", "--torch-threads")
    method = deprecated(method, recipe, "--recipe", "--method")
    from edge_bert.training.distill import DistillSettings
    from edge_bert.training.setup import Job, with_options

    settings = _settings(
        with_options,
        settings=DistillSettings(layers=layers),
        hidden_size=hidden_size,
        method=method,
        embedding_size=embedding_size,
        bottleneck=bottleneck,
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
        threads=torch_threads,
        min_pct_of_teacher=min_pct_of_teacher,
        min_neighbour_recall=min_neighbour_recall,
        freeze_word_embeddings=not train_word_embeddings,
    )
    job = Job(teacher, out, overwrite, revision, trust_remote_code)
    inputs = TrainingData(data, split, eval_data, eval_split, text_column, label_column)
    summary = _train("distill", job, inputs, settings, json_out)
    show(summary, json_out)
    raise typer.Exit(0 if summary["passed"] else 1)


@dataclass(frozen=True)
class DistillRun:
    """``run TEACHER --distill N``: the teacher, the student's depth and the data it learns and is checked on."""

    teacher: Optional[str]
    layers: int
    data: str
    split: Optional[str] = None
    eval_data: Optional[str] = None
    eval_split: Optional[str] = None


def run_distill(spec: DistillRun, chain: Chain) -> None:
    """`edge-bert run TEACHER --distill N --data ...`: teacher -> student (models/NAME-lN) -> bundles of both
    for the target -> validate (on --eval-data) and bench on the chain's device -> one table with teacher and
    student side by side (or, with --json, one run document with the distillation summary)."""
    from edge_bert.cli.run import run_document

    try:
        from edge_bert.training.data import resolve_source
        from edge_bert.training.distill import DistillSettings
        from edge_bert.training.setup import Job

        source = resolve_source(spec.teacher)
    except ImportError as exc:
        raise _fail(InputError(f"run --distill needs the converter extra ({exc.name} is missing)")) from exc
    except EdgeBertError as exc:
        raise _fail(exc) from exc
    name = Path(source.rstrip("/")).name.lower() if spec.teacher else "all-minilm-l6-v2"
    student_dir = Path("models") / f"{name}-l{spec.layers}"
    inputs = TrainingData(spec.data, spec.split, spec.eval_data, spec.eval_split)
    summary = _train("distill", Job(source, student_dir, True), inputs, DistillSettings(spec.layers), chain.json_out)
    evaluation = read_data(spec.eval_data, None, None, spec.eval_split, None)
    outcomes, rows = [], []
    for role, model_dir in (("teacher", source), ("student", str(student_dir))):
        converted = chain.convert(model_dir, name if role == "teacher" else student_dir.name, evaluation)
        outcomes += converted
        checked = chain.check([o.bundle for o in converted if o.passed], evaluation)
        rows += [(role, check, timing) for check, timing in checked]
    passed = bool(rows) and summary["passed"] and all(o.passed for o in outcomes if o.required)
    passed = passed and all(check.passed for _, check, _ in rows)
    document = run_document(chain.target, outcomes, [(c, t) for _, c, t in rows], passed, distill=summary)
    for record, (role, _, _) in zip(document["bundles"], rows, strict=True):
        record["role"] = role
    write_json(document, chain.json_out)
    if rows:
        out_console(chain.json_out).print(_distill_table(spec.layers, summary, rows))
    raise typer.Exit(0 if passed else 1)


def _distill_table(layers: int, summary: dict[str, Any], rows: list[tuple[str, Any, Any]]) -> Table:
    """Teacher and student side by side (rows: role, ValidateResult, BenchResult)."""
    from edge_bert.devices.dispatch import emulated_note
    from edge_bert.render.terminal import machine_line
    from edge_bert.schema import to_plain

    evaluated = summary.get("eval") or {}
    teacher_fp32 = evaluated.get("teacher", {}).get("accuracy") or evaluated.get("teacher_knn_accuracy")
    first = rows[0][2]
    lengths = [row.seq_length for row in first.latency]
    table = Table(
        title=f"edge-bert run --distill {layers}: teacher and student ({summary['method']} method)"
        + emulated_note(first),
        caption=machine_line(to_plain(first.machine)) + f" · {first.settings.threads} threads",
    )
    for column in ["model", "recipe", "parameters", "MB", "validate", "accuracy", "% of teacher"] + [
        f"p50 @{n} ms" for n in lengths
    ]:
        table.add_column(column, justify="right")
    for role, check, timing in rows:
        metrics = (check.accuracy.metrics if check.accuracy else None) or {}
        accuracy = metrics.get("accuracy", metrics.get("knn_accuracy"))
        params = summary[f"{role}_parameters"]
        pct = f"{100 * accuracy / teacher_fp32:.1f}" if accuracy is not None and teacher_fp32 else "-"
        table.add_row(
            role,
            check.recipe,
            f"{params / 1e6:.2f}M",
            f"{timing.model_bytes / 1e6:.1f}",
            "pass" if check.passed else "fail",
            "-" if accuracy is None else f"{accuracy:.4f}",
            pct,
            *[f"{row.p50_ms:.2f}" for row in timing.latency],
        )
    return table


def register(app: typer.Typer) -> None:
    """Add `finetune` and `distill` to the edge-bert app."""
    app.command("finetune")(finetune_command)
    app.command("distill")(distill_command)


__all__ = ["register", "run_distill"]
