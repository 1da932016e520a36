"""Parity metrics between a bundle's outputs and the fp32 reference, and latency statistics."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def relative_errors(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-sample ||y - ref|| / max(||ref||, median ||ref|| of the set) (see ``parity``)."""
    out = np.asarray(outputs).reshape(len(outputs), -1)
    ref = np.asarray(reference).reshape(len(reference), -1)
    ref_norm, diff_norm = np.empty(len(ref)), np.empty(len(ref))
    for start in range(0, len(ref), 4096):  # in float64, a block at a time: 100k embeddings stay ~MBs extra
        block = slice(start, start + 4096)
        r = ref[block].astype(np.float64)
        ref_norm[block] = np.linalg.norm(r, axis=1)
        diff_norm[block] = np.linalg.norm(out[block].astype(np.float64) - r, axis=1)
    return diff_norm / np.maximum(ref_norm, max(float(np.median(ref_norm)), 1e-12))


#: fp32 top-1 probability lead over the runner-up below which a golden text is a near-tie (Gates.top1_margin)
TOP1_MARGIN = 0.05


def parity(
    outputs: np.ndarray, reference: np.ndarray, classification: bool, top1_margin: float = TOP1_MARGIN
) -> dict[str, float | None]:
    """Per-sample comparison of ``outputs`` with ``reference`` (both shaped [samples, ...]).

    Cosine and relative error are per sample (a sentence embedding or a logits row), then
    summarised: mean and worst cosine, worst relative L2 error, max element-wise absolute error.
    The relative error divides by the sample's norm or, if larger, the median norm of the set.
    A classifier is compared on softmax probabilities (top-1 on the logits): they are what an app
    consumes, and they are well-conditioned where logits are not - a binary classifier's two logits
    near its boundary, [0.01, -0.01] against [-0.01, 0.01], have cosine -1 for a 0.02 change.
    ``top1_agreement`` counts only texts whose fp32 top-1 probability leads by ``top1_margin``
    (``top1_near_ties`` says how many were left out; ``top1_agreement_all`` counts every text).
    """
    out = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} differs from the reference {ref.shape}")
    finite = bool(np.isfinite(out).all())
    same = out.argmax(axis=1) == ref.argmax(axis=1)
    clear = _clear_margin(ref, top1_margin) if classification else same
    if classification and finite:
        out, ref = softmax(out), softmax(ref)
    diff = out - ref
    ref_norm = np.linalg.norm(ref, axis=1)
    out_norm = np.linalg.norm(out, axis=1)
    denom = np.maximum(ref_norm * out_norm, 1e-12)
    cosine = np.where(finite, np.sum(out * ref, axis=1) / denom, np.nan)
    rel = relative_errors(out, ref)
    result: dict[str, float | None] = {
        "samples": float(len(out)),
        "finite": float(finite),
        "max_abs_error": float(np.max(np.abs(diff))) if finite else float("inf"),
        "mean_cosine": float(np.mean(cosine)) if finite else float("nan"),
        "worst_cosine": float(np.min(cosine)) if finite else float("nan"),
        "max_rel_error": float(np.max(rel)) if finite else float("inf"),
        "top1_agreement": None,
    }
    if classification:
        result["top1_agreement"] = float(np.mean(same[clear])) if clear.any() else None
        result["top1_agreement_all"] = float(np.mean(same))
        result["top1_near_ties"] = float(np.sum(~clear))
    return result


def _clear_margin(logits: np.ndarray, margin: float) -> np.ndarray:
    """Rows whose top-1 probability leads the runner-up by at least ``margin``."""
    if logits.shape[1] < 2:
        return np.ones(len(logits), bool)
    top2 = np.sort(softmax(logits), axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) >= margin


def pct_of_fp32(value: float, fp32: float) -> float | None:
    """A task score as % of fp32's; 100 when both are 0 (nothing lost), None when only fp32's is."""
    if fp32 == 0:
        return 100.0 if value == 0 else None
    return 100.0 * value / fp32


def latency_stats(samples_ms: list[float]) -> dict[str, float]:
    data = np.asarray(samples_ms, np.float64)
    mean = float(data.mean())
    return {
        "runs": int(data.size),
        "p50_ms": float(np.percentile(data, 50)),
        "p90_ms": float(np.percentile(data, 90)),
        "p99_ms": float(np.percentile(data, 99)),
        "mean_ms": mean,
        "std_ms": float(data.std()),
        "min_ms": float(data.min()),
        "throughput_per_s": 1000.0 / mean if mean > 0 else float("inf"),
    }
