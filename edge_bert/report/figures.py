"""The measured figures the report's tables and plots share, each with the result files it came from.

A figure is a number with its sources (paths relative to the results folder) or, where there is no number,
the reason in words ("random weights", "emulated: no latency"): a table never shows a number it cannot trace.

Whether a model's weights are real is known from labelled data only: a validate result with labelled-data
accuracy (``validate --data``, the matrix's ``[data]``) whose fp32 accuracy beats always answering the
majority class by more than two standard errors. A random-weight model does not, and gets "random weights"
instead of an accuracy; without labelled data there is no accuracy at all ("no labelled data").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge_bert.report.collect import Collection, Entry


@dataclass(frozen=True)
class Figure:
    text: str
    value: float | None = None
    sources: tuple[str, ...] = ()


def words(text: str) -> Figure:
    return Figure(text)


def number(value: float, digits: int, *sources: str | None, suffix: str = "") -> Figure:
    return Figure(f"{value:.{digits}f}{suffix}", value, tuple(dict.fromkeys(s for s in sources if s)))


def weights_real(entry: Entry) -> bool | None:
    """True: labelled-data accuracy above chance; False: at chance (random weights); None: no labelled data."""
    metrics = (entry.validate.accuracy.metrics if entry.validate.accuracy else None) or {}
    fp32, rows = metrics.get("fp32_accuracy"), metrics.get("rows")
    support = [row.get("support", 0) for row in metrics.get("per_class", []) if isinstance(row, dict)]
    if not isinstance(fp32, int | float) or not isinstance(rows, int) or rows <= 0:
        return None
    chance = max(support) / rows if support and sum(support) == rows else 1 / max(1, len(support) or 2)
    return fp32 > chance + 2 * math.sqrt(chance * (1 - chance) / rows)


def accuracy(entry: Entry) -> float | None:
    metrics = (entry.validate.accuracy.metrics if entry.validate.accuracy else None) or {}
    value = metrics.get("accuracy")
    return float(value) if isinstance(value, int | float) else None


def _no_accuracy(entry: Entry) -> Figure | None:
    real = weights_real(entry)
    if real is None:
        return words("no labelled data")
    return None if real else words("random weights")


def pct_of_fp32(entry: Entry) -> Figure:
    if (reason := _no_accuracy(entry)) is not None:
        return reason
    value = entry.validate.accuracy.metric("accuracy_pct_of_fp32") if entry.validate.accuracy else None
    return number(value, 2, entry.validate_file, suffix=" %") if value is not None else words("-")


def reference_of(collection: Collection) -> list[Entry]:
    return [e for e in collection.entries if e.record.reference]


def pct_of_reference(entry: Entry, collection: Collection) -> Figure:
    """This bundle's accuracy over the reference model's fp32 accuracy on the same labelled data."""
    if (reason := _no_accuracy(entry)) is not None:
        return reason
    data = entry.validate.accuracy.data if entry.validate.accuracy else None
    for ref in reference_of(collection):
        metrics = (ref.validate.accuracy.metrics if ref.validate.accuracy else None) or {}
        base = metrics.get("fp32_accuracy")
        same_data = ref.validate.accuracy is not None and ref.validate.accuracy.data == data
        if same_data and weights_real(ref) and isinstance(base, int | float) and base > 0:
            value = 100 * (accuracy(entry) or 0.0) / base
            return number(value, 2, entry.validate_file, ref.validate_file, suffix=" %")
    return words("no reference")


def latency_row(entry: Entry, length: int):
    if entry.bench is None or entry.emulated:
        return None
    return next((row for row in entry.bench.latency if row.seq_length == length), None)


def latency(entry: Entry, length: int, stat: str = "p50_ms") -> Figure:
    if entry.emulated:
        return words("emulated: no latency")
    row = latency_row(entry, length)
    return number(getattr(row, stat), 2, entry.bench_file) if row is not None else words("-")


def peak_rss(entry: Entry) -> Figure:
    if entry.emulated or entry.bench is None:
        return words("emulated" if entry.emulated else "-")
    return number(entry.bench.memory_mib.peak_rss, 0, entry.bench_file)


def counterpart(entry: Entry, collection: Collection) -> Entry | None:
    """The reference model's cell with this cell's device, target, format and recipe (the same run)."""
    for ref in reference_of(collection):
        if (ref.device, ref.target, ref.validate.format, ref.validate.recipe) == (
            entry.device,
            entry.target,
            entry.validate.format,
            entry.validate.recipe,
        ):
            return ref
    return None


def speed_up(entry: Entry, collection: Collection, length: int) -> Figure:
    """The reference's p50 over this bundle's, same device, runtime, recipe and length."""
    if entry.emulated:
        return words("emulated: no latency")
    ref = counterpart(entry, collection)
    mine, theirs = latency_row(entry, length), latency_row(ref, length) if ref else None
    if mine is None or theirs is None or mine.p50_ms <= 0:
        return words("-")
    return number(theirs.p50_ms / mine.p50_ms, 2, entry.bench_file, ref.bench_file if ref else None, suffix=" x")


def parity(entry: Entry) -> Figure:
    """Top-1 agreement with fp32 on the golden texts (classifiers), else the mean cosine (embeddings)."""
    p = entry.validate.parity
    if p.top1_agreement is not None:
        return number(p.top1_agreement, 3, entry.validate_file, suffix=" top-1")
    if p.mean_cosine is not None:
        return number(p.mean_cosine, 4, entry.validate_file, suffix=" cos")
    return words("-")


def megabytes(entry: Entry) -> Figure:
    return number(entry.file_bytes / 1e6, 2, entry.manifest_file)


def parameters(entry: Entry) -> Figure:
    return Figure(f"{entry.manifest.model.parameters / 1e6:.2f}M", entry.manifest.model.parameters,
                  (entry.manifest_file,))  # fmt: skip


def lengths(collection: Collection) -> list[int]:
    found = {row.seq_length for e in collection.entries if e.bench and not e.emulated for row in e.bench.latency}
    return sorted(found)
