"""``emu:rpi4|rpi5|android-arm64``: the runner under qemu user-mode aarch64 with that board's CPU model.

ARM64 kernels of onnxruntime and LiteRT/XNNPACK really run (NEON; sdot/udot on Cortex-A76), so parity
and accuracy on ARM are measured without owning the board. Latency is not: every instruction is
emulated, so results carry ``emulated: true`` and tables never show their timings as device figures.
The device shares this machine's files (no copy); the runner is this host's edge_bert source on top of
the userland's aarch64 wheels, so host and "device" run the same code.
"""

from __future__ import annotations

import fcntl
import tempfile
from pathlib import Path

import edge_bert
from edge_bert.devices.base import Completed, DeviceError, Transport, run_local
from edge_bert.devices.emu_setup import MODELS, PYTHON, SITE, cpuinfo_text, qemu_binary, ready, userland_dir


class EmuTransport(Transport):
    kind = "emu"
    emulated = True

    def __init__(self, spec: str, python: str = "python3") -> None:
        name = spec.removeprefix("emu:")
        if name not in MODELS:
            raise DeviceError(
                f"{spec}: unknown emulated device; choose one of " + ", ".join(f"emu:{m}" for m in MODELS)
            )
        super().__init__(spec, "python3")  # always the userland's Python; --remote-python does not apply
        self.model = MODELS[name]

    def describe(self) -> dict:
        return {**super().describe(), "cpu": self.model.qemu_cpu, "board": self.model.title}

    def put(self, bundle: Path) -> str:
        return str(Path(bundle).resolve())

    def put_file(self, path: Path) -> str:
        return str(Path(path).resolve())

    def execute(self, argv: list[str], stdin: bytes | None = None, timeout: float | None = None) -> Completed:
        root = userland_dir()
        qemu = qemu_binary()
        if not ready(root) or not qemu:
            raise DeviceError(
                f"{self.id}: the arm64 userland is not set up here: run `edge-bert device setup "
                f"{self.id}` once (about a minute; needs root and qemu-user-static)"
            )
        exe = str(root / PYTHON) if argv[0] in ("python", "python3", "python3.11") else str(root) + argv[0]
        runner = root / "opt/edge-bert-runner"
        runner.mkdir(exist_ok=True)
        link = runner / "edge_bert"
        source = Path(edge_bert.__file__).resolve().parent
        if not link.is_symlink() or link.resolve() != source:
            link.unlink(missing_ok=True)
            link.symlink_to(source)
        with tempfile.TemporaryDirectory(prefix="edge-bert-emu-home-") as home, _cpuinfo_lock(root):
            (root / "proc/cpuinfo").write_text(cpuinfo_text(self.model))
            env = {
                "PATH": "/usr/bin:/bin",
                "HOME": home,
                "LANG": "C.UTF-8",
                "QEMU_CPU": self.model.qemu_cpu,  # never qemu's default "max": int8 results are garbage there
                "QEMU_LD_PREFIX": str(root),
                "PYTHONPATH": f"{root / SITE}:{runner}",  # the aarch64 wheels first, then edge_bert only
                "PYTHONDONTWRITEBYTECODE": "1",
                "EDGE_BERT_EMULATED": self.model.name,
            }
            return run_local([qemu, "-L", str(root), exe, *argv[1:]], stdin, timeout, env=env)


class _cpuinfo_lock:
    """One emulated process at a time per userland: each sees the /proc/cpuinfo of its own board."""

    def __init__(self, root: Path) -> None:
        self.path = root / ".cpuinfo.lock"

    def __enter__(self) -> None:
        self.handle = self.path.open("w")
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
