"""validate and bench on another device: the CLI calls these instead of the in-process runner.

The result that comes back is the same document a local run produces (plus the device fields), so the
CLI shows, writes and gates it with the same code and exit codes. Local files named by options
(labelled data, a profile .toml, bench texts) are copied to the device first.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from edge_bert.devices import open_device
from edge_bert.devices.base import Transport


def is_local(device: str | None) -> bool:
    return device in (None, "", "local")


def _options(transport: Transport, options: dict[str, Any]) -> list[str]:
    """``--name value`` pairs for the runner on the device; values that are local files are copied there."""
    argv: list[str] = []
    for flag, value in options.items():
        if value is None:
            continue
        if isinstance(value, Path) or (isinstance(value, str) and Path(value).is_file()):
            value = transport.put_file(Path(value))
        elif isinstance(value, tuple | list):
            value = ",".join(str(v) for v in value)
        argv += [flag, str(value)]
    return argv


def validate_on(device: str, bundle: Path, remote_python: str = "python3", **options: Any) -> dict[str, Any]:
    """``edge-bert validate`` on DEVICE; options by runner flag name without dashes (threads, data, ...)."""
    transport = open_device(device, remote_python)
    remote = transport.put(Path(bundle))
    flags = {f"--{k.replace('_', '-')}": v for k, v in options.items()}
    with tempfile.TemporaryDirectory(prefix="edge-bert-reports-") as scratch:
        # the device writes its own copy of the reports somewhere harmless; the host writes the real ones
        reports = str(PurePosixPath(remote).parent.parent / "reports") if transport.kind == "ssh" else scratch
        return transport.run_runner(["validate", remote, "--report-dir", reports, *_options(transport, flags)])


def bench_on(device: str, bundle: Path, remote_python: str = "python3", **options: Any) -> dict[str, Any]:
    """``edge-bert bench`` on DEVICE; emulated results are marked so no table shows them as device latency."""
    transport = open_device(device, remote_python)
    remote = transport.put(Path(bundle))
    flags = {f"--{k.replace('_', '-')}": v for k, v in options.items()}
    return transport.run_runner(["bench", remote, *_options(transport, flags)])


def validate_on_device(
    device: str,
    remote_python: str = "python3",
    profile: str | None = None,
    data: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> Callable[..., dict[str, Any]]:
    """A drop-in for ``validate.validate`` that runs on DEVICE (the CLI's option values, as typed, go along)."""

    def run(bundle: Path, threads: int | None = None, **_ignored: Any) -> dict[str, Any]:
        return validate_on(
            device,
            bundle,
            remote_python,
            threads=threads,
            profile=profile,
            data=data,
            text_column=text_column,
            label_column=label_column,
            split=split,
            limit=limit,
        )

    return run


def bench_on_device(device: str, remote_python: str = "python3", texts: Path | None = None) -> Callable[..., dict]:
    """A drop-in for ``bench.bench`` that runs on DEVICE."""

    def run(
        bundle: Path,
        threads: int | None = None,
        seq_lengths: tuple[int, ...] | None = None,
        runs: int | None = None,
        warmup: int | None = None,
        sustained: float | None = None,
        **_ignored: Any,
    ) -> dict[str, Any]:
        return bench_on(
            device,
            bundle,
            remote_python,
            threads=threads,
            seq_lengths=seq_lengths,
            runs=runs,
            warmup=warmup,
            texts=texts,
            sustained=sustained,
        )

    return run


def emulated_note(result: dict[str, Any]) -> str:
    """Appended to any title that shows timings: an emulated board's timings are not its latency."""
    return " · EMULATED (qemu): timings are not device latency" if result.get("emulated") else ""
