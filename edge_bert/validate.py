"""``validate``: on the device, prove a bundle computes what the fp32 PyTorch model computed.

Order matters: checksums and schema first (open_bundle), then the tokenizer (the bundle's
tokenizer.json must reproduce the golden token ids, or every later number is meaningless), then the
golden inputs through the runtime, compared with the stored fp32 outputs and gated by the profile.
With labelled data, the task itself: accuracy as % of the fp32 model's on the same texts (accuracy.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.accuracy import accuracy_gates, classification_metrics, embedding_metrics, text_key
from edge_bert.bundle import Bundle, open_bundle
from edge_bert.evaldata import LabelledData, match_labels
from edge_bert.metrics import apply_gates, parity
from edge_bert.profiles import Gates
from edge_bert.results import result_header
from edge_bert.session import BundleSession

RESULT_SCHEMA = "edge-bert/validate/v1"


def bundle_gates(bundle: Bundle) -> Gates:
    """The gates the bundle was converted under (its recipe's, from the stored profile)."""
    return Gates().merged(bundle.manifest["recipe"]["gates"])


Progress = Callable[[int, int], None]


def validate(
    path: str | Path,
    gates: Gates | None = None,
    threads: int | None = None,
    data: LabelledData | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Validate a bundle (and its task accuracy on ``data``); returns the result document."""
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
    evaluation = None
    if data is not None:
        evaluation = evaluate_data(session, data, progress)
        if "agreement" in evaluation["metrics"] and verdicts.pop("min_top1_agreement", None):
            # the same question on the whole labelled set instead of a few golden texts
            evaluation["notes"].append("top-1 agreement is gated on the labelled data (prediction agreement)")
        verdicts.update(accuracy_gates(evaluation["metrics"], gates))
    elif bundle.manifest.get("eval"):
        stored = bundle.manifest["eval"]
        source = stored["source"].get("name") or stored["source"].get("id")
        note = f"the bundle holds fp32 outputs for {stored['rows']} texts of {source}; pass --data to check accuracy"
        evaluation = {"notes": [note]}
    passed = tokenizer_check["pass"] and all(v["pass"] for v in verdicts.values())
    return {
        **result_header(RESULT_SCHEMA, session),
        "checks": {
            "schema_and_checksums": {"pass": True, "files": len(bundle.manifest["files"])},
            "tokenizer": tokenizer_check,
        },
        "parity": {"output": bundle.primary_output, "reference": "pytorch fp32", **metrics},
        "accuracy": evaluation,
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


def evaluate_data(session: BundleSession, data: LabelledData, progress: Progress | None = None) -> dict[str, Any]:
    """Run every text (batch 1, as on the device) and compare with the fp32 reference stored at convert.

    Rows are matched to the reference by text hash; if only some match, all numbers use those rows,
    so accuracy and fp32 accuracy always describe the same texts.
    """
    bundle = session.bundle
    notes: list[str] = []
    texts, raw_labels = data.texts, data.labels
    reference, fp32 = bundle.eval_reference(), None
    if reference is None:
        notes.append("no fp32 reference in the bundle (convert with --eval-data): accuracy only, no % of fp32")
    else:
        index = {str(key): row for row, key in enumerate(reference["keys"])}
        rows = [index.get(text_key(text), -1) for text in texts]
        keep = [i for i, row in enumerate(rows) if row >= 0]
        if not keep:
            notes.append("none of these texts is in the bundle's fp32 reference: accuracy only, no % of fp32")
        else:
            if len(keep) < len(texts):
                notes.append(f"{len(texts) - len(keep)} of {len(texts)} texts are not in the fp32 reference; "
                             f"all numbers use the {len(keep)} that are")  # fmt: skip
                texts = [texts[i] for i in keep]
                raw_labels = [raw_labels[i] for i in keep] if raw_labels is not None else None
            fp32 = reference["output"][[rows[i] for i in keep]]
    outputs, truncated = [], 0
    for done, text in enumerate(texts, 1):
        result, encoded = session.run_text(text)
        outputs.append(result[bundle.primary_output][0])
        truncated += encoded.truncated
        if progress is not None and (done % 100 == 0 or done == len(texts)):
            progress(done, len(texts))
    out = np.stack(outputs).astype(np.float32)
    if bundle.task == "text-classification":
        labels = match_labels(raw_labels, bundle.labels) if raw_labels is not None and bundle.labels else None
        metrics = classification_metrics(out, fp32, labels, bundle.labels or [str(i) for i in range(out.shape[1])])
    else:
        labels = np.unique(raw_labels, return_inverse=True)[1] if raw_labels is not None else None
        metrics = embedding_metrics(out, fp32, labels)
    if truncated:
        notes.append(f"{truncated} texts were longer than {bundle.max_length} tokens and were truncated")
    return {"data": data.source, "rows": len(texts), "truncated": truncated, "metrics": metrics, "notes": notes}
