"""``edge-bert run``: the whole chain - convert every recipe, validate and bench each bundle, one table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from edge_bert.cli.common import (
    DeviceOpt,
    JsonOpt,
    RemotePythonOpt,
    SplitOpt,
    TargetOpt,
    convert_and_show,
    fail,
    fmt,
    preflight,
)
from edge_bert.cli.logs import quiet_verb
from edge_bert.devices.dispatch import bench_on_device, emulated_note, is_local, validate_on_device
from edge_bert.errors import EdgeBertError, InputError
from edge_bert.profiles import load_profile
from edge_bert.render.terminal import console, machine_line, write_json, write_reports


def register(app: typer.Typer) -> None:
    app.command()(run)


@quiet_verb()
def run(
    model: Annotated[Optional[str], typer.Argument(help="Hub id or dir (default: embedded all-MiniLM-L6-v2).")] = None,
    target: TargetOpt = "auto",
    out: Annotated[Path, typer.Option(help="Where bundles go.")] = Path("bundles"),
    runs: Annotated[int, typer.Option(help="Timed bench runs per length.")] = 30,
    json_out: JsonOpt = None,
    report_dir: Annotated[Path, typer.Option(help="Where the validate reports go.")] = Path("reports"),
    device: DeviceOpt = "local",
    remote_python: RemotePythonOpt = "python3",
    distill: Annotated[Optional[int], typer.Option(help="Distil MODEL into N layers first (+ --data).")] = None,
    data: Annotated[Optional[str], typer.Option(help="With --distill: labelled training data.")] = None,
    split: SplitOpt = None,
    eval_data: Annotated[Optional[str], typer.Option(help="With --distill: labelled evaluation data.")] = None,
    eval_split: Annotated[Optional[str], typer.Option(help="Split of --eval-data.")] = None,
) -> None:
    """The whole chain: convert every recipe, validate and bench each bundle, print one table.
    Validate reports go to REPORT_DIR as with `edge-bert validate`. Exit 0 when every required recipe was
    written and validates, 1 when one was refused or fails, 2 on unusable input."""
    from edge_bert.bench.protocol import bench as run_bench
    from edge_bert.validate import validate as run_validate

    if distill is not None:  # teacher -> student -> bundles of both, side by side (edge_bert/cli/train.py)
        from edge_bert.cli.train import run_distill

        if data is None:
            raise fail(InputError("--distill needs --data (the texts to distil on)"))
        run_distill(model, distill, data, target, out, runs, split, eval_data, eval_split, report_dir)
    preflight(json_out, report_dir)
    if runs < 1:
        raise fail(InputError(f"--runs must be at least 1, got {runs}"))
    outcomes = convert_and_show(
        model,
        target,
        out,
        task=None,
        formats=None,
        recipes=None,
        texts=None,
        calibration_data=None,
        eval_data=None,
        max_length=None,
        name=None,
        revision=None,
        normalize=None,
        overwrite=True,
        allow_rescue=True,
        trust_remote_code=False,
        quiet=json_out == "-",
    )
    written = [o for o in outcomes if o.passed]
    results = []
    try:
        for outcome in written:
            _status(json_out, f"validate + bench {outcome.bundle.name}")
            check = (run_validate if is_local(device) else validate_on_device(device, remote_python))(outcome.bundle)
            write_reports(check, report_dir)
            timing = run_bench if is_local(device) else bench_on_device(device, remote_python)
            results.append((check, timing(outcome.bundle, runs=runs, warmup=5)))
    except EdgeBertError as exc:
        raise fail(exc) from exc
    passed = bool(results) and all(o.passed for o in outcomes if o.required) and all(c["passed"] for c, _ in results)
    write_json(_run_document(target, outcomes, results, passed), json_out)
    if results and json_out != "-":
        console.print(_run_table(target, results))
    raise typer.Exit(0 if passed else 1)


def _status(json_out: Optional[str], message: str) -> None:
    if json_out != "-":
        console.print(f"[dim]{message}[/dim]", highlight=False)


def _run_document(target: str, outcomes: list, results: list, passed: bool) -> dict:
    refused = [
        {"format": o.format, "recipe": o.recipe, "required": o.required, "reason": o.error}
        for o in outcomes
        if not o.passed
    ]
    bundles = [{"validate": check, "bench": timing} for check, timing in results]
    return {"schema": "edge-bert/run/v1", "target": target, "passed": passed, "bundles": bundles, "refused": refused}


def _run_table(target: str, results: list) -> Table:
    lengths = [row["seq_length"] for row in results[0][1]["latency"]]
    # each bundle against the fp32 of its own format (an int8 .tflite against the fp32 .tflite)
    fp32 = {timing["format"]: timing for check, timing in results if check["recipe"] == "fp32"}
    table = Table(
        title=f"edge-bert run: {len(results)} bundles for target {_target_name(target)}" + emulated_note(results[0][1]),
        caption=machine_line(results[0][1]["machine"]) + f" · {results[0][1]['settings']['threads']} threads",
    )
    for column in (
        ["format", "recipe", "MB", "validate", "mean cos", "top-1"]
        + [f"p50 @{n} ms" for n in lengths]
        + ["× its fp32 @" + str(lengths[-1])]
    ):
        table.add_column(column, justify="right")
    for check, timing in results:
        p50 = [row["p50_ms"] for row in timing["latency"]]
        reference = fp32.get(timing["format"])
        speedup = reference["latency"][-1]["p50_ms"] / p50[-1] if reference else None
        table.add_row(
            timing["format"],
            check["recipe"],
            f"{timing['model_bytes'] / 1e6:.1f}",
            "[green]pass[/green]" if check["passed"] else "[red]fail[/red]",
            fmt(check["parity"]["mean_cosine"]),
            fmt(check["parity"]["top1_agreement"]),
            *[f"{v:.2f}" for v in p50],
            "-" if speedup is None else f"{speedup:.2f}",
        )
    return table


def _target_name(target: str) -> str:
    try:
        return load_profile(target).name
    except EdgeBertError:
        return target
