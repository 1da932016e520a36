"""What the CLI's command modules share: option types, the one-line error exit, the pre-flight checks,
reading labelled data, and running the converter with its table. Commands live in main.py (bundles on
the device), run.py (the whole chain), device.py and train.py; all of them import this, so
no command module imports another."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from edge_bert.errors import EdgeBertError, InputError
from edge_bert.profiles import load_profile
from edge_bert.render.escape import terminal
from edge_bert.render.terminal import check_output_file, check_report_dir, err_console, gate_label, print_error
from edge_bert.render.terminal import console as stdout_console

JsonOpt = Annotated[Optional[str], typer.Option("--json", help="Write the result as JSON to PATH ('-' = stdout).")]
# One meaning per option name in every verb: --threads is the runtime's thread count (one int), --thread-sweep
# a list of them (bench), --torch-threads the training threads; --format is the model format (onnx | tflite).
ThreadsOpt = Annotated[Optional[int], typer.Option(help="Runtime threads (default: the bundle's profile).")]
TextColumnOpt = Annotated[Optional[str], typer.Option(help="Text column of the data (default: text, sentence, ...).")]
LabelColumnOpt = Annotated[Optional[str], typer.Option(help="Label column of the data (default: label, intent, ...).")]
SplitOpt = Annotated[
    Optional[str], typer.Option(help="Split: a key of a .json file (e.g. test) or of a hub dataset (validation).")
]
TargetOpt = Annotated[
    str, typer.Option(help="Built-in target name, path of a .toml profile, or auto (the one matching this CPU).")
]
LimitOpt = Annotated[Optional[int], typer.Option(help="Use only the first N rows of the data.")]
DeviceOpt = Annotated[
    str, typer.Option(help="Where to run: local | ssh://user@host[:port] | emu:rpi4|rpi5|android-arm64.")
]
RemotePythonOpt = Annotated[str, typer.Option(help="ssh:// devices: the Python on the device that has edge-bert.")]


def out_console(json_out: Optional[str]) -> Console:
    """Where tables and progress go: stderr when stdout carries the JSON document (``--json -``)."""
    return err_console if json_out == "-" else stdout_console


def deprecated(new_value, old_value, old: str, new: str):
    """An old option spelling kept for one release: it still works, with one line on stderr."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise fail(InputError(f"{old} is the deprecated spelling of {new}; give only {new}"))
    err_console.print(f"warning: {old} is deprecated, use {new}", highlight=False, soft_wrap=True)
    return old_value


def fail(exc: Exception) -> typer.Exit:
    """Exit 2 with one line on stderr: the input is unusable (exit 1 means a gate failed)."""
    print_error(str(exc))
    return typer.Exit(2)


def csv_ints(value: Optional[str], option: str = "--seq-lengths") -> Optional[tuple[int, ...]]:
    if not value:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise fail(InputError(f"{option} {value!r}: expected comma-separated integers, e.g. 16,64,128")) from None


def preflight(json_out: Optional[str], report_dir: Optional[Path] = None) -> None:
    """Check where results go before any work: a PASS must never be lost to an unwritable path."""
    try:
        check_output_file(json_out)
        if report_dir is not None:
            check_report_dir(report_dir)
    except EdgeBertError as exc:
        raise fail(exc) from exc


def profile_gates(bundle: Path, profile: str):
    """``validate --profile``: the named profile's gates for this bundle's format and recipe."""
    from edge_bert.bundle import open_bundle

    manifest = open_bundle(bundle).manifest
    spec = load_profile(profile).formats.get(manifest.format)
    if spec is None:
        raise InputError(f"--profile {profile}: it has no {manifest.format} recipes for this {manifest.format} bundle")
    return spec.recipe(manifest.recipe.name).gates


def open_transport(device: str, remote_python: str):  # -> devices.base.Transport | None
    """The one transport a command uses for DEVICE (None: in this process); an unknown device exits 2."""
    from edge_bert.devices import open_device
    from edge_bert.devices.dispatch import is_local

    if is_local(device):
        return None
    try:
        return open_device(device, remote_python)
    except EdgeBertError as exc:
        raise fail(exc) from exc


def runner_for(verb: str, transport, **typed):
    """The local ``validate_result``/``bench_result`` (transport None), or the same on the transport's device;
    both return the typed result. ``typed`` are the CLI's values as typed (data location, profile, texts file)
    that the device's runner reads itself."""
    from edge_bert.devices.dispatch import on_device

    if transport is not None:
        return on_device(verb, transport, **typed)
    if verb == "validate":
        from edge_bert.validate import validate_result as local
    else:
        from edge_bert.bench.protocol import bench_result as local
    return local


def read_data(location: Optional[str], text_column, label_column, split, limit):
    """Labelled data for convert --eval-data / validate --data (None when not asked for)."""
    if location is None:
        return None
    from edge_bert.evaldata import read_labelled

    try:
        return read_labelled(location, text_column, label_column, split, limit)
    except EdgeBertError as exc:
        raise fail(exc) from exc


def convert_and_show(model: Optional[str], target: str, out: Path, quiet: bool = False, **options) -> list:
    """Run the converter and print its table (on stderr when stdout carries JSON)."""
    from edge_bert.textdata import read_texts

    console = out_console("-" if quiet else None)
    try:
        from edge_bert.convert.pipeline import convert as run_convert
    except ImportError as exc:
        raise fail(InputError(f"convert needs the converter extra ({exc.name} is missing): "
                               "pip install 'edge-bert[convert]'")) from exc  # fmt: skip
    try:
        for key in ("texts", "calibration_data"):
            if options[key] is not None:
                options[key] = read_texts(options[key])
        options["calibration_texts"] = options.pop("calibration_data")
        outcomes = run_convert(
            model, target, out, log=lambda m: console.print(f"[dim]{terminal(m)}[/dim]", highlight=False), **options
        )
    except EdgeBertError as exc:
        raise fail(exc) from exc
    table = Table(title=f"convert → {terminal(out)}")
    columns = ["format", "recipe", "model MB", "mean cosine", "worst cosine", "top-1"]
    with_accuracy = any(o.accuracy for o in outcomes)
    columns += ["accuracy", "% of fp32"] if with_accuracy else []
    for column in (*columns, "verdict", "bundle"):
        table.add_column(column)
    for o in outcomes:
        p, a = o.parity or {}, o.accuracy or {}
        task_cells = [fmt(a.get("accuracy", a.get("knn_accuracy"))), fmt(a.get("accuracy_pct_of_fp32"), 2)]
        table.add_row(
            o.format,
            o.recipe,
            f"{(o.model_bytes or 0) / 1e6:.1f}",
            fmt(p.get("mean_cosine")),
            fmt(p.get("worst_cosine")),
            fmt(p.get("top1_agreement")),
            *(task_cells if with_accuracy else []),
            "[green]written[/green]"
            if o.passed
            else ("[red]" if o.required else "[yellow]attempt: ") + terminal(o.error),
            terminal(o.bundle or "-"),
        )
    console.print(table)
    for o in outcomes:
        if o.rescue:
            console.print(terminal(rescue_line(o.recipe, o.rescue)), highlight=False)
    return outcomes


def outcome_record(outcome) -> dict:  # convert.pipeline.RecipeOutcome
    """One recipe's outcome as JSON (``convert --json`` and ``run --json``)."""
    fields = ("format", "recipe", "required", "passed", "error", "model_bytes", "parity", "accuracy", "rescue")
    record = {key: getattr(outcome, key) for key in fields}
    return {**record, "bundle": str(outcome.bundle) if outcome.bundle else None}


def convert_document(target: str, out: Path, outcomes: list) -> dict:
    """``convert --json``: every recipe's outcome; passed when every required recipe was written."""
    passed = all(o.passed for o in outcomes if o.required)
    records = [outcome_record(o) for o in outcomes]
    return {"schema": "edge-bert/convert/v1", "target": target, "out": str(out), "passed": passed, "recipes": records}


def rescue_line(recipe: str, rescue: dict) -> str:
    size, p50 = rescue["bytes"], rescue["host_p50_ms"]
    plain, rescued = size["plain"] / 1e6, size["rescued"] / 1e6
    return (
        f"{recipe}: rescued by keeping {len(rescue['kept_float'])} node(s) float "
        f"(+{rescued - plain:.2f} MB: {plain:.1f} -> {rescued:.1f} MB; "
        f"host p50 {p50['plain']:.2f} -> {p50['rescued']:.2f} ms"
        + "".join(
            f"; without it {gate_label(name)} was {gate['value']:.4g}, gate {gate['threshold']:g}"
            for name, gate in (rescue.get("plain_failed_gates") or {}).items()
        )
        + "): "
        + ", ".join(rescue.get("kept_float_labels", rescue["kept_float"]))
    )


def fmt(value: Optional[float], digits: int = 5) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
