"""validate and bench on another device: the CLI calls these instead of the in-process runner.

The result that comes back is the same typed result a local run produces (with the device's fields), read
strictly from the device's answer, so the CLI shows, writes and gates it with the same code and exit codes.
Local files named by options (labelled data, a profile .toml, bench texts) are copied to the device first.

One transport is opened per command (``open_device``) and passed along; ``RUNNER_OPTIONS`` is the one
place that says how each keyword of the local function reaches the runner on the device, so an option
added to validate or bench but not here is an error, never silently dropped.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from edge_bert.bundle import open_bundle
from edge_bert.devices.base import DeviceError, Transport
from edge_bert.results.bench import BenchResult
from edge_bert.results.validate import ValidateResult
from edge_bert.validate import judge

#: per verb, each keyword the local function takes -> how it reaches the device: a runner option name (sent
#: as ``--name value``), or CARRIED when the CLI's value as typed goes instead (a profile name for ``gates``,
#: the data location for the labelled rows, the texts file for the texts read from it; the progress callback
#: has no remote counterpart)
CARRIED = None
RUNNER_OPTIONS: dict[str, dict[str, str | None]] = {
    "validate": {
        "threads": "threads",
        "profile": "profile",
        "data": "data",
        "text_column": "text_column",
        "label_column": "label_column",
        "split": "split",
        "limit": "limit",
        "gates": CARRIED,
        "progress": CARRIED,
    },
    "bench": {
        "threads": "threads",
        "seq_lengths": "seq_lengths",
        "runs": "runs",
        "warmup": "warmup",
        "sustained": "sustained",
        "texts": "texts",
        "progress": CARRIED,
    },
}


#: the runner options whose value may be a local file, sent to the device: decided by the option, never by
#: whether a string happens to name a file (``--text-column text`` beside a file called ``text`` stays a name).
#: ``--data`` may also be a dataset id and ``--profile`` a built-in profile name: those are passed as typed.
FILE_OPTIONS = frozenset({"--data", "--profile", "--texts"})


def is_local(device: str | None) -> bool:
    return device in (None, "", "local")


def runner_flags(verb: str, options: dict[str, Any]) -> dict[str, Any]:
    """``--name value`` pairs for ``verb``'s runner; an option RUNNER_OPTIONS does not know is a TypeError."""
    known = RUNNER_OPTIONS[verb]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"{verb} on a device: unknown option(s) {', '.join(unknown)}; add them to RUNNER_OPTIONS")
    return {f"--{known[k].replace('_', '-')}": v for k, v in options.items() if known[k] is not CARRIED}


def _argv(transport: Transport, flags: dict[str, Any]) -> list[str]:
    """The flags as argv for the device; the value of a FILE_OPTIONS option that is a local file is copied there."""
    argv: list[str] = []
    for flag, value in flags.items():
        if value is None:
            continue
        if flag in FILE_OPTIONS and (isinstance(value, Path) or Path(str(value)).is_file()):
            value = transport.put_file(Path(value))
        elif isinstance(value, tuple | list):
            value = ",".join(str(v) for v in value)
        argv += [flag, str(value)]
    return argv


def validate_on(transport: Transport, bundle: Path, **options: Any) -> ValidateResult:
    """``edge-bert validate`` on the device; options by runner option name (threads, data, ...)."""
    flags = runner_flags("validate", options)
    remote = transport.put(Path(bundle))
    with tempfile.TemporaryDirectory(prefix="edge-bert-reports-") as scratch:
        # the device writes its own copy of the reports somewhere harmless; the host writes the real ones
        reports = str(PurePosixPath(remote).parent.parent / "reports") if transport.kind == "ssh" else scratch
        result = transport.run_runner(["validate", remote, "--report-dir", reports, *_argv(transport, flags)])
    if not isinstance(result, ValidateResult):
        raise DeviceError(f"{transport.id}: the device answered validate with a {result.schema} result; refused")
    # a device is untrusted: its verdict is re-derived here from its metrics under the bundle's own gates
    return judge(result, open_bundle(bundle), options.get("gates"))


def bench_on(transport: Transport, bundle: Path, **options: Any) -> BenchResult:
    """``edge-bert bench`` on the device; emulated results are marked so no table shows them as device latency."""
    flags = runner_flags("bench", options)
    remote = transport.put(Path(bundle))
    result = transport.run_runner(["bench", remote, *_argv(transport, flags)])
    if not isinstance(result, BenchResult):
        raise DeviceError(f"{transport.id}: the device answered bench with a {result.schema} result; refused")
    return result


def on_device(verb: str, transport: Transport, **typed: Any) -> Callable[..., ValidateResult | BenchResult]:
    """A drop-in for the local ``validate.validate_result`` / ``bench.bench_result`` that runs on the device. ``typed``
    are the CLI's option values as the user typed them (a data location, a profile name, a texts file);
    they go along on every call, and call-time keywords are mapped by RUNNER_OPTIONS."""
    runner_flags(verb, typed)  # an unknown option fails here, before any work
    run_on = {"validate": validate_on, "bench": bench_on}[verb]

    def run(bundle: Path, **options: Any) -> ValidateResult | BenchResult:
        return run_on(transport, bundle, **{**options, **{k: v for k, v in typed.items() if v is not None}})

    return run


def emulated_note(result: BenchResult) -> str:
    """Appended to any title that shows timings: an emulated board's timings are not its latency."""
    return " · EMULATED (qemu): timings are not device latency" if result.emulated else ""
