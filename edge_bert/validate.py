"""``validate``: on the device, prove a bundle computes what the fp32 PyTorch model computed.

Order matters: checksums and schema first (open_bundle), then the tokenizer (the bundle's
tokenizer.json must reproduce the golden token ids, or every later number is meaningless), then the
golden inputs through the runtime, compared with the stored fp32 outputs and gated by the profile.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.bundle import Bundle, open_bundle
from edge_bert.metrics import apply_gates, parity
from edge_bert.profiles import Gates
from edge_bert.results import result_header
from edge_bert.session import BundleSession

RESULT_SCHEMA = "edge-bert/validate/v1"


def bundle_gates(bundle: Bundle) -> Gates:
    """The gates the bundle was converted under (its recipe's, from the stored profile)."""
    return Gates().merged(bundle.manifest["recipe"]["gates"])


def validate(path: str | Path, gates: Gates | None = None, threads: int | None = None) -> dict[str, Any]:
    """Validate a bundle; returns the result document (same schema on every device)."""
    bundle = open_bundle(path)
    gates = gates or bundle_gates(bundle)
    session = BundleSession(bundle, threads=threads)
    golden = bundle.golden()
    tokenizer_check = _check_tokenizer(session, golden)

    start = time.perf_counter()
    outputs = []
    for ids, type_ids, length in zip(golden["input_ids"], golden["token_type_ids"], golden["lengths"], strict=True):
        result = session.run_ids(ids[:length], type_ids[:length])
        outputs.append(result[bundle.primary_output][0])
    elapsed = time.perf_counter() - start

    metrics = parity(np.stack(outputs), golden["output"], classification=bundle.task == "text-classification")
    verdicts = apply_gates(metrics, gates)
    passed = tokenizer_check["pass"] and all(v["pass"] for v in verdicts.values())
    return {
        **result_header(RESULT_SCHEMA, session),
        "checks": {
            "schema_and_checksums": {"pass": True, "files": len(bundle.manifest["files"])},
            "tokenizer": tokenizer_check,
        },
        "parity": {"output": bundle.primary_output, "reference": "pytorch fp32", **metrics},
        "gates": verdicts,
        "seconds": elapsed,
        "passed": bool(passed),
    }


def _check_tokenizer(session: BundleSession, golden: dict[str, np.ndarray]) -> dict[str, Any]:
    mismatches = []
    for text, ids, length in zip(golden["texts"], golden["input_ids"], golden["lengths"], strict=True):
        encoded = session.encoder.encode(str(text))
        if not np.array_equal(encoded.ids, ids[:length]):
            mismatches.append(str(text)[:60])
    return {"pass": not mismatches, "texts": len(golden["texts"]), "mismatches": mismatches[:5]}
