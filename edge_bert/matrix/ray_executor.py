"""``edge-bert matrix --ray ADDRESS|local``: the matrix's steps as Ray tasks, not a home-made scheduler.

Conversions are tasks that declare ``num_cpus`` and ``memory`` (~2 GB each). A device cell asks for one unit
of the custom resource ``device:<id>`` (``device_resource``): the node wired to a board offers 1 of it, so a
device runs one bench at a time, and the board itself never runs Ray. Each task runs the same CLI
subprocess as the local pool, in a scratch folder of the node it lands on; what it made comes back to the
driver through Ray as bytes (a bundle as a tar, results and reports as a tar), and the driver alone writes
``OUT`` and the index, so ``OUT`` needs no shared filesystem. The inputs do: model folders, data and profile
files named by path are read at the same path on every node (a hub id or a built-in profile needs nothing).

A worker that dies (killed, out of memory, its node lost) is retried ``retries`` times, then its cell is
recorded as failed with exit class ``worker-died``; a cell is never lost. Ray is imported here only: the
runner never needs it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from edge_bert.errors import InputError
from edge_bert.limits import usable_cpus
from edge_bert.matrix.run import Converted, Finished, Started
from edge_bert.matrix.spec import Cell, MatrixSpec
from edge_bert.matrix.steps import Step, bundle_in, convert_step, device_steps, timed
from edge_bert.results.io import load_result
from edge_bert.schema import SchemaError

INSTALL = "pip install 'edge-bert[ray]'"
#: what one conversion may use (torch + the exported graph + the quantizer's copy of it)
CONVERSION_MEMORY = 2 * 1024**3


def device_resource(device: str) -> str:
    """``device:<id>``: ``local`` -> ``device:local``; ``ssh://pi@rpi5-lab`` -> ``device:rpi5-lab`` (the host;
    a port other than 22 is appended, ``rpi5-lab-2222``); ``emu:rpi5`` -> ``device:emu-rpi5``. Any other
    character than A-Z a-z 0-9 . _ - becomes ``-``."""
    name = device
    if device.startswith("ssh://"):
        parts = urlsplit(device)
        name = parts.hostname or device
        if parts.port not in (None, 22):
            name = f"{name}-{parts.port}"
    elif device.startswith("emu:"):
        name = f"emu-{device[4:]}"
    return "device:" + "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in name)


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise InputError(f"--ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


class RayExecutor:
    """Conversions as Ray tasks (all finished before any device step), then device cells pinned to their
    device's resource: remote and emulated devices in parallel, ``local`` ones after them, one at a time."""

    def __init__(self, address: str, devices: list[str], retries: int = 1) -> None:
        self.ray = import_ray()
        self.retries = retries
        self.local = address == "local"
        self.bundles: dict[str, Any] = {}  # each unit's bundle as tar bytes in the object store
        try:
            if self.local:  # an instance of our own on this machine, offering this machine's devices
                # its token authentication is on (good); the line saying so is noise on the matrix's stderr
                logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
                resources = {device_resource(d): 1.0 for d in devices}
                # address "local": always a new instance, never a cluster found on this machine (ray start)
                self.ray.init(address="local", num_cpus=usable_cpus(), include_dashboard=False, resources=resources,
                              logging_level=logging.WARNING, log_to_driver=False)  # fmt: skip
            else:
                self.ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise InputError(f"--ray {address}: cannot start or reach Ray ({str(exc).splitlines()[0]})") from None

    def close(self) -> None:
        self.ray.shutdown()

    def _offered(self) -> tuple[dict[str, float], float]:
        """Every resource the cluster offers, and the most memory one node has."""
        memory = max((n["Resources"].get("memory", 0.0) for n in self.ray.nodes() if n.get("Alive")), default=0.0)
        return self.ray.cluster_resources(), memory

    def convert(self, spec: MatrixSpec, base: Path, units: dict[str, Cell], out: Path) -> Iterator[Converted]:
        _, memory = self._offered()
        task = self.ray.remote(_convert_task).options(
            num_cpus=1, memory=min(CONVERSION_MEMORY, memory or CONVERSION_MEMORY), max_retries=self.retries
        )
        futures = {}
        for unit, cell in units.items():
            if (found := bundle_in(out / "bundles" / unit)) is not None:  # converted by a previous run
                self.bundles[unit] = self.ray.put(_tar(found.parent, found.name))
                yield unit, found, [time.time(), time.time()]
            else:
                futures[unit] = task.remote(spec, str(base), cell)
        for unit, future in futures.items():
            started = time.time()
            try:
                step, name, archive, span = self.ray.get(future)
            except self.ray.exceptions.RayError as exc:
                yield unit, _lost(exc, "convert"), [started, time.time()]
                continue
            if archive is None:
                yield unit, step, span
                continue
            folder = out / "bundles" / unit
            _untar(archive, folder)
            self.bundles[unit] = self.ray.put(archive)
            yield unit, folder / name, span

    def device_steps(self, spec: MatrixSpec, base: Path, cells: list[Cell], bundles: dict[str, Path], out: Path,
                     started: Started) -> Iterator[Finished]:  # fmt: skip
        offered, _ = self._offered()
        remote = [c for c in cells if c.device != "local"]
        local = [c for c in cells if c.device == "local"]
        for group in (remote, local):  # a local bench never runs beside the other devices' steps on this node
            futures = {}
            for cell in group:
                resource = device_resource(cell.device)
                if offered.get(resource, 0) < 1:
                    offer = f"ray start --address=HEAD:6379 --resources='{{\"{resource}\": 1}}'"
                    reason = f"no Ray node offers {resource}: on the host wired to it, {offer}"
                    yield cell, Step(False, "input", reason), [time.time(), time.time()]
                    continue
                task = self.ray.remote(_device_task).options(
                    num_cpus=0, resources={resource: 1}, max_retries=self.retries
                )
                started(cell)
                futures[cell.key] = (cell, task.remote(spec, str(base), cell, self.bundles[cell.unit]))
            for cell, future in futures.values():
                begun = time.time()
                try:
                    step, archive, span, there = self.ray.get(future)
                except self.ray.exceptions.RayError as exc:
                    yield cell, _lost(exc, "validate"), [begun, time.time()]
                    continue
                yield cell, _keep_results(archive, out, cell, step, (there, str(bundles[cell.unit]))), span


def _lost(exc: Exception, step: str) -> Step:
    """A task that ended without an answer: its worker or node died (after the retries), or the task raised."""
    import ray.exceptions as errors

    if isinstance(exc, errors.RayTaskError):
        return Step(False, "crash", f"{step}: the Ray task raised {type(exc.cause).__name__}: {exc.cause}"[:300])
    return Step(False, "worker-died", f"{step}: the Ray worker died ({type(exc).__name__}), retries used up")


def _keep_results(archive: bytes, out: Path, cell: Cell, step: Step, moved: tuple[str, str]) -> Step:
    """The worker's result files and validate report, moved into ``out`` atomically once they read back; the
    bundle's path on the worker (``moved[0]``) becomes the driver's copy (``moved[1]``) in them."""
    with tempfile.TemporaryDirectory(dir=out, prefix=".ray-") as scratch:
        root = Path(scratch)
        _untar(archive, root / "x")
        for made in (p for p in (root / "x").rglob("*") if p.is_file() and p.suffix in (".json", ".md")):
            escape = (lambda t: json.dumps(t)[1:-1]) if made.suffix == ".json" else str
            text = made.read_text(encoding="utf-8")
            made.write_text(text.replace(escape(moved[0]), escape(moved[1])), encoding="utf-8")
        for made in sorted((root / "x" / "results").glob(f"{cell.key}.*.json")):
            try:
                load_result(made)
            except (OSError, ValueError, SchemaError) as exc:
                return Step(False, "bad-result", f"{made.name}: {str(exc)[:160]}")
            os.replace(made, out / "results" / made.name)
        report = root / "x" / "reports" / cell.key
        if report.is_dir():
            shutil.rmtree(out / "reports" / cell.key, ignore_errors=True)
            os.replace(report, out / "reports" / cell.key)
    return step


def _convert_task(spec: MatrixSpec, base: str, cell: Cell) -> tuple[Step, str | None, bytes | None, list[float]]:
    """On a worker: the cell's conversion in a scratch folder; the bundle comes back as tar bytes."""
    with tempfile.TemporaryDirectory(prefix="edge-bert-convert-") as scratch:
        outcome, span = timed(convert_step, spec, Path(base), cell, Path(scratch))
        if isinstance(outcome, Step):
            return outcome, None, None, span
        return Step(True), outcome.name, _tar(outcome.parent, outcome.name), span


def _device_task(spec: MatrixSpec, base: str, cell: Cell, bundle: bytes) -> tuple[Step, bytes, list[float], str]:
    """On the node holding the device's resource: validate (+ bench) in a scratch folder; the results and the
    report come back as tar bytes, with the bundle's path here (the driver puts its own copy's instead)."""
    with tempfile.TemporaryDirectory(prefix="edge-bert-device-") as scratch:
        root = Path(scratch)
        for sub in ("results", "reports"):
            (root / sub).mkdir()
        _untar(bundle, root / "bundles" / cell.unit)
        found = bundle_in(root / "bundles" / cell.unit)
        if found is None:
            step, span = Step(False, "crash", "the bundle sent to the worker holds no manifest"), [time.time()] * 2
        else:
            step, span = timed(device_steps, spec, Path(base), cell, found, root)
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for sub in ("results", "reports"):
                tar.add(root / sub, arcname=sub)
        return step, archive.getvalue(), span, str(found)


def _tar(parent: Path, name: str) -> bytes:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(parent / name, arcname=name)
    return archive.getvalue()


def _untar(archive: bytes, folder: Path) -> None:
    """Unpack into ``folder`` atomically (temp folder + rename); the "data" filter refuses links out of it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
        tar.extractall(partial, filter="data")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
