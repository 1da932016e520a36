"""The emulated ARM64 userland: prepared once (``edge-bert device setup emu:rpi5``) and cached.

No binfmt_misc, chroot or mounts are needed, so it works in containers and CI: debootstrap's first
stage fetches Debian bookworm arm64 with python3, every .deb is unpacked with ``dpkg-deb -x`` (no
maintainer scripts run), and the host's pip installs cp311 aarch64 wheels of the runner's
dependencies (the host's own versions, so emulated and host results come from the same releases) into
``ROOT/opt/site-packages``. Programs start as ``qemu-aarch64-static -L ROOT ROOT/usr/bin/python3.11``.

Pitfalls handled (see ../shared/reference/arm64-emulation-recipe.sh): onnxruntime segfaults at import
when it sees the host's x86 ``/proc/cpuinfo`` (qemu 7.2 passes it through), so each run shows an
ARM one for its CPU model (``ROOT/proc/cpuinfo``, which ``-L`` prefers); pip needs
``manylinux_2_28_aarch64`` tags or it silently picks onnxruntime 1.16; and QEMU_CPU is always set,
because qemu's default ``max`` CPU advertises SVE2/SME and int8 kernels return garbage there.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_bert.devices.base import DeviceError

SUITE = "bookworm"
PYTHON = "usr/bin/python3.11"
SITE = "opt/site-packages"
STAMP = ".edge-bert-userland"
#: The runner's dependencies, pinned to the host's versions where the host has them.
PACKAGES = ("numpy", "tokenizers", "typer", "rich", "onnxruntime", "ai-edge-litert")
PLATFORMS = (
    "manylinux_2_36_aarch64",
    "manylinux_2_35_aarch64",
    "manylinux_2_34_aarch64",
    "manylinux_2_28_aarch64",
    "manylinux_2_27_aarch64",
    "manylinux_2_17_aarch64",
    "manylinux2014_aarch64",
    "linux_aarch64",
)


@dataclass(frozen=True)
class EmuModel:
    """One emulated board: the qemu CPU model and the /proc/cpuinfo the runner sees."""

    name: str
    title: str
    qemu_cpu: str
    board: str
    part: str
    variant: str
    revision: int
    features: str


_A76_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
MODELS = {
    "rpi4": EmuModel(
        "rpi4",
        "Raspberry Pi 4 (Cortex-A72: NEON, no dot-product instructions)",
        "cortex-a72",
        "Raspberry Pi 4 Model B Rev 1.5",
        "0xd08",
        "0x0",
        3,
        "fp asimd evtstrm crc32 cpuid",
    ),
    "rpi5": EmuModel(
        "rpi5",
        "Raspberry Pi 5 (Cortex-A76: NEON + sdot/udot)",
        "cortex-a76",
        "Raspberry Pi 5 Model B Rev 1.0",
        "0xd0b",
        "0x4",
        1,
        _A76_FEATURES,
    ),
    # a phone big core (Armv9, Cortex-X2 class): dot products, i8mm, bf16 and 128-bit SVE2. qemu's "max" CPU
    # with SME off (SME made int8 results garbage under qemu 7.2) and SVE at a phone's 128-bit vector length
    "android-arm64": EmuModel(
        "android-arm64",
        "Android arm64 phone big core (Armv9, Cortex-X2 class: sdot/udot, i8mm, SVE2)",
        "max,sme=off,sve-default-vector-length=16",
        "Android arm64 phone (big core)",
        "0xd48",
        "0x2",
        0,
        _A76_FEATURES + " sve asimdfhm sve2 i8mm bf16",
    ),
}


def cache_dir() -> Path:
    """``$EDGE_BERT_CACHE`` or ``~/.cache/edge-bert``: CI caches it between runs."""
    base = os.environ.get("EDGE_BERT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edge-bert")
    return Path(base)


def userland_dir() -> Path:
    return cache_dir() / "arm64-bookworm"


def qemu_binary() -> str | None:
    return shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")


def wanted_packages() -> list[str]:
    pinned = []
    for name in PACKAGES:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(name)
    return pinned


def ready(root: Path | None = None) -> bool:
    """Set up, with the packages this host would install now."""
    root = root or userland_dir()
    stamp = root / STAMP
    return stamp.is_file() and stamp.read_text().split() == wanted_packages() and (root / PYTHON).exists()


def missing_tools() -> list[str]:
    need = []
    if not qemu_binary():
        need.append("qemu-user-static")
    if not shutil.which("debootstrap"):
        need.append("debootstrap")
    if not shutil.which("dpkg-deb"):
        need.append("dpkg")
    return need


def cpuinfo_text(model: EmuModel) -> str:
    """An ARM /proc/cpuinfo for ``model``; as many processors as the host's /sys says are present."""
    try:
        present = Path("/sys/devices/system/cpu/present").read_text().strip()
        last = int(present.replace(",", "-").split("-")[-1])
    except (OSError, ValueError):
        last = (os.cpu_count() or 1) - 1
    block = (
        f"BogoMIPS\t: 108.00\nFeatures\t: {model.features}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: {model.variant}\nCPU part\t: {model.part}\n"
        f"CPU revision\t: {model.revision}\n\n"
    )
    cpus = "".join(f"processor\t: {i}\n{block}" for i in range(last + 1))
    return cpus + f"Revision\t: 0\nSerial\t\t: 0000000000000000\nModel\t\t: {model.board} (qemu-user emulated)\n"


def debian_mirror() -> str:
    """The host's Debian mirror (first URIs: of its apt sources), else deb.debian.org."""
    for sources in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in sources.read_text(errors="replace").splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return os.environ.get("EDGE_BERT_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def setup(log: Callable[[str], None] = print, force: bool = False) -> Path:
    """Prepare (or refresh) the userland; returns its root. Idempotent: a ready userland is left alone."""
    root = userland_dir()
    if ready(root) and not force:
        log(f"arm64 userland ready: {root}")
        return root
    if need := missing_tools():
        raise DeviceError(f"emulation needs {', '.join(need)}: apt-get install -y {' '.join(need)}")
    if os.geteuid() != 0:
        raise DeviceError("preparing the arm64 userland runs debootstrap, which needs root: run it with sudo once")
    start = time.monotonic()
    base = root / ".base-done"
    if not base.exists():
        if root.exists():
            shutil.rmtree(root)
        root.parent.mkdir(parents=True, exist_ok=True)
        log(f"debootstrap {SUITE} arm64 (first stage, with python3) into {root}")
        _run(
            [
                "debootstrap",
                "--arch=arm64",
                "--variant=minbase",
                "--foreign",
                "--include=python3,ca-certificates",
                SUITE,
                str(root),
                debian_mirror(),
            ],
            "debootstrap",
        )
        debs = sorted((root / "var/cache/apt/archives").glob("*.deb"))
        log(f"unpacking {len(debs)} packages (dpkg-deb -x, no maintainer scripts)")
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(root)], f"dpkg-deb -x {deb.name}")
            deb.unlink()
        certs = Path("/etc/ssl/certs/ca-certificates.crt")
        if certs.is_file():
            (root / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
            shutil.copy(certs, root / "etc/ssl/certs/ca-certificates.crt")
        proc = root / "proc"
        if proc.is_symlink() or proc.is_file():
            proc.unlink()
        proc.mkdir(exist_ok=True)
        (proc / "cpuinfo").write_text(cpuinfo_text(MODELS["rpi5"]))
        base.touch()
    packages = wanted_packages()
    site = root / SITE
    log(f"pip: aarch64 cp311 wheels into {site}: {' '.join(packages)}")
    shutil.rmtree(site, ignore_errors=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(site),
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            "3.11",
            "--abi",
            "cp311",
            *platforms,
            *packages,
        ],
        "pip install (aarch64 wheels)",
    )
    (root / STAMP).write_text("\n".join(packages) + "\n")
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and not f.is_symlink())
    log(f"arm64 userland ready in {time.monotonic() - start:.0f} s, {size / 1e6:.0f} MB: {root}")
    return root


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise DeviceError(f"{what} failed (exit {done.returncode}): {' / '.join(tail)}")
