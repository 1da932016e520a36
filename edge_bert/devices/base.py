"""The device seam: a transport puts files on a device, runs the runner there and brings back its output.

validate, bench and run never learn which transport ran them: they hand the same runner arguments to
``run_runner`` and get back the same typed result a local run produces. ``local``, ``ssh://`` and ``emu:``
are the implementations; ``adb://serial`` can be another without touching validate or bench.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edge_bert.errors import EdgeBertError
from edge_bert.results.header import DeviceInfo
from edge_bert.results.io import Result, parse_result
from edge_bert.schema import SchemaError, parse

#: What to install on a device that lacks the runner, by bundle format.
INSTALL_HINT = {
    "onnx": 'pip install "edge-bert[onnx]"',
    "tflite": 'pip install "edge-bert[litert]"',
    "openvino": 'pip install "edge-bert[openvino]"',
}


class DeviceError(EdgeBertError):
    """A device cannot be reached or used; the message names the device and what to do."""


@dataclass(frozen=True)
class Completed:
    """What a program run on the device returned."""

    returncode: int
    stdout: str
    stderr: str


class Transport(ABC):
    """One device: ``put`` a bundle, ``execute`` a program, results come back on stdout."""

    kind: ClassVar[str]
    emulated: ClassVar[bool] = False

    def __init__(self, spec: str, python: str) -> None:
        self.id = spec
        self.python = python

    @abstractmethod
    def put(self, bundle: Path) -> str:
        """Make the bundle directory available on the device; return its path there."""

    @abstractmethod
    def put_file(self, path: Path) -> str:
        """Make one file (labelled data, a profile) available on the device; return its path there."""

    @abstractmethod
    def execute(self, argv: list[str], stdin: bytes | None = None, timeout: float | None = None) -> Completed:
        """Run ``argv`` on the device (argv[0] is a program there, e.g. its Python); never through a shell."""

    def describe(self) -> dict[str, Any]:
        """The device fields every result carries."""
        return {"id": self.id, "kind": self.kind, "emulated": self.emulated}

    def python_script(self, source: str, *args: str, stdin: bytes | None = None, timeout: float | None = None):
        """Run a self-contained Python script (our own source, never user input) on the device."""
        return self.execute([self.python, "-c", source, *args], stdin=stdin, timeout=timeout)

    def run_runner(self, args: list[str], timeout: float | None = None) -> Result:
        """``python -m edge_bert.cli ARGS --json -`` on the device; returns the typed result with this device's
        fields. The answer is untrusted: one that does not fit the result schema is refused, naming the field."""
        done = self.execute([self.python, "-m", "edge_bert.cli", *args, "--json", "-"], timeout=timeout)
        document = runner_document(done.stdout)
        if document is None:
            raise DeviceError(f"{self.id}: {self.explain_failure(done)}")
        try:
            result = parse_result(document)
        except SchemaError as exc:
            raise DeviceError(f"{self.id}: the device's result is refused: {exc}") from None
        return result.on_device(parse(DeviceInfo, self.describe(), "device"))

    def explain_failure(self, done: Completed) -> str:
        """One line: why the runner produced no result, and what to do."""
        text = done.stderr + "\n" + done.stdout
        missing = _missing_module(text)
        if missing == "edge_bert":
            return (
                f"edge-bert is not installed for {self.python} on the device; install the runner there: "
                f"{INSTALL_HINT['onnx']} (or {INSTALL_HINT['tflite']}), or name another --remote-python"
            )
        if missing:
            hint = INSTALL_HINT["tflite"] if "litert" in missing or "tflite" in missing else INSTALL_HINT["onnx"]
            return f"the runner on the device lacks {missing}: {hint} there"
        if "No space left on device" in text:
            return "the device has no space left; free some disk there and try again"
        errors = [line for line in text.splitlines() if line.strip().lower().startswith("error")]
        last = errors[-1] if errors else (text.strip().splitlines() or ["(no output)"])[-1]
        return f"the runner exited with code {done.returncode}: {last.strip()}"


def runner_document(stdout: str) -> dict[str, Any] | None:
    """The JSON document the runner printed with ``--json -`` (log lines before it are ignored); None when
    there is none (the runner failed: ``explain_failure`` says why)."""
    start = stdout.find("{\n")
    if start < 0:
        return None
    try:
        value = json.loads(stdout[start:], parse_constant=lambda _: None)
    except (ValueError, RecursionError):  # a hostile device: huge integers, deep nesting
        return None
    return value if isinstance(value, dict) and isinstance(value.get("schema"), str) else None


#: a file an option names (labelled data, a profile, texts) that is sent to a device
MAX_OPTION_FILE_BYTES = 1 << 30


def read_option_file(path: Path) -> bytes:
    """The bytes of a local file an option names, read once: a regular file (a FIFO or device never hangs
    the host: opened non-blocking, refused unless regular), not a link, at most 1 GiB."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise DeviceError(f"{path}: cannot be read ({exc.strerror or exc}); it is not sent to the device") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise DeviceError(f"{path}: not a regular file; only regular files are sent to a device")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > MAX_OPTION_FILE_BYTES:
            raise DeviceError(f"{path}: larger than {MAX_OPTION_FILE_BYTES >> 30} GiB; not sent to the device")
        return handle.read(MAX_OPTION_FILE_BYTES + 1)[:MAX_OPTION_FILE_BYTES]


def _missing_module(text: str) -> str | None:
    marker = "No module named "
    for line in text.splitlines():
        if marker in line:
            return line.split(marker, 1)[1].strip().strip("'\"").split(".")[0]
    return None


def run_local(argv: list[str], stdin: bytes | None, timeout: float | None, env: dict[str, str] | None = None):
    """subprocess.run as every transport uses it: argument list, bytes in, text out, no shell."""
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DeviceError(f"{argv[0]}: no answer within {timeout:.0f} s") from exc
    return Completed(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
