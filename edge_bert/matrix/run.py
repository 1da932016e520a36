"""Running a matrix: conversions in a local process pool, then every device step alone, resumable.

Each step is the edge-bert CLI in its own process (``convert``, ``validate``, ``bench``), so a crash, a
refused gate, an unreachable device or a timeout ends that cell only: it is recorded with its reason and
exit class and the rest go on. Timing is honest: every conversion has finished before the first device
step starts, and device steps run one at a time, so nothing of the matrix runs beside a bench. A cell's
record and result files are written atomically (temp file + rename) once the cell is finished; a restarted
matrix skips every cell with a record, and reuses every bundle already converted.

Where steps run is an ``Executor``: ``LocalPool`` here (the default), ``RayExecutor`` (matrix/ray_executor.py)
on a Ray cluster. Either way the driver alone writes records and the index. Every step gets its thread count
explicitly (``--threads`` and OMP_NUM_THREADS etc.): a Ray worker's OMP_NUM_THREADS=1 must not leak into it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edge_bert.matrix.spec import Cell, MatrixSpec
from edge_bert.matrix.steps import Report, Step, convert_step, device_steps, timed
from edge_bert.matrix.students import train_students
from edge_bert.render.terminal import json_text

INDEX_SCHEMA = "edge-bert/matrix/v1"
Started = Callable[[Cell], None]
#: a unit, its bundle (or the failed step) and the step's wall-clock span; a cell, its outcome and span
Converted = tuple[str, Path | Step, list[float]]
Finished = tuple[Cell, Step, list[float]]


class Executor(Protocol):
    """Runs the steps; the driver (``run_matrix``) keeps the order: every conversion ends before a device step."""

    def convert(self, spec: MatrixSpec, base: Path, units: dict[str, Cell], out: Path) -> Iterator[Converted]:
        """Each unit's bundle under ``out/bundles/UNIT`` (or the failed step), with its wall-clock span."""

    def device_steps(self, spec: MatrixSpec, base: Path, cells: list[Cell], bundles: dict[str, Path], out: Path,
                     started: Started) -> Iterator[Finished]:  # fmt: skip
        """Each cell's validate (+ bench) with its results in ``out/results``; no local bench beside other work."""


@dataclass
class LocalPool:
    """This machine: ``jobs`` conversions at once (threads each waiting on its process), then one device step
    at a time."""

    jobs: int

    def convert(self, spec: MatrixSpec, base: Path, units: dict[str, Cell], out: Path) -> Iterator[Converted]:
        with ThreadPoolExecutor(max_workers=max(1, self.jobs)) as pool:
            futures = {unit: pool.submit(timed, convert_step, spec, base, cell, out) for unit, cell in units.items()}
            for unit, future in futures.items():
                yield (unit, *future.result())

    def device_steps(self, spec: MatrixSpec, base: Path, cells: list[Cell], bundles: dict[str, Path], out: Path,
                     started: Started) -> Iterator[Finished]:  # fmt: skip
        for cell in cells:  # one at a time: a bench never shares the machine with other matrix work
            started(cell)
            yield (cell, *timed(device_steps, spec, base, cell, bundles[cell.unit], out))


def run_matrix(spec: MatrixSpec, base: Path, all_cells: list[Cell], out: Path, jobs: int, report: Report,
               executor: Executor | None = None) -> dict:  # fmt: skip
    """Run every cell without a record in ``out``; returns the index (also written to ``out/matrix.json``)."""
    for sub in ("cells", "results", "bundles", "reports"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    executor = executor or LocalPool(jobs)
    all_cells, untrained = train_students(spec, base, all_cells, out, report)  # before any conversion
    records = {cell.key: record for cell in all_cells if (record := _read_record(out, cell)) is not None}
    pending = [cell for cell in all_cells if cell.key not in records]
    report("start", None, {"done": len(records), "pending": len(pending)})

    units: dict[str, Cell] = {}
    for cell in pending:
        if cell.unit not in untrained:  # a student that failed to train has nothing to convert
            units.setdefault(cell.unit, cell)
    converted: dict[str, Path | Step] = dict(untrained)
    spans: dict[str, list[float]] = {}  # wall-clock start and end of each conversion (the index shows them)
    for unit, bundle, span in executor.convert(spec, base, units, out):
        report("convert", units[unit], None)
        converted[unit], spans[unit] = bundle, span

    def finish(cell: Cell, outcome: Step, span: list[float]) -> None:
        record = {**_record(cell, outcome, span[1] - span[0], out), "device_steps": span}
        records[cell.key] = record
        if outcome.ok:
            _atomic(out / "cells" / f"{cell.key}.json", json_text(record))
        report("finished", cell, record)
        _write_index(spec, all_cells, records, out, spans)

    ready = [cell for cell in pending if isinstance(converted[cell.unit], Path)]
    for cell in pending:
        if isinstance(failed := converted[cell.unit], Step):
            finish(cell, failed, [time.time(), time.time()])
    bundles = {unit: bundle for unit, bundle in converted.items() if isinstance(bundle, Path)}
    started: Started = lambda c: report("cell", c, None)  # noqa: E731
    for cell, outcome, span in executor.device_steps(spec, base, ready, bundles, out, started):
        finish(cell, outcome, span)
    return _write_index(spec, all_cells, records, out, spans)


def _record(cell: Cell, step: Step, seconds: float, out: Path) -> dict[str, Any]:
    files = {kind: f"results/{cell.key}.{kind}.json" for kind in ("validate", "bench")}
    return {
        "key": cell.key,
        "model": cell.model.id,
        "required": cell.model.required,
        "method": cell.model.method,
        "reference": cell.model.reference,
        "target": cell.target,
        "format": cell.format,
        "recipe": cell.recipe,
        "device": cell.device,
        "status": "done" if step.ok else "failed",
        "exit_class": step.exit_class,
        "reason": step.reason,
        **{kind: name for kind, name in files.items() if (out / name).is_file()},
        "seconds": round(seconds, 3),
    }


def _read_record(out: Path, cell: Cell) -> dict[str, Any] | None:
    """A finished cell's record (its result files still there), or None: the cell is run."""
    try:
        record = json.loads((out / "cells" / f"{cell.key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = [record.get(kind) for kind in ("validate", "bench") if record.get(kind)]
    return record if record.get("status") == "done" and all((out / f).is_file() for f in files) else None


def _write_index(
    spec: MatrixSpec, all_cells: list[Cell], records: dict[str, dict], out: Path, spans: dict[str, list[float]]
) -> dict:
    index = {
        "schema": INDEX_SCHEMA,
        "name": spec.name,
        "cells": [records.get(c.key) or {"key": c.key, "status": "pending"} for c in all_cells],
        # this run's conversions (wall-clock start, end): all end before the first device step starts
        "conversions": spans,
    }
    _atomic(out / "matrix.json", json_text(index))
    return index


def _atomic(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def failed_required(index: dict) -> list[dict]:
    return [c for c in index["cells"] if c["status"] != "done" and c.get("required", True)]
