"""CLI: ``device setup``, ``device check`` (a doctor for a device) and ``results`` (result files -> one table)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from edge_bert.cli.common import JsonOpt, deprecated, out_console, preflight
from edge_bert.cli.common import fail as _fail
from edge_bert.devices import DeviceError, open_device
from edge_bert.devices.base import INSTALL_HINT, Transport
from edge_bert.errors import EdgeBertError, InputError
from edge_bert.render.escape import terminal
from edge_bert.render.terminal import machine_line, write_json

device_app = typer.Typer(no_args_is_help=True, help="Devices: prepare an emulated board, check what a device has.")
DeviceArg = Annotated[str, typer.Argument(help="local | ssh://user@host[:port] | emu:rpi4|rpi5|android-arm64")]
RemotePythonOpt = Annotated[str, typer.Option(help="The Python on the device that has (or should have) edge-bert.")]


@device_app.command("setup")
def device_setup(device: DeviceArg, json_out: JsonOpt = None) -> None:
    """Prepare an emulated board's arm64 userland once (cached under ~/.cache/edge-bert), then check it."""
    from edge_bert.devices.emu_setup import setup

    preflight(json_out)
    console = out_console(json_out)
    if not device.startswith("emu:"):
        message = (
            f"{device}: nothing to prepare here; on the device, install the runner: {INSTALL_HINT['onnx']} "
            f"or {INSTALL_HINT['tflite']}, then `edge-bert device check {device}`"
        )
        console.print(terminal(message), highlight=False)
        raise typer.Exit(0)
    try:
        transport = open_device(device)
        setup(log=lambda m: console.print(f"[dim]{terminal(m)}[/dim]", highlight=False))
        info = _probe(transport)
    except DeviceError as exc:
        raise _fail(exc) from exc
    _report(device, info, json_out)


def _probe(transport: Transport) -> dict:
    from edge_bert.devices import probe

    done = transport.python_script(Path(probe.__file__).read_text(encoding="utf-8"))
    try:
        info = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, RecursionError, IndexError):
        raise DeviceError(f"{transport.id}: {transport.explain_failure(done)}") from None
    if problem := _probe_problem(info):
        raise DeviceError(f"{transport.id}: the device's answer to the probe is not usable ({problem}); refused")
    info["device"] = transport.describe()
    return info


_NUMBER = (int, float)
#: what the tables read of a probe answer, by field: (container, what each value must be)
_PROBE_FIELDS = {
    "machine": (dict, {"machine": str, "cpu_model": str, "os": str, "python": str, "cpu_count": int}),
    "sensors": (dict, {"cpu_mhz": dict, "temperature_c": dict}),
    "versions": (dict, None),
    "python_executable": (str, None),
    "disk_free_gib": (_NUMBER, None),
}


def _probe_problem(info: object) -> str | None:
    """Why a device's probe answer (untrusted) cannot be shown, or None: every field the tables read, typed."""
    if not isinstance(info, dict):
        return "not a JSON object"
    for name, (kind, inner) in _PROBE_FIELDS.items():
        value = info.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{name} is missing or not a {getattr(kind, '__name__', 'number')}"
        for key, wanted in (inner or {}).items():
            if not isinstance(value.get(key), wanted) or isinstance(value.get(key), bool):
                return f"{name}.{key} is missing or not a {wanted.__name__}"
    machine, sensors = info["machine"], info["sensors"]
    if not isinstance(machine.get("isa_flags"), list) or not all(isinstance(f, str) for f in machine["isa_flags"]):
        return "machine.isa_flags is not a list of strings"
    if not all(isinstance(v, str | None) for v in info["versions"].values()):
        return "versions holds something other than version strings"
    readings = [*sensors["cpu_mhz"].values(), *sensors["temperature_c"].values()]
    if not all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in readings):
        return "sensors hold something other than numbers"
    if not all(
        isinstance(v, (*_NUMBER, type(None))) for v in (machine.get("mem_total_gib"), info.get("mem_available_gib"))
    ):
        return "memory figures are not numbers"
    return None


def _report(device: str, info: dict, json_out: Optional[str]) -> None:
    """The probe as a table (stderr with ``--json -``) and as JSON: passed = it can run bundles."""
    versions = info["versions"]
    runtime = versions.get("onnxruntime") or versions.get("ai-edge-litert") or versions.get("tflite-runtime")
    info["missing"] = [{"what": what, "install": command} for what, command in missing(info)]
    document = {"schema": "edge-bert/device-check/v1", "passed": bool(versions.get("edge-bert") and runtime), **info}
    out_console(json_out).print(probe_table(device, info))
    write_json(document, json_out)
    raise typer.Exit(0 if document["passed"] else 1)


def missing(info: dict) -> list[tuple[str, str]]:
    """(what is missing, the one command that installs it)."""
    versions = info["versions"]
    has_litert = versions.get("ai-edge-litert") or versions.get("tflite-runtime")
    if not versions.get("edge-bert"):
        return [
            (
                "edge-bert (the runner) and a runtime",
                f"{INSTALL_HINT['onnx']}  (.tflite bundles: {INSTALL_HINT['tflite']})",
            )
        ]
    gaps = []
    if not versions.get("onnxruntime"):
        gaps.append(("onnxruntime, for ONNX bundles", INSTALL_HINT["onnx"]))
    if not has_litert:
        gaps.append(("ai-edge-litert, for .tflite bundles", INSTALL_HINT["tflite"]))
    return gaps


def _int8_isa(flags: list[str]) -> str:
    if "asimd" in flags:
        return ("dot products (asimddp)" if "asimddp" in flags else "NEON, no dot-product instructions") + (
            " + i8mm" if "i8mm" in flags else ""
        )
    return (
        "VNNI" if {"avx512_vnni", "avx_vnni"} & set(flags) else ("AVX2, no VNNI" if "avx2" in flags else "none known")
    )


def probe_table(device: str, info: dict) -> Table:
    m, sensors = info["machine"], info["sensors"]
    title = f"device {device}" + (
        " (emulated: parity and accuracy only, never latency)" if info["device"]["emulated"] else ""
    )
    table = Table(title=title, show_header=False)
    mhz = sensors["cpu_mhz"]
    rows = {
        "cpu": machine_line(m),
        "int8 ISA": _int8_isa(m["isa_flags"]),
        "os / python": f"{m['os']} / Python {m['python']} ({info['python_executable']})",
        "memory": f"{info['mem_available_gib']} GiB free of {m['mem_total_gib']} GiB",
        "disk free (home)": f"{info['disk_free_gib']} GiB",
        "cpu clock": ", ".join(f"{k} {v:.0f} MHz" for k, v in mhz.items()) or "not exposed",
        "temperature": ", ".join(f"{k} {v:.1f} °C" for k, v in sensors["temperature_c"].items()) or "not exposed",
    }
    rows.update({name: version or "[red]missing[/red]" for name, version in info["versions"].items()})
    for gap, command in missing(info):
        rows[f"missing: {gap}"] = command
    for key, value in rows.items():
        table.add_row(terminal(key), value if "[red]" in value else terminal(value))
    return table


@device_app.command("check")
def device_check(
    device: DeviceArg,
    remote_python: RemotePythonOpt = "python3",
    json_out: JsonOpt = None,
) -> None:
    """What the device is (CPU, ISA flags, OS, Python, runtimes, free disk and memory) and what is missing.
    Exit 0 when it can run bundles (edge-bert + a runtime), 1 when something is missing, 2 when unreachable."""
    preflight(json_out)
    try:
        info = _probe(open_device(device, remote_python))
    except DeviceError as exc:
        raise _fail(exc) from exc
    _report(device, info, json_out)


def results(
    directory: Annotated[Path, typer.Argument(help="Directory searched (recursively) for result JSON files.")],
    style: Annotated[str, typer.Option("--as", help="table | markdown")] = "table",
    json_out: JsonOpt = None,
    old_format: Annotated[
        Optional[str], typer.Option("--format", hidden=True, help="Deprecated: --as / --json.")
    ] = None,
) -> None:
    """Collect validate/bench results (any device) into one table: bundles × devices."""
    from edge_bert.render.results_table import collect, render

    preflight(json_out)
    if old_format is not None:
        style = deprecated(None, old_format, "--format", "--json -" if old_format == "json" else "--as")
    if style not in ("table", "markdown", "json"):  # json: only through the deprecated --format json
        raise _fail(InputError(f"--as {style}: use table or markdown (or --json PATH for JSON)"))
    if not directory.is_dir():
        raise _fail(FileNotFoundError(f"{directory}: not a directory"))
    rows = collect(directory)
    if not rows:
        raise _fail(FileNotFoundError(f"{directory}: no edge-bert result files (*.json with an edge-bert schema)"))
    if json_out != "-":
        render(rows, style)
    write_json({"schema": "edge-bert/results/v1", "directory": str(directory), "rows": rows}, json_out)


def register(app: typer.Typer) -> None:
    app.add_typer(device_app, name="device")
    app.command("results")(results)


def auto_convert(device: str, remote_python: str, keep_candidates: bool) -> Callable[..., list]:
    """``convert --recipe auto``: a drop-in for the CLI's ``_convert`` that converts every candidate recipe
    aside, lets the device pick one (convert/auto_recipe.py) and writes only that bundle to OUT."""

    def run(model: Optional[str], target: str, out: Path, quiet: bool = False, **options: Any) -> list:
        from edge_bert.cli.common import convert_and_show as _convert
        from edge_bert.convert import auto_recipe

        console = out_console("-" if quiet else None)
        try:
            transport = open_device(device, remote_python)
            auto_recipe.refuse_emulated(transport)
            length, threads = auto_recipe.profile_bench(target)
        except EdgeBertError as exc:
            raise _fail(exc) from exc
        out.mkdir(parents=True, exist_ok=True)
        aside = out / "candidates" if keep_candidates else Path(tempfile.mkdtemp(prefix=".auto-", dir=out))
        try:
            outcomes = _convert(model, target, aside, quiet, **{**options, "recipes": None})
            candidates = auto_recipe.candidates_from(outcomes)
            log = lambda m: console.print(f"[dim]{terminal(m)}[/dim]", highlight=False)  # noqa: E731
            for candidate in candidates:
                if candidate.bundle is not None:
                    auto_recipe.measure(transport, candidate, threads, log)
            winner = auto_recipe.choose(candidates, length)
            console.print(selection_table(device, candidates, length))
            if winner is None:
                console.print(f"[red]no candidate passed its gates on {terminal(device)}; nothing written[/red]")
                return [o for o in outcomes if not o.passed] or [dataclasses.replace(outcomes[0], passed=False)]
            record = auto_recipe.selection_record(transport, candidates, length, threads)
            final = auto_recipe.install(winner.bundle, out, record, bool(options.get("overwrite")))
        except EdgeBertError as exc:
            raise _fail(exc) from exc
        finally:
            if not keep_candidates:
                shutil.rmtree(aside, ignore_errors=True)
        console.print(f"{terminal(winner.label)} chosen on {terminal(device)}: {terminal(str(final))}", highlight=False)
        chosen = next(o for o in outcomes if o.format == winner.format and o.recipe == winner.recipe)
        return [dataclasses.replace(chosen, bundle=final)]

    return run


def selection_table(device: str, candidates: list, length: int) -> Table:
    threads = sorted({t for c in candidates for t in c.p50_ms})
    table = Table(title=f"--recipe auto on {terminal(device)}: p50 ms at {length} tokens")
    for column in ["format", "recipe", "gates on device", *[f"{t} thread(s)" for t in threads], "verdict"]:
        table.add_column(column)
    for c in candidates:
        gates = "-" if c.device_gates is None else ("pass" if c.passed else "[red]fail[/red]")
        cells = [f"{c.p50_ms[t][length]:.2f}" if length in c.p50_ms.get(t, {}) else "-" for t in threads]
        verdict = f"[green]{terminal(c.reason)}[/green]" if c.chosen else terminal(c.reason)
        table.add_row(terminal(c.format), terminal(c.recipe), gates, *cells, verdict)
    return table
