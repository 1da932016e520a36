"""``edge-bert run``: the whole chain - convert every recipe, validate and bench each bundle, one table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
    open_transport,
    out_console,
    outcome_record,
    preflight,
    runner_for,
)
from edge_bert.cli.logs import quiet_verb
from edge_bert.devices.dispatch import emulated_note
from edge_bert.errors import EdgeBertError, InputError
from edge_bert.limits import check_option
from edge_bert.profiles import load_profile
from edge_bert.render.escape import terminal
from edge_bert.render.terminal import machine_line, write_json, write_reports
from edge_bert.results.bench import BenchResult
from edge_bert.results.validate import ValidateResult
from edge_bert.schema import to_plain


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
    preflight(json_out, report_dir)
    try:
        check_option("--runs", runs)
    except InputError as exc:
        raise fail(exc) from exc
    if distill is not None and data is None:
        raise fail(InputError("--distill needs --data (the texts to distil on)"))
    transport = open_transport(device, remote_python)  # one transport: validate and bench, every bundle
    # run --distill validates on --eval-data: a device reads it from the file as typed
    typed = {"data": eval_data, "split": eval_split} if distill is not None else {}
    validate = runner_for("validate", transport, **typed)
    chain = Chain(target, out, runs, report_dir, json_out, validate, runner_for("bench", transport))
    if distill is not None:  # teacher -> student -> bundles of both, side by side (edge_bert/cli/train.py)
        from edge_bert.cli.train import DistillRun, run_distill

        run_distill(DistillRun(model, distill, data, split, eval_data, eval_split), chain)
    outcomes = chain.convert(model)
    results = chain.check([o.bundle for o in outcomes if o.passed])
    passed = bool(results) and all(o.passed for o in outcomes if o.required) and all(c.passed for c, _ in results)
    write_json(run_document(target, outcomes, results, passed), json_out)
    if results and json_out != "-":
        out_console(json_out).print(_run_table(target, results))
    raise typer.Exit(0 if passed else 1)


@dataclass(frozen=True)
class Chain:
    """What ``run`` and ``run --distill`` share: where bundles and reports go, the output, and validate and
    bench (in this process or on the device, through one transport)."""

    target: str
    out: Path
    runs: int
    report_dir: Path
    json_out: Optional[str]
    validate: Callable[..., ValidateResult]
    bench: Callable[..., BenchResult]

    def convert(self, model: Optional[str], name: Optional[str] = None, eval_data=None) -> list:
        """Every recipe of the target, overwriting earlier bundles of the same name."""
        options = dict.fromkeys(("task", "formats", "recipes", "texts", "calibration_data", "max_length"))
        options.update(revision=None, normalize=None, overwrite=True, allow_rescue=True, trust_remote_code=False)
        quiet = self.json_out == "-"
        return convert_and_show(model, self.target, self.out, quiet, name=name, eval_data=eval_data, **options)

    def check(self, bundles: list[Path], labelled=None) -> list[tuple[ValidateResult, BenchResult]]:
        """Validate (on ``labelled`` rows, if any; reports to REPORT_DIR) and bench each bundle."""
        results = []
        try:
            for bundle in bundles:
                out_console(self.json_out).print(f"[dim]validate + bench {bundle.name}[/dim]", highlight=False)
                check = self.validate(bundle, data=labelled)
                write_reports(check, self.report_dir)
                results.append((check, self.bench(bundle, runs=self.runs, warmup=5)))
        except EdgeBertError as exc:
            raise fail(exc) from exc
        return results


def run_document(target: str, outcomes: list, results: list, passed: bool, **extra) -> dict:
    """``run --json``: each written bundle's validate and bench documents, and the recipes refused."""
    refused = [outcome_record(o) for o in outcomes if not o.passed]
    bundles = [{"validate": check.to_dict(), "bench": timing.to_dict()} for check, timing in results]
    return {
        "schema": "edge-bert/run/v1",
        "target": target,
        "passed": passed,
        "bundles": bundles,
        "refused": refused,
        **extra,
    }


def _run_table(target: str, results: list[tuple[ValidateResult, BenchResult]]) -> Table:
    first = results[0][1]
    lengths = [row.seq_length for row in first.latency]
    # each bundle against the fp32 of its own format (an int8 .tflite against the fp32 .tflite)
    fp32 = {timing.format: timing for check, timing in results if check.recipe == "fp32"}
    table = Table(
        title=f"edge-bert run: {len(results)} bundles for target {_target_name(target)}" + emulated_note(first),
        caption=machine_line(to_plain(first.machine)) + f" · {first.settings.threads} threads",
    )
    for column in (
        ["format", "recipe", "MB", "validate", "mean cos", "top-1"]
        + [f"p50 @{n} ms" for n in lengths]
        + ["× its fp32 @" + str(lengths[-1])]
    ):
        table.add_column(column, justify="right")
    for check, timing in results:
        p50 = [row.p50_ms for row in timing.latency]
        reference = fp32.get(timing.format)
        speedup = reference.latency[-1].p50_ms / p50[-1] if reference else None
        table.add_row(  # a device's result is untrusted text
            terminal(timing.format),
            terminal(check.recipe),
            f"{timing.model_bytes / 1e6:.1f}",
            "[green]pass[/green]" if check.passed else "[red]fail[/red]",
            terminal(fmt(check.parity.mean_cosine)),
            terminal(fmt(check.parity.top1_agreement)),
            *[f"{v:.2f}" for v in p50],
            "-" if speedup is None else f"{speedup:.2f}",
        )
    return table


def _target_name(target: str) -> str:
    try:
        return load_profile(target).name
    except EdgeBertError:
        return target
