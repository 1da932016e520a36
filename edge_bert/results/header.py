"""The common head of every result document (validate, bench): what ran, on what, where.

One schema on every device, so results from a Pi, a phone, an emulated board and an x86 box can be
compared (``edge-bert results``). A result run on another device comes back through a transport,
which fills in ``device`` and ``emulated``; run here they say ``local``. The head is flat in the JSON
(``bundle``, ``device``... beside ``parity`` or ``latency``), so it is a base class, not a sub-object.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from edge_bert.fingerprint import fingerprint
from edge_bert.manifest import safe_name
from edge_bert.schema import CHECK, at_least, parse, to_plain
from edge_bert.session import BundleSession

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
R = TypeVar("R", bound="ResultHeader")


def _checksums(value: dict[str, str]) -> str | None:
    bad = next((name for name, sha in value.items() if not _HEX64.fullmatch(sha)), None)
    return None if bad is None else f"{bad!r} must be 64 lower-case hex digits"


def _runtime(value: dict[str, str]) -> str | None:
    return None if "name" in value else "must name the runtime ('name')"


@dataclass(frozen=True)
class DeviceInfo:
    """Where it ran: ``local``, ``ssh://host``, ``emu:rpi5``; an emulated board's timings are not latency."""

    id: str
    kind: str
    emulated: bool
    #: an emulated board: the CPU qemu emulates and the board's name
    cpu: str | None = None
    board: str | None = None


@dataclass(frozen=True)
class Machine:
    """The machine the numbers came from (fingerprint.fingerprint): every published figure carries it."""

    machine: str
    cpu_model: str
    cpu_count: int | None
    affinity_cpus: int | None
    isa_flags: list[str]
    mem_total_gib: float | None
    os: str
    python: str


@dataclass(frozen=True)
class ResultHeader:
    """What every result carries: the schema (kind and version), the bundle and its checksums, the runtime
    with its versions, the device and the machine."""

    schema: str
    bundle: str = field(metadata={CHECK: safe_name})
    bundle_id: str
    checksums: dict[str, str] = field(metadata={CHECK: _checksums})
    path: str
    format: str
    recipe: str
    task: str
    runtime: dict[str, str] = field(metadata={CHECK: _runtime})
    device: DeviceInfo
    emulated: bool
    machine: Machine

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (the same shape the runner always wrote: unset optional fields are left out)."""
        return to_plain(self, drop_unset=True)

    def on_device(self: R, device: DeviceInfo) -> R:
        """This result as run on ``device`` (a transport fills in where its runner ran)."""
        return replace(self, device=device, emulated=device.emulated)


def result_header(schema: str, session: BundleSession) -> dict[str, Any]:
    """The header fields of a result run in this process, as keyword arguments of a result class."""
    bundle = session.bundle
    emulated = os.environ.get("EDGE_BERT_EMULATED")  # set by the emu: transport for the runner it starts
    manifest_sha = bundle.manifest_sha256  # the bytes that were verified and used, never the disk again
    device = DeviceInfo(id=f"emu:{emulated}" if emulated else "local", kind="emu" if emulated else "local",
                        emulated=bool(emulated))  # fmt: skip
    return {
        "schema": schema,
        "bundle": bundle.name,
        "bundle_id": f"{bundle.name}@{manifest_sha[:12]}",
        "checksums": {
            "manifest.json": manifest_sha,
            **{name: meta.sha256 for name, meta in bundle.manifest.files.items()},
        },
        "path": str(bundle.path),
        "format": bundle.format,
        "recipe": bundle.manifest.recipe.name,
        "task": bundle.task,
        "runtime": {"name": session.backend.runtime, **session.backend.versions()},
        "device": device,
        "emulated": bool(emulated),
        "machine": parse(Machine, fingerprint(), "machine"),
    }


#: shared checks for the result classes
non_negative = at_least(0)
