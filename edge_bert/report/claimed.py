"""Claimed vs measured: every claim of ``compare/claims.py`` next to what this matrix measured, and the ratio.

A claim's figure is relative to BERT-base on the hardware the paper used (a Xeon, a K80 GPU, a Pixel 4,
a TPU); the measured figure is relative to this matrix's reference model on this device. Both are shown
with where they were measured, so the ratio reads as "what of the claim holds here", not as a verdict on
the paper. ALBERT's "speed-up" is TPU training throughput: its rows show the file-size ratio next to the
FLOPs and latency ratios - sharing shrinks the file, every layer still computes.
"""

from __future__ import annotations

from edge_bert.compare.claims import CLAIMS, MODELS, Claim
from edge_bert.report import figures as f
from edge_bert.report.collect import Collection, Entry
from edge_bert.report.figures import Figure, number, words
from edge_bert.report.table import Table

#: the sequence length the papers' latency claims use
CLAIM_LENGTH = 128


def parameter_table() -> Table:
    """The parameter claims against the count of the shipped config (built on the meta device)."""
    try:
        from edge_bert.compare.claims import parameter_claims

        checked = parameter_claims()
    except ImportError:  # a device without torch/transformers: the claims stand, uncomputed
        rows = [[words(c.model), number(c.value / 1e6, 1, suffix="M"), words("torch not installed: not computed"),
                 words("-"), words(c.source)] for c in CLAIMS if c.quantity == "parameters"]  # fmt: skip
    else:
        rows = [[words(c.claim.model), number(c.claim.value / 1e6, 1, suffix="M"),
                 Figure(f"{c.computed:,}", c.computed), number(c.ratio, 3), words(c.claim.source)]
                for c in checked]  # fmt: skip
    headers = ["paper model", "claimed parameters", "shipped config, computed", "computed / claimed", "source"]
    notes = ["Computed from the transformers config class of each paper's shipped checkpoint (compare/claims.py), "
             "on the meta device: no weights are downloaded; shared weights are counted once."]  # fmt: skip
    return Table("Parameter claims vs the shipped configs", headers, rows, notes)


def _models(collection: Collection, method: str) -> list[Entry]:
    if method == "reference":
        return f.reference_of(collection)
    return [e for e in collection.entries if e.record.method == method]


def _pairs(collection: Collection, claim: Claim):
    """(entry, reference counterpart) per model of the claim's method: same device, target, runtime and
    recipe. A parameter count needs no counterpart (the reference is then the entry itself)."""
    method = MODELS[claim.model].method
    timed = claim.quantity in ("speed-up", "latency-ms")
    for entry in sorted(_models(collection, method), key=lambda e: (e.model, e.device, e.validate.recipe)):
        if timed and entry.emulated:
            continue
        ref = f.counterpart(entry, collection)
        if ref is not None or claim.quantity == "parameters":
            yield entry, ref or entry


def _distinct(claim: Claim, pairs: list[tuple[Entry, Entry]]) -> list[tuple[Entry, Entry]]:
    """Parameters are the model's, file sizes the bundle's: one row each, not one per device."""
    if claim.quantity not in ("parameters", "size-ratio"):
        return pairs
    seen: dict[tuple, tuple[Entry, Entry]] = {}
    for entry, ref in pairs:
        key = (entry.model,) if claim.quantity == "parameters" else (entry.model, entry.runtime, entry.validate.recipe)
        seen.setdefault(key, (entry, ref))
    return list(seen.values())


def _flops(entry: Entry, length: int) -> int | None:
    flops = entry.manifest.flops
    return flops.per_seq_length.get(str(length)) if flops else None


def _measured(claim: Claim, entry: Entry, ref: Entry, collection: Collection) -> tuple[Figure, str]:
    """This cell's figure for ``claim`` and a note on what it is."""
    if claim.quantity == "parameters":
        return f.parameters(entry), "parameters in the bundle's manifest"
    if claim.quantity == "size-ratio":
        value = ref.file_bytes / entry.file_bytes
        return number(value, 2, entry.manifest_file, ref.manifest_file, suffix=" x"), f"bundle bytes vs {ref.model}"
    if claim.quantity == "pct-of-reference":
        return f.pct_of_reference(entry, collection), f"accuracy % of {ref.model}"
    length = _length(entry, ref)
    if claim.quantity == "latency-ms":
        return f.latency(entry, length), f"p50 at {length} tokens"
    speed = f.speed_up(entry, collection, length)
    if claim.model != "albert-base":
        return speed, f"p50 speed-up over {ref.model} at {length} tokens"
    size = ref.file_bytes / entry.file_bytes
    mine, theirs = _flops(entry, length), _flops(ref, length)
    compute = f"FLOPs {theirs / mine:.2f}x fewer" if mine and theirs else "FLOPs not counted"
    return speed, (f"inference p50 speed-up at {length} tokens; the file is {size:.2f}x smaller than "
                   f"{ref.model}'s, {compute}: sharing shrinks the file, not the compute")  # fmt: skip


def _length(entry: Entry, ref: Entry) -> int:
    common = set(entry.bench.p50_ms() if entry.bench else {}) & set(ref.bench.p50_ms() if ref.bench else {})
    return CLAIM_LENGTH if CLAIM_LENGTH in common or not common else max(common)


def claims_table(collection: Collection) -> Table:
    rows = []
    for claim in CLAIMS:
        method = MODELS[claim.model].method
        shown = f"{claim.value / 1e6:.1f}M" if claim.quantity == "parameters" else f"{claim.value:.3g} {claim.unit}"
        head = [words(f"{claim.model}: {claim.quantity}"), words(shown), words(claim.hardware),
                words(claim.note or "-")]  # fmt: skip
        pairs = _distinct(claim, list(_pairs(collection, claim)))
        if not pairs:
            present = _models(collection, method)
            label = "no reference cell to compare with" if present else f"no {method} model in this matrix"
            rows.append([*head, words(label), words("-"), words("-"), words("-"), words("-")])
            continue
        for entry, ref in pairs:
            figure, what = _measured(claim, entry, ref, collection)
            ratio = number(figure.value / claim.value, 2, *figure.sources) if figure.value else words("-")
            where = f"{entry.device} · {entry.runtime} {entry.validate.recipe}"
            rows.append([*head, words(entry.model), words(where), figure, words(what), ratio])
    headers = ["claim", "claimed", "claimed on", "note", "model here", "measured on", "measured here", "what",
               "measured / claimed"]  # fmt: skip
    notes = ["Claims are relative to BERT-base on the paper's hardware; measured figures are relative to this "
             "matrix's reference model on this matrix's devices. ALBERT's speed-up claim is TPU training "
             "throughput, not inference."]  # fmt: skip
    return Table("Claimed vs measured", headers, rows, notes)
