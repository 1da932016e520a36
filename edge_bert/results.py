"""The common head of every result document (validate, bench): what ran, on what, where.

One schema on every device, so results from a Pi, a phone and an x86 box can be compared.
"""

from __future__ import annotations

from typing import Any

from edge_bert.fingerprint import fingerprint
from edge_bert.session import BundleSession


def result_header(schema: str, session: BundleSession) -> dict[str, Any]:
    bundle = session.bundle
    return {
        "schema": schema,
        "bundle": bundle.name,
        "path": str(bundle.path),
        "format": bundle.format,
        "recipe": bundle.manifest["recipe"]["name"],
        "task": bundle.task,
        "runtime": {"name": session.backend.runtime, **session.backend.versions()},
        "machine": fingerprint(),
    }
