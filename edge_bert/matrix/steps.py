"""One step of a matrix cell: an edge-bert CLI verb (convert, validate, bench, distill) in its own process.

Whoever runs the steps (the local pool, a Ray worker, the students' trainer) runs them through here, so
a step's exit class, its reason (the last error line of its stderr), its timeout, its thread settings and
the strict read-back of its result file are the same everywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_bert.limits import usable_cpus
from edge_bert.matrix.spec import EMBEDDED, Cell, MatrixSpec, resolve
from edge_bert.results.io import load_result
from edge_bert.schema import SchemaError

#: exit classes of a failed step, by the CLI's exit code
EXIT_CLASSES = {1: "gate", 2: "input"}
#: the thread-count variables of the runtimes and of torch (convert), set for every step
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class Step:
    ok: bool
    exit_class: str | None = None
    reason: str | None = None


Report = Callable[[str, Cell | None, dict[str, Any] | None], None]


def timed(function: Callable[..., Any], *args: Any) -> tuple[Any, list[float]]:
    started = time.time()
    return function(*args), [started, time.time()]


def convert_step(spec: MatrixSpec, base: Path, cell: Cell, out: Path) -> Path | Step:
    """The cell's bundle: one already converted (a previous run), or converted now in its own process."""
    folder = out / "bundles" / cell.unit
    if (found := bundle_in(folder)) is not None:
        return found
    source = resolve(cell.model.source, base)
    argv = ["convert", *([] if source == EMBEDDED else [source]), "--target", cell.target, "--format", cell.format,
            "--recipe", cell.recipe, "--out", str(folder), "--name", cell.model.id, "--overwrite"]  # fmt: skip
    if spec.data is not None:
        argv += data_flags(spec, base, "--eval-data", "--eval-limit")
    step = run_cli(argv, spec.timeout_s, step_env(spec))
    if not step.ok:
        return step
    return bundle_in(folder) or Step(False, "crash", "convert exited 0 but wrote no bundle")


def bundle_in(folder: Path) -> Path | None:
    bundles = sorted(p.parent for p in folder.glob("*/manifest.json")) if folder.is_dir() else []
    return bundles[0] if len(bundles) == 1 else None


def device_steps(spec: MatrixSpec, base: Path, cell: Cell, bundle: Path, out: Path) -> Step:
    device = ["--device", cell.device]
    checked = out / "results" / f"{cell.key}.validate.json"
    argv = ["validate", str(bundle), *device, "--report-dir", str(out / "reports" / cell.key)]
    if spec.data is not None:
        argv += data_flags(spec, base, "--data", "--limit")
    step = result_step([*argv, *thread_flags(spec, cell.device)], checked, spec.timeout_s, step_env(spec))
    if not step.ok or cell.device.startswith("emu:"):  # an emulated board's timings are not latency: no bench
        return step
    timed = out / "results" / f"{cell.key}.bench.json"
    lengths = ",".join(str(n) for n in spec.seq_lengths)
    argv = ["bench", str(bundle), *device, "--runs", str(spec.runs), "--warmup", str(spec.warmup),
            "--seq-lengths", lengths, *thread_flags(spec, cell.device)]  # fmt: skip
    return result_step(argv, timed, spec.timeout_s, step_env(spec))


def thread_flags(spec: MatrixSpec, device: str) -> list[str]:
    """The matrix's thread count; else this machine's usable cores on it (a remote board keeps its profile's)."""
    if spec.threads or device == "local" or device.startswith("emu:"):
        return ["--threads", str(spec.threads or usable_cpus())]
    return []


def step_env(spec: MatrixSpec) -> dict[str, str]:
    """The environment of every step: the thread variables set to the matrix's threads (else usable cores)."""
    count = str(spec.threads or usable_cpus())
    return {**os.environ, **dict.fromkeys(THREAD_VARIABLES, count)}


def data_flags(spec: MatrixSpec, base: Path, data_flag: str, limit_flag: str) -> list[str]:
    data = spec.data
    assert data is not None
    flags = [data_flag, resolve(data.location, base)]
    for flag, value in (("--text-column", data.text_column), ("--label-column", data.label_column),
                        ("--split", data.split), (limit_flag, data.limit)):  # fmt: skip
        if value is not None:
            flags += [flag, str(value)]
    return flags


def result_step(argv: list[str], target: Path, timeout: float, env: dict[str, str] | None = None) -> Step:
    """A validate/bench step whose result is read back strictly before it is kept (temp file + rename)."""
    partial = target.with_suffix(".part")
    step = run_cli([*argv, "--json", str(partial)], timeout, env)
    if step.ok or (step.exit_class == "gate" and partial.is_file()):
        try:
            load_result(partial)
        except (OSError, ValueError, SchemaError) as exc:
            partial.unlink(missing_ok=True)
            return Step(False, "bad-result", f"{argv[0]} wrote no readable result: {str(exc)[:160]}")
        os.replace(partial, target)
    partial.unlink(missing_ok=True)  # what a failed step left half-written is no result
    return step


def run_cli(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> Step:
    command = [sys.executable, "-m", "edge_bert.cli", *argv]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        return Step(False, "timeout", f"{argv[0]} took longer than {timeout:g} s")
    if done.returncode == 0:
        return Step(True)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error")]
    reason = (errors or lines or [f"exit code {done.returncode}"])[-1].strip()[:300]
    return Step(False, EXIT_CLASSES.get(done.returncode, "crash"), f"{argv[0]}: {reason}")
