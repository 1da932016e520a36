"""``local``: this machine. validate and bench run in-process as always; the transport exists so that
``device check local`` and anything written against the seam treat this machine like any other."""

from __future__ import annotations

import sys
from pathlib import Path

from edge_bert.devices.base import Completed, Transport, run_local


class LocalTransport(Transport):
    kind = "local"

    def __init__(self, spec: str = "local", python: str | None = None) -> None:
        super().__init__("local", python or sys.executable)

    def put(self, bundle: Path) -> str:
        return str(Path(bundle).resolve())

    def put_file(self, path: Path) -> str:
        return str(Path(path).resolve())

    def execute(self, argv: list[str], stdin: bytes | None = None, timeout: float | None = None) -> Completed:
        return run_local(argv, stdin, timeout)
