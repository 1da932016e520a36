"""``bench``: the latency protocol, run on the device on real tokenized text.

Protocol (documented in the README): time session creation (cold load) in this fresh process, then
the first inference, then for each sequence length L: a real text that tokenizes to exactly L tokens
(batch 1, no padding unless the bundle is static), ``warmup`` untimed runs, ``runs`` timed runs. Each
run goes text in -> answer out as an app would (BundleSession.prepare -> backend.run -> post_process,
the three steps of BundleSession.answer) with perf_counter between the steps: ``model`` is the runtime
call alone, ``e2e`` the whole run, from the same runs; ``overhead_pct`` is what the runner adds to the
model (p50 e2e / p50 model - 1). Last, the roofline (edge_bert/bench/roofline.py): the device's fp32 and int8
GEMM peak through the same runtime, and per length the bundle's FLOPs / model p50 against it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_bert.bench.requests import task_request
from edge_bert.bench.roofline import achieved, measure_peaks, precision_of
from edge_bert.bench.thermal import snapshot, sustained_run
from edge_bert.bundle import open_bundle
from edge_bert.errors import InputError
from edge_bert.fingerprint import current_rss_mib, peak_rss_mib
from edge_bert.limits import check_option
from edge_bert.metrics import latency_stats
from edge_bert.results.bench import (
    SCHEMA,
    BenchResult,
    Board,
    LatencyRow,
    Memory,
    Peaks,
    Roofline,
    Settings,
    Snapshot,
    Stats,
    Sustained,
)
from edge_bert.results.header import result_header
from edge_bert.schema import parse
from edge_bert.session import BundleSession, Encoded, TextEncoder
from edge_bert.textdata import builtin_texts

#: v2: per length ``e2e`` latency and ``overhead_pct`` (replacing ``tokenize_ms``), roofline columns
RESULT_SCHEMA = SCHEMA
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
    roofline: bool = True,
) -> dict[str, Any]:
    """Benchmark a bundle (the JSON-ready document of :func:`bench_result`)."""
    return bench_result(path, threads, seq_lengths, warmup, runs, texts, progress, sustained, roofline).to_dict()


def bench_result(
    path: str | Path,
    threads: int | None = None,
    seq_lengths: tuple[int, ...] | None = None,
    warmup: int | None = None,
    runs: int | None = None,
    texts: list[str] | None = None,
    progress: Progress | None = None,
    sustained: float | None = None,
    roofline: bool = True,
) -> BenchResult:
    """Benchmark a bundle; unset settings come from the profile stored in the bundle. ``sustained``: also run
    the longest length back to back for that many seconds (burst vs sustained p50, clock drop)."""
    rss_before = current_rss_mib()
    board_before = snapshot()
    check_settings(threads, seq_lengths, warmup, runs)
    check_option("--sustained", sustained)
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
    bench_texts = {n: text_of_exact_length(session.encoder, corpus, n) for n in lengths}

    feeds = session.prepare(bench_texts[lengths[0]])
    start = time.perf_counter()
    session.backend.run(feeds)
    first_ms = (time.perf_counter() - start) * 1000

    rows = []
    for index, length in enumerate(lengths):
        label = f"seq {length}"
        report = (
            (lambda done, i=index, tag=label: progress(tag, i * runs + done, len(lengths) * runs)) if progress else None
        )
        model, e2e, feeds = timed_runs(session, bench_texts[length], warmup, runs, report)
        stats, overall = latency_stats(model), latency_stats(e2e)
        rows.append(
            {
                "seq_length": length,
                "padded_to": int(feeds["input_ids"].shape[1]),
                "tokens_per_s": length * stats["throughput_per_s"],
                **stats,
                "e2e": Stats(**{k: v for k, v in overall.items() if k != "runs"}),
                "overhead_pct": 100 * (overall["p50_ms"] / stats["p50_ms"] - 1),
                # which tokenizer the text went through: the WordPiece fast path (edge_bert/wordpiece.py) or not
                "tokenizer": "wordpiece-fast-path" if _fast(session, bench_texts[length]) else "tokenizers",
            }
        )
    request = task_request(session, warmup, runs)
    memory = Memory(rss_before_load=rss_before, rss_after_load=rss_loaded, peak_rss=peak_rss_mib())
    steady = Sustained(**sustained_run(lambda: session.backend.run(feeds), sustained)) if sustained else None
    peaks = measure_peaks(type(session.backend), session.backend.runtime, threads) if roofline else None
    return BenchResult(
        **result_header(RESULT_SCHEMA, session),
        settings=Settings(threads=threads, warmup=warmup, runs=runs, batch=1),
        model_bytes=bundle.manifest.model_bytes,
        cold_load_ms=session.load_seconds * 1000,
        first_inference_ms=first_ms,
        memory_mib=memory,
        latency=[LatencyRow(**row, **_row_roofline(bundle, row, peaks)) for row in rows],
        skipped_seq_lengths=skipped,
        roofline=_roofline(bundle, peaks),
        sustained=steady,
        board=Board(before=Snapshot(**board_before), after=Snapshot(**snapshot())),  # CPU clock and temperature
        task_request=request,  # question answering / NER: one app request, windowed (bench/requests.py)
    )


def timed_runs(
    session: BundleSession, text: str, warmup: int, runs: int, report: Callable[[int], None] | None = None
) -> tuple[list[float], list[float], dict]:
    """``warmup`` + ``runs`` answers to ``text``; per timed run the model's ms and the whole run's ms."""
    prepare, run, post = session.prepare, session.backend.run, session.post_process
    clock = time.perf_counter
    for _ in range(warmup):
        post(run(prepare(text)))
    model, e2e = [0.0] * runs, [0.0] * runs
    every = max(1, runs // 10)
    feeds: dict = {}
    for i in range(runs):
        t0 = clock()
        feeds = prepare(text)
        t1 = clock()
        outputs = run(feeds)
        t2 = clock()
        post(outputs)
        t3 = clock()
        model[i], e2e[i] = (t2 - t1) * 1000, (t3 - t0) * 1000
        if report is not None and (i + 1) % every == 0:
            report(i + 1)
    return model, e2e, feeds


def _fast(session: BundleSession, text: str) -> bool:
    fast = session.encoder.fast
    return fast is not None and fast.ids(text) is not None


def _roofline(bundle: Any, peaks: dict | None) -> Roofline:
    flops = bundle.manifest.flops
    return Roofline(
        flops_method=flops.method if flops else None,
        compared_with=precision_of(bundle.manifest.format, bundle.manifest.recipe.kind),
        peak=parse(Peaks, peaks, "roofline.peak") if peaks else None,
    )


def _row_roofline(bundle: Any, row: dict[str, Any], peaks: dict | None) -> dict[str, Any]:
    """FLOPs at the padded length (what the model computes), achieved GFLOP/s and % of the matching peak."""
    flops = bundle.manifest.flops
    count = flops.per_seq_length.get(str(row["padded_to"])) if flops else None
    peak = peaks[precision_of(bundle.manifest.format, bundle.manifest.recipe.kind)]["gflops_per_s"] if peaks else None
    return achieved(count, row["p50_ms"], peak)


def check_settings(
    threads: int | None, seq_lengths: tuple[int, ...] | None, warmup: int | None, runs: int | None
) -> None:
    """Reject impossible settings before anything is loaded (a negative length once ran as "seq -5"), by the
    one rule each option name has in every verb (limits.OPTION_BOUNDS)."""
    check_option("--threads", threads)
    check_option("--runs", runs)
    check_option("--warmup", warmup)
    for length in seq_lengths or ():
        check_option("--seq-lengths", length)


def text_of_exact_length(encoder: TextEncoder, corpus: list[str], length: int) -> str:
    """A real text that tokenizes to exactly ``length`` tokens (special tokens included): a corpus text cut
    where its token ``length - specials`` ends; if a cut mid-word tokenizes differently, the next text."""
    content = length - len(encoder.tokens("")[0])  # tokens of the text itself, besides [CLS] and [SEP]
    for text in [*corpus, " ".join(corpus)]:
        spans = encoder.spans(text)
        if 0 <= content <= len(spans):
            cut = text[: spans[content - 1][1]] if content else ""
            if encoder.tokens(cut)[2] == length:
                return cut
    raise InputError(f"no bench text tokenizes to exactly {length} tokens; give longer texts (--texts)")


def text_of_length(encoder: TextEncoder, corpus: list[str], length: int) -> Encoded:
    """The ids of a real text of exactly ``length`` tokens (scripts/benchmark_*.py)."""
    return encoder.encode(text_of_exact_length(encoder, corpus, length), max_length=length)
