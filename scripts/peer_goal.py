"""Issue 20's goal, read off one side-by-side run (scripts/benchmark_bundles.py with peers): edge-bert's best bundle
against the best peer configuration at equal accuracy, with the threshold the CPU's ISA calls for.

- CPU with AVX512-BF16 or AMX: our best >= 1.25x faster than the best peer at 128 tokens, and no slower at 16;
- AVX-512 VNNI only, or AVX2 only (profiles x86-vnni, x86): never slower than the best peer at 128 tokens.

Accuracy is a gate, not a tie-break: only variants that pass it compete. For embeddings it is the search-grade gate
of the LiteRT recipe (same nearest neighbour as sentence-transformers for >= 95 % of the first 300 SST-2 dev texts,
worst cosine >= 0.99); the speed ratios are p50 over p50 from the same run (medians of block p50s).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: search-grade, as tests/test_tflite.py holds the shipped LiteRT MiniLM to it
MIN_SAME_NEIGHBOUR = 0.95
MIN_WORST_COSINE = 0.99
SEARCH_TEXTS = 300


@dataclass(frozen=True)
class Goal:
    isa: str
    #: our best / best peer, p50 ratio (above 1: ours faster), per sequence length
    min_ratio: dict[int, float]


def goal_for(isa_flags: list[str]) -> Goal:
    """The threshold this CPU calls for, from its /proc/cpuinfo flags."""
    flags = set(isa_flags)
    if flags & {"amx_bf16", "amx_int8", "avx512_bf16"}:
        return Goal("AMX/AVX512-BF16", {128: 1.25, 16: 1.0})
    if "avx512_vnni" in flags:
        return Goal("AVX-512 VNNI (no BF16)", {128: 1.0})
    return Goal("AVX2 only", {128: 1.0})


def search_grade(ours: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Same nearest neighbour (by cosine, over the other texts) as the reference, and the worst row cosine."""
    from edge_bert.accuracy import neighbour_agreement

    cosine = np.sum(ours * reference, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
    same = neighbour_agreement(ours, reference)["neighbour_agreement"]
    worst = float(cosine.min())
    return {
        "same_nearest_neighbour": same,
        "worst_cosine": worst,
        "mean_cosine": float(cosine.mean()),
        "pass": bool(same >= MIN_SAME_NEIGHBOUR and worst >= MIN_WORST_COSINE),
    }


def bundle_embeddings(path: Path, texts: list[str], threads: int) -> np.ndarray:
    from edge_bert.bundle import open_bundle
    from edge_bert.session import BundleSession

    session = BundleSession(open_bundle(path), threads=threads)
    return np.stack([session.run_text(text)[0]["sentence_embedding"][0] for text in texts])


def onnx_embeddings(path: Path, tokenizer_bundle: Path, texts: list[str], threads: int) -> np.ndarray:
    """optimum's ONNX export (last_hidden_state) mean-pooled and normalized as sentence-transformers does."""
    from edge_bert.backends.ort import OrtBackend
    from edge_bert.bundle import open_bundle
    from edge_bert.session import TextEncoder, make_feeds

    encoder = TextEncoder(open_bundle(tokenizer_bundle))
    backend = OrtBackend(path.read_bytes(), threads=threads, where=str(path))
    dtypes = {name: np.dtype(np.int64) for name in backend.input_names}
    rows = []
    for text in texts:
        encoded = encoder.encode(text)
        hidden = backend.run(make_feeds(encoded.ids, encoded.type_ids, dtypes, len(encoded.ids)))["last_hidden_state"]
        pooled = hidden[0].mean(axis=0)
        rows.append(pooled / np.linalg.norm(pooled))
    return np.stack(rows)


def verdict(
    latency: dict[str, dict[int, dict[str, float]]], ours: list[str], peers: list[str], accurate: dict[str, bool],
    goal: Goal,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per goal length: the fastest accurate bundle of ours against the fastest accurate peer, their ratio and
    whether it meets the threshold (a side with no accurate variant fails the goal)."""
    rows = []
    for length, threshold in sorted(goal.min_ratio.items(), reverse=True):

        def best(labels: list[str], n: int = length) -> str | None:
            ok = [label for label in labels if accurate.get(label) and n in latency[label]]
            return min(ok, key=lambda label: latency[label][n]["p50_ms"], default=None)

        mine, peer = best(ours), best(peers)
        ratio = latency[peer][length]["p50_ms"] / latency[mine][length]["p50_ms"] if mine and peer else None
        # for the record: the fastest peer whatever its accuracy
        fastest = min(peers, key=lambda label: latency[label][length]["p50_ms"], default=None)
        ratio_any = latency[fastest][length]["p50_ms"] / latency[mine][length]["p50_ms"] if mine and fastest else None
        rows.append({"seq_length": length, "ours": mine, "peer": peer, "ratio": ratio, "threshold": threshold,
                     "pass": ratio is not None and ratio >= threshold,
                     "fastest_peer": fastest, "ratio_to_fastest_peer": ratio_any})  # fmt: skip
    return rows
