"""``bench``: the latency protocol, run on the device on real tokenized text.

Protocol (documented in the README): time session creation (cold load) in this fresh process, then
the first inference, then for each sequence length L: a real text tokenized and truncated to exactly
L tokens (batch 1, no padding unless the bundle is static), ``warmup`` untimed runs, ``runs`` timed
runs with perf_counter around the runtime call only. Tokenization is timed separately.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_bert.bundle import open_bundle
from edge_bert.errors import InputError
from edge_bert.fingerprint import current_rss_mib, peak_rss_mib
from edge_bert.metrics import latency_stats
from edge_bert.results import result_header
from edge_bert.session import BundleSession, Encoded, TextEncoder
from edge_bert.textdata import builtin_texts
from edge_bert.thermal import snapshot, sustained_run

RESULT_SCHEMA = "edge-bert/bench/v1"
Progress = Callable[[str, int, int], None]


def bench(
    path: str | Path,
    threads: int | None = None,
    seq_lengths: tuple[int, ...] | None = None,
    warmup: int | None = None,
    runs: int | None = None,
    texts: list[str] | None = None,
    progress: Progress | None = None,
    sustained: float | None = None,
) -> dict[str, Any]:
    """Benchmark a bundle; unset settings come from the profile stored in the bundle. ``sustained``: also run
    the longest length back to back for that many seconds (burst vs sustained p50, clock drop)."""
    rss_before = current_rss_mib()
    board_before = snapshot()
    check_settings(threads, seq_lengths, warmup, runs)
    bundle = open_bundle(path)
    settings = bundle.profile.bench
    threads = threads or settings.threads
    seq_lengths = seq_lengths or settings.seq_lengths
    warmup = settings.warmup if warmup is None else warmup
    runs = settings.runs if runs is None else runs

    session = BundleSession(bundle, threads=threads)
    rss_loaded = current_rss_mib()
    corpus = texts or builtin_texts("paragraphs")
    lengths = [n for n in seq_lengths if n <= bundle.max_length]
    skipped = [n for n in seq_lengths if n > bundle.max_length]
    if not lengths:
        raise InputError(f"no sequence length in {list(seq_lengths)} fits the bundle's max length {bundle.max_length}")

    first = text_of_length(session.encoder, corpus, lengths[0])
    start = time.perf_counter()
    session.run_ids(first.ids, first.type_ids)
    first_ms = (time.perf_counter() - start) * 1000

    rows = []
    for index, length in enumerate(lengths):
        tokenize_start = time.perf_counter()
        encoded = text_of_length(session.encoder, corpus, length)
        tokenize_ms = (time.perf_counter() - tokenize_start) * 1000
        feeds = session.feeds(encoded.ids, encoded.type_ids)
        for _ in range(warmup):
            session.backend.run(feeds)
        samples = []
        for run in range(runs):
            start = time.perf_counter()
            session.backend.run(feeds)
            samples.append((time.perf_counter() - start) * 1000)
            if progress and (run + 1) % max(1, runs // 10) == 0:
                progress(f"seq {length}", index * runs + run + 1, len(lengths) * runs)
        stats = latency_stats(samples)
        rows.append(
            {
                "seq_length": length,
                "padded_to": int(feeds["input_ids"].shape[1]),
                "tokenize_ms": tokenize_ms,
                "tokens_per_s": length * stats["throughput_per_s"],
                **stats,
            }
        )
    return {
        **result_header(RESULT_SCHEMA, session),
        "settings": {"threads": threads, "warmup": warmup, "runs": runs, "batch": 1},
        "model_bytes": bundle.manifest.model_bytes,
        "cold_load_ms": session.load_seconds * 1000,
        "first_inference_ms": first_ms,
        "memory_mib": {
            "rss_before_load": rss_before,
            "rss_after_load": rss_loaded,
            "peak_rss": peak_rss_mib(),
        },
        "latency": rows,
        "skipped_seq_lengths": skipped,
        "sustained": sustained_run(lambda: session.backend.run(feeds), sustained) if sustained else None,
        "board": {"before": board_before, "after": snapshot()},  # CPU clock and temperature, where /sys has them
    }


def check_settings(
    threads: int | None, seq_lengths: tuple[int, ...] | None, warmup: int | None, runs: int | None
) -> None:
    """Reject impossible settings before anything is loaded (a negative length once ran as "seq -5")."""
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    if runs is not None and runs < 1:
        raise InputError(f"--runs must be at least 1, got {runs}")
    if warmup is not None and warmup < 0:
        raise InputError(f"--warmup must be 0 or more, got {warmup}")
    for length in seq_lengths or ():
        if length < 2:
            raise InputError(f"--seq-lengths: {length} is not a sequence length (each must be at least 2 tokens)")


def text_of_length(encoder: TextEncoder, corpus: list[str], length: int) -> Encoded:
    """A real text truncated to exactly ``length`` tokens; short texts are joined until long enough."""
    for text in corpus:
        encoded = encoder.encode(text, max_length=length)
        if len(encoded.ids) == length:
            return encoded
    encoded = encoder.encode(" ".join(corpus), max_length=length)
    if len(encoded.ids) < length:
        raise InputError(f"the bench texts hold only {len(encoded.ids)} tokens in all; {length} are needed")
    return encoded
