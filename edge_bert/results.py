"""The common head of every result document (validate, bench): what ran, on what, where.

One schema on every device, so results from a Pi, a phone, an emulated board and an x86 box can be
compared (``edge-bert results``). A result run on another device comes back through a transport,
which fills in ``device`` and ``emulated``; run here they say ``local``.
"""

from __future__ import annotations

import os
from typing import Any

from edge_bert.fingerprint import fingerprint
from edge_bert.session import BundleSession


def result_header(schema: str, session: BundleSession) -> dict[str, Any]:
    bundle = session.bundle
    emulated = os.environ.get("EDGE_BERT_EMULATED")  # set by the emu: transport for the runner it starts
    manifest_sha = bundle.manifest_sha256  # the bytes that were verified and used, never the disk again
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
        "device": {
            "id": f"emu:{emulated}" if emulated else "local",
            "kind": "emu" if emulated else "local",
            "emulated": bool(emulated),
        },
        "emulated": bool(emulated),
        "machine": fingerprint(),
    }
