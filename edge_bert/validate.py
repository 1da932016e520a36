"""``validate``: on the device, prove a bundle computes what the fp32 PyTorch model computed.

Order matters: checksums and schema first (open_bundle), then the tokenizer (the bundle's
tokenizer.json must reproduce the golden token ids, or every later number is meaningless), then the
golden inputs through the runtime, compared with the stored fp32 outputs and gated by the profile.
With labelled data, the task itself: accuracy as % of the fp32 model's on the same texts (accuracy.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.accuracy import text_key
from edge_bert.bundle import Bundle, open_bundle
from edge_bert.errors import BundleError, InputError
from edge_bert.evaldata import LabelledData
from edge_bert.limits import check_option
from edge_bert.profiles import Gates
from edge_bert.results.header import result_header
from edge_bert.results.io import parse_result
from edge_bert.results.validate import (
    SCHEMA,
    Checks,
    ChecksumCheck,
    Evaluation,
    GateVerdict,
    Parity,
    Predictions,
    TokenizerCheck,
    ValidateResult,
)
from edge_bert.schema import SchemaError
from edge_bert.session import BundleSession
from edge_bert.tasks import TASKS, Task, passed

RESULT_SCHEMA = SCHEMA


def bundle_gates(bundle: Bundle) -> Gates:
    """The gates the bundle was converted under (its recipe's, from the stored profile)."""
    return bundle.manifest.recipe.gates


Progress = Callable[[int, int], None]


def validate(
    path: str | Path,
    gates: Gates | None = None,
    threads: int | None = None,
    data: LabelledData | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Validate a bundle (and its task accuracy on ``data``); returns the result document (JSON-ready)."""
    return validate_result(path, gates, threads, data, progress).to_dict()


def validate_result(
    path: str | Path,
    gates: Gates | None = None,
    threads: int | None = None,
    data: LabelledData | None = None,
    progress: Progress | None = None,
) -> ValidateResult:
    """Validate a bundle (and its task accuracy on ``data``); returns the typed result."""
    check_option("--threads", threads)
    bundle = open_bundle(path)
    gates = gates or bundle_gates(bundle)
    task = TASKS[bundle.task]
    session = BundleSession(bundle, threads=threads)
    golden = bundle.golden()
    tokenizer_check = _check_tokenizer(session, golden)

    start = time.perf_counter()
    outputs = []
    width = int(golden["lengths"].max())
    for ids, type_ids, length in zip(golden["input_ids"], golden["token_type_ids"], golden["lengths"], strict=True):
        result = session.run_ids(ids[:length], type_ids[:length])
        outputs.append(task.row(result[bundle.primary_output][0], length, width))
    elapsed = time.perf_counter() - start
    stacked = np.stack(outputs)
    if stacked.reshape(len(stacked), -1).shape != golden["output"].reshape(len(stacked), -1).shape:
        raise BundleError(
            f"{bundle.path}: the model's {bundle.primary_output!r} has shape {outputs[0].shape}, the golden "
            f"outputs {golden['output'].shape[1:]}; the bundle's files do not belong together"
        )

    metrics = task.parity(stacked, golden["output"], gates)
    evaluation = None
    if data is not None:
        evaluation = evaluate_data(session, data, progress)
    elif bundle.manifest.eval:
        stored = bundle.manifest.eval
        source = stored.source.get("name") or stored.source.get("id")
        note = f"the bundle holds fp32 outputs for {stored.rows} texts of {source}; pass --data to check accuracy"
        evaluation = {"notes": [note]}
    verdicts = task.gate(metrics, evaluation["metrics"] if data is not None else None, gates)
    notes = _gate_notes(metrics, verdicts)
    if evaluation is not None:
        evaluation.setdefault("notes", []).extend(notes)
    elif notes:
        evaluation = {"notes": notes}
    predictions = task.predictions(stacked, golden["output"])
    return ValidateResult(
        **result_header(RESULT_SCHEMA, session),
        checks=Checks(ChecksumCheck(passed=True, files=len(bundle.manifest.files)), tokenizer_check),
        parity=Parity(output=bundle.primary_output, reference="pytorch fp32", **metrics),
        predictions=Predictions(**predictions) if predictions is not None else None,
        accuracy=Evaluation(**evaluation) if evaluation is not None else None,
        gates=_verdicts(verdicts),
        seconds=elapsed,
        passed=bool(tokenizer_check.passed and passed(verdicts)),
    )


def _verdicts(verdicts: dict[str, dict[str, Any]]) -> dict[str, GateVerdict]:
    return {
        name: GateVerdict(threshold=v["threshold"], value=v["value"], passed=v["pass"], decides=v["decides"])
        for name, v in verdicts.items()
    }


def judge(result: ValidateResult | dict[str, Any], bundle: Bundle, gates: Gates | None = None) -> ValidateResult:
    """A validate result that came from elsewhere (a device), judged again here: the gate verdicts and
    ``passed`` are re-derived from its metrics under the bundle's own gates (or ``gates``), never taken from
    the device. A document that does not fit the result schema is refused (InputError, exit 2)."""
    if not isinstance(result, ValidateResult):
        try:
            typed = parse_result(result)
        except SchemaError as exc:
            raise InputError(f"the device's validate result lacks what the gates read ({exc}); refused") from exc
        if not isinstance(typed, ValidateResult):
            raise InputError(f"the device answered a {typed.schema} result to validate; refused")
        result = typed
    task = TASKS[bundle.task]
    metrics = result.accuracy.metrics if result.accuracy is not None else None
    verdicts = task.gate(result.parity.metrics(), metrics, gates or bundle_gates(bundle))
    ok = result.checks.tokenizer.passed and passed(verdicts)
    return replace(result, gates=_verdicts(verdicts), passed=bool(ok))


def _gate_notes(parity: dict[str, Any], verdicts: dict[str, Any]) -> list[str]:
    notes = []
    ties = int(parity.get("top1_near_ties") or 0)
    if ties:
        notes.append(
            f"golden top-1 counts {int(parity['samples']) - ties} texts; {ties} near-ties in fp32 were skipped "
            f"(all texts: {parity['top1_agreement_all']:.4f})"
        )
    if "min_collapse_cosine" in verdicts:
        notes.append("judged on the labelled data (accuracy, agreement); golden cosine only guards against collapse")
    return notes


def _check_tokenizer(session: BundleSession, golden: dict[str, np.ndarray]) -> TokenizerCheck:
    mismatches = []
    for text, ids, length in zip(golden["texts"], golden["input_ids"], golden["lengths"], strict=True):
        encoded = session.encoder.encode(str(text))
        if not np.array_equal(encoded.ids, ids[:length]):
            mismatches.append(str(text)[:60])
    return TokenizerCheck(passed=not mismatches, texts=len(golden["texts"]), mismatches=mismatches[:5])


def evaluate_data(session: BundleSession, data: LabelledData, progress: Progress | None = None) -> dict[str, Any]:
    """Run every text (batch 1, as on the device) and compare with the fp32 reference stored at convert.

    Rows are matched to the reference by text hash; if only some match, all numbers use those rows,
    so accuracy and fp32 accuracy always describe the same texts.
    """
    bundle = session.bundle
    task = TASKS[bundle.task]
    notes: list[str] = []
    reference, fp32 = bundle.eval_reference(), None
    if reference is None:
        notes.append("no fp32 reference in the bundle (convert with --eval-data): accuracy only, no % of fp32")
    else:
        index = {str(key): row for row, key in enumerate(reference["keys"])}
        rows = [index.get(text_key(text), -1) for text in data.key_texts()]
        keep = [i for i, row in enumerate(rows) if row >= 0]
        if not keep:
            notes.append("none of these texts is in the bundle's fp32 reference: accuracy only, no % of fp32")
        else:
            if len(keep) < len(data):
                notes.append(f"{len(data) - len(keep)} of {len(data)} texts are not in the fp32 reference; "
                             f"all numbers use the {len(keep)} that are")  # fmt: skip
                data = data.subset(keep)
            fp32 = reference["output"][[rows[i] for i in keep]]
    out: np.ndarray | None = None  # filled in place: a list of 100k rows, stacked, held three copies at once
    truncated = 0
    for row, item in enumerate(data.items()):
        value, cut = _data_row(session, task, item)
        if out is None:
            out = np.empty((len(data), *value.shape), np.float32)
        out[row] = value
        truncated += cut
        if progress is not None and ((row + 1) % 100 == 0 or row + 1 == len(data)):
            progress(row + 1, len(data))
    assert out is not None  # read_labelled never returns an empty set
    if fp32 is not None and fp32.shape[1:] != out.shape[1:]:
        raise BundleError(f"{bundle.path}: the fp32 reference has {fp32.shape[1:]} outputs per text, the model "
                          f"{out.shape[1:]}; the bundle's files do not belong together")  # fmt: skip
    metrics = task.evaluate(out, fp32, data.references(), bundle.labels)
    if truncated:
        notes.append(f"{truncated} texts were longer than {bundle.max_length} tokens and were truncated")
    if data.source.get("empty_rows"):
        notes.append(f"{data.source['empty_rows']} rows without text were skipped")
    return {"data": data.source, "rows": len(data), "truncated": truncated, "metrics": metrics, "notes": notes}


def _data_row(session: BundleSession, task: Task, item: str | tuple[str, str]) -> tuple[np.ndarray, bool]:
    """One labelled item's row (the task's own, or its primary output) and whether its text was cut."""
    bundle = session.bundle
    if task.own_rows:
        run = lambda ids, types: session.run_ids(ids, types)[bundle.primary_output][0]  # noqa: E731
        return task.data_row(run, session.encoder.tokenizer, item, bundle.max_length)
    result, encoded = session.run_text(str(item))
    value = task.row(np.asarray(result[bundle.primary_output][0], np.float32), len(encoded.ids), bundle.max_length)
    return value, encoded.truncated
