"""``edge-bert compare TEACHER --data TRAIN --eval-data EVAL``: one student per method, measured on your devices.

compare writes a matrix (``OUT/MATRIX.toml``: the teacher as the reference, one ``[models.distill]`` student
per method, the target's recipes, the devices) and runs it with ``matrix``, so it resumes and scales the same
way (``edge-bert matrix OUT/MATRIX.toml --out OUT`` re-runs it). Then the report is written from the results.
"""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edge_bert.cli.common import TargetOpt, csv_ints, fail
from edge_bert.cli.matrix import matrix
from edge_bert.errors import EdgeBertError, InputError
from edge_bert.render.escape import terminal
from edge_bert.render.terminal import err_console

#: each method's student when not told otherwise: the settings docs/benchmarks.md measured on CLINC150
#: (distilbert 3 layers; tinybert 4 at half the width; albert 3 and mobilebert 4; epochs: the method's own)
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "distilbert": {"layers": 3},
    "tinybert": {"layers": 4, "half_width": True},
    "albert": {"layers": 3},
    "mobilebert": {"layers": 4},
}
#: methods with a factorised embedding / bottleneck of distill's default width FACTORISED_SIZE
FACTORISED, FACTORISED_SIZE = ("albert", "mobilebert"), 128
DATA_SUFFIXES = (".tsv", ".csv", ".json", ".jsonl", ".txt", ".conll")


def register(app: typer.Typer) -> None:
    app.command()(compare)


def methods() -> tuple[str, ...]:
    """The methods a matrix model may name (the ``method`` field of the matrix spec is the registry)."""
    from edge_bert.matrix.spec import ModelEntry

    hint = typing.get_type_hints(ModelEntry)["method"]
    return tuple(name for arg in typing.get_args(hint) for name in typing.get_args(arg))


def compare(
    teacher: Annotated[str, typer.Argument(help="Your fine-tuned teacher: a checkpoint directory or hub id.")],
    data: Annotated[str, typer.Option(help="Labelled training data of the students (.tsv/.csv/.jsonl/.json).")],
    eval_data: Annotated[str, typer.Option(help="Labelled evaluation data (validate --data of every bundle).")],
    device: Annotated[Optional[list[str]], typer.Option(help="Device (repeat): local | ssh://… | emu:….")] = None,
    target: TargetOpt = "auto",
    out: Annotated[Path, typer.Option(help="Results, students, bundles, MATRIX.toml and the report.")] = Path(
        "compare-results"
    ),
    methods_: Annotated[str, typer.Option("--methods", help="Comma-separated methods.")] = ",".join(METHOD_DEFAULTS),
    recipes: Annotated[Optional[str], typer.Option(help="Comma-separated recipes (default: all the target's).")] = None,
    formats: Annotated[Optional[str], typer.Option(help="Comma-separated formats (default: all the target's).")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split of --data (e.g. train).")] = None,
    eval_split: Annotated[Optional[str], typer.Option(help="Split of --eval-data (e.g. test).")] = None,
    text_column: Annotated[Optional[str], typer.Option(help="Text column of both data.")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Label column of both data.")] = None,
    max_train: Annotated[Optional[int], typer.Option(help="Random subsample of the training rows.")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(help="Validate on the first N evaluation rows.")] = None,
    layers: Annotated[Optional[int], typer.Option(help="Student layers of every method (default: per method).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs of every student.")] = None,
    pred_epochs: Annotated[
        Optional[int], typer.Option(help="Prediction-layer epochs (tinybert/albert/mobilebert).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    torch_threads: Annotated[Optional[int], typer.Option(help="Torch threads while training.")] = None,
    seq_lengths: Annotated[str, typer.Option(help="Bench sequence lengths.")] = "16,64,128",
    runs: Annotated[int, typer.Option(help="Timed runs per sequence length.")] = 20,
    threads: Annotated[Optional[int], typer.Option(help="Runtime threads of validate and bench.")] = None,
    jobs: Annotated[Optional[int], typer.Option(help="Conversions at once (as matrix --jobs).")] = None,
    ray: Annotated[
        Optional[str], typer.Option(help="Run the cells on Ray: ADDRESS or local (as matrix --ray).")
    ] = None,
) -> None:
    """Distil TEACHER with every method, convert each student (and the teacher) with the target's recipes,
    validate on --eval-data and bench on each --device, then write the report. Kill it and start it again:
    nothing finished is redone. Exit 0 all done, 1 a cell failed (see OUT/matrix.json), 2 bad input."""
    from edge_bert.matrix.spec import cells, read_matrix

    extra: dict[str, Any] = {} if ray is None else {"ray": ray}
    try:
        text = _matrix_toml(
            teacher,
            data,
            eval_data,
            device or ["local"],
            target,
            methods_,
            recipes,
            formats,
            {
                "split": split,
                "eval_split": eval_split,
                "text_column": text_column,
                "label_column": label_column,
                "max_train": max_train,
                "eval_limit": eval_limit,
            },
            {
                "layers": layers,
                "epochs": epochs,
                "pred_epochs": pred_epochs,
                "seed": seed,
                "torch_threads": torch_threads,
            },
            list(csv_ints(seq_lengths) or ()),
            runs,
            threads,
        )
        out.mkdir(parents=True, exist_ok=True)
        spec_file = out / "MATRIX.toml"
        if not spec_file.is_file() or spec_file.read_text(encoding="utf-8") != text:  # a re-run keeps the file
            partial = out / f".MATRIX.toml.{os.getpid()}.tmp"
            partial.write_text(text, encoding="utf-8")
            os.replace(partial, spec_file)
        cells(*read_matrix(spec_file))  # the generated matrix is checked as any matrix is, before any work
    except EdgeBertError as exc:
        raise fail(exc) from exc
    except OSError as exc:
        raise fail(EdgeBertError(f"{out}: {exc.strerror or exc}")) from exc
    err_console.print(
        f"compare: matrix {terminal(spec_file)} (re-run: edge-bert matrix {terminal(spec_file)} --out {terminal(out)})",
        highlight=False,
    )
    try:
        matrix(spec_file, out=out, jobs=jobs, **extra)
        code = 0
    except typer.Exit as exit_:
        code = exit_.exit_code
    if code == 2:
        raise typer.Exit(2)
    _report(out)
    raise typer.Exit(code)


def _report(out: Path) -> None:
    """The report from the matrix's results (a failed report leaves the results as they are)."""
    from edge_bert.report import write_report

    try:
        path = write_report(out, out / "report")
    except EdgeBertError as exc:
        err_console.print(f"compare: no report: {terminal(str(exc))}", highlight=False)
        return
    err_console.print(f"compare: report {terminal(path)}", highlight=False)


def _matrix_toml(
    teacher: str,
    data: str,
    eval_data: str,
    devices: list[str],
    target: str,
    method_list: str,
    recipes: Optional[str],
    formats: Optional[str],
    data_options: dict[str, Any],
    student: dict[str, Any],
    seq_lengths: list[int],
    runs: int,
    threads: Optional[int],
) -> str:
    """The matrix compare runs, as TOML text (absolute paths: it is read from OUT)."""
    from edge_bert.profiles import load_profile

    chosen = [m.strip() for m in method_list.split(",") if m.strip()]
    known = methods()
    if not chosen or any(m not in known for m in chosen) or len(set(chosen)) != len(chosen):
        raise InputError(f"--methods {method_list!r}: expected distinct names among {', '.join(known)}")
    for flag, location in (("--data", data), ("--eval-data", eval_data)):
        if Path(location).suffix in DATA_SUFFIXES and not Path(location).is_file():
            raise InputError(f"{flag} {location}: no such file")
    if Path(teacher).exists() and not (Path(teacher) / "config.json").is_file():
        raise InputError(f"{teacher}: not a checkpoint directory (no config.json)")
    profile = load_profile(target)
    target = str(Path(target).resolve()) if Path(target).is_file() else profile.name
    format_names = _csv(formats) or list(profile.formats)
    unknown = [f for f in format_names if f not in profile.formats]
    if unknown:
        raise InputError(f"--formats: {', '.join(unknown)} not in {profile.name}'s formats {list(profile.formats)}")
    recipe_names = _csv(recipes) or list(
        dict.fromkeys(r.name for f in format_names for r in profile.formats[f].recipes)
    )
    top: dict[str, Any] = {
        "name": "compare",
        "targets": [target],
        "formats": format_names,
        "recipes": recipe_names,
        "devices": devices,
        "seq_lengths": seq_lengths,
        "runs": runs,
        "threads": threads,
    }
    columns = {"text_column": data_options["text_column"], "label_column": data_options["label_column"]}
    tables = {
        "data": {
            "location": _absolute(eval_data),
            **columns,
            "split": data_options["eval_split"],
            "limit": data_options["eval_limit"],
        },
        "train": {
            "location": _absolute(data),
            **columns,
            "split": data_options["split"],
            "limit": data_options["max_train"],
        },
    }
    lines = [
        "# Written by edge-bert compare; re-run with: edge-bert matrix MATRIX.toml --out <this folder>",
        *(f"{k} = {_toml(v)}" for k, v in top.items() if v is not None),
    ]
    for name, table in tables.items():
        lines += ["", f"[{name}]", *(f"{k} = {_toml(v)}" for k, v in table.items() if v is not None)]
    lines += ["", "[[models]]", 'id = "teacher"', f"source = {_toml(_absolute(teacher))}", "reference = true"]
    shape = _teacher_shape(teacher)
    for method in chosen:
        options = _student_options(method, student, shape)
        lines += [
            "",
            "[[models]]",
            f"id = {_toml(method)}",
            f"method = {_toml(method)}",
            "",
            "[models.distill]",
            'teacher = "teacher"',
            *(f"{k} = {_toml(v)}" for k, v in options.items() if v is not None),
        ]
    return "\n".join(lines) + "\n"


def _student_options(method: str, given: dict[str, Any], shape: dict[str, int]) -> dict[str, Any]:
    defaults = METHOD_DEFAULTS.get(method, {"layers": 3})
    layers = given["layers"] or min(defaults["layers"], shape.get("layers", defaults["layers"]))
    options = {
        "layers": layers,
        "epochs": given["epochs"],
        "seed": given["seed"],
        "pred_epochs": given["pred_epochs"] or defaults.get("pred_epochs"),
        "torch_threads": given["torch_threads"],
    }
    if defaults.get("half_width") and "hidden" in shape and "heads" in shape:
        half = shape["hidden"] // 2 // shape["heads"] * shape["heads"]
        options["hidden_size"] = half or None
    if method in FACTORISED and shape.get("hidden", FACTORISED_SIZE * 2) <= FACTORISED_SIZE:
        # distill's embedding size and bottleneck (128) must stay below a narrow teacher's width
        options["embedding_size"] = options["bottleneck"] = max(1, shape["hidden"] // 2)
    return options


def _teacher_shape(teacher: str) -> dict[str, int]:
    """Layers, width and heads of a local teacher (its config.json; a hub id: unknown, the defaults stand)."""
    try:
        config = json.loads((Path(teacher) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    names = {
        "layers": ("num_hidden_layers", "n_layers"),
        "hidden": ("hidden_size", "dim"),
        "heads": ("num_attention_heads", "n_heads"),
    }
    shape = {
        key: next((config[n] for n in options if isinstance(config.get(n), int)), None)
        for key, options in names.items()
    }
    return {k: v for k, v in shape.items() if v}


def _absolute(location: str) -> str:
    return str(Path(location).resolve()) if Path(location).exists() else location


def _csv(value: Optional[str]) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _toml(value: Any) -> str:
    """A TOML value: strings as JSON strings (valid TOML basic strings), booleans, numbers, lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


__all__ = ["compare", "methods", "register"]
