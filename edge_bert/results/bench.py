"""``BenchResult``: what ``bench`` measured, as one typed object (``edge-bert/bench/v2`` in JSON).

Latency rows (model call and end to end, from the same runs), roofline, the board's clock and temperature
around the run, burst vs sustained, and the thread sweep. Emulated results carry the same fields; the
readers (``results``, reports) never show their timings as latency.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_bert.results.header import ResultHeader, non_negative
from edge_bert.schema import CHECK, at_least, each

SCHEMA = "edge-bert/bench/v2"


@dataclass(frozen=True)
class Settings:
    threads: int = field(metadata={CHECK: at_least(1)})
    warmup: int = field(metadata={CHECK: non_negative})
    runs: int = field(metadata={CHECK: at_least(1)})
    batch: int = field(metadata={CHECK: at_least(1)})


@dataclass(frozen=True)
class Memory:
    """Resident set size in MiB: before the model was loaded, after, and the process's peak."""

    rss_before_load: float
    rss_after_load: float
    peak_rss: float


@dataclass(frozen=True)
class Stats:
    """A latency distribution in ms (metrics.latency_stats); ``throughput_per_s`` is null when mean is 0."""

    p50_ms: float = field(metadata={CHECK: non_negative})
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    throughput_per_s: float | None


@dataclass(frozen=True)
class LatencyRow:
    """One sequence length: the runtime call's figures, the whole run's (``e2e``) and the roofline columns
    (null where the bundle has no FLOPs for the length)."""

    seq_length: int = field(metadata={CHECK: at_least(1)})
    padded_to: int = field(metadata={CHECK: at_least(1)})
    tokens_per_s: float | None
    runs: int = field(metadata={CHECK: at_least(1)})
    p50_ms: float = field(metadata={CHECK: non_negative})
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    throughput_per_s: float | None
    e2e: Stats
    overhead_pct: float | None
    tokenizer: str
    flops: int | None
    gflops_per_s: float | None
    pct_of_peak: float | None


@dataclass(frozen=True)
class PeakFigure:
    gflops_per_s: float
    best_gflops_per_s: float
    p50_ms: float


@dataclass(frozen=True)
class Peaks:
    """The device's GEMM peak through the bundle's runtime, per precision (bench/roofline.py)."""

    gemm: str
    flops: int
    threads: int
    runs: int
    fp32: PeakFigure
    int8: PeakFigure | None = None
    bf16: PeakFigure | None = None


@dataclass(frozen=True)
class Roofline:
    flops_method: str | None
    compared_with: str
    peak: Peaks | None


@dataclass(frozen=True)
class Sustained:
    """``--sustained``: burst vs sustained p50 and what the clock did (bench/thermal.py)."""

    seconds: float
    runs: int
    burst_p50_ms: float
    sustained_p50_ms: float
    sustained_over_burst: float | None
    clock_mhz: dict[str, float | None]
    temperature_c: dict[str, float | None]
    clock_dropped: bool | None


@dataclass(frozen=True)
class Snapshot:
    time: float
    cpu_mhz: dict[str, float]
    temperature_c: dict[str, float]


@dataclass(frozen=True)
class TaskRequest:
    """Question answering / NER: one app request end to end next to the runtime calls inside it
    (bench/requests.py); ``windows`` and ``context_words`` for QA, ``words`` for a sentence."""

    kind: str
    model: Stats
    e2e: Stats
    overhead_pct: float
    windows: int | None = None
    context_words: int | None = None
    words: int | None = None


@dataclass(frozen=True)
class Board:
    before: Snapshot
    after: Snapshot


@dataclass(frozen=True)
class SweepRow:
    threads: int = field(metadata={CHECK: at_least(1)})
    p50_ms: dict[str, float]


def _lengths(rows: list[LatencyRow]) -> str | None:
    lengths = [row.seq_length for row in rows]
    return None if len(set(lengths)) == len(lengths) else f"sequence lengths repeat: {lengths}"


@dataclass(frozen=True)
class BenchResult(ResultHeader):
    settings: Settings
    model_bytes: int = field(metadata={CHECK: non_negative})
    cold_load_ms: float
    first_inference_ms: float
    memory_mib: Memory
    latency: list[LatencyRow] = field(metadata={CHECK: _lengths})
    skipped_seq_lengths: list[int] = field(metadata={CHECK: each(at_least(1))})
    roofline: Roofline
    sustained: Sustained | None
    board: Board
    thread_sweep: list[SweepRow] | None = None
    best_threads: int | None = None
    task_request: TaskRequest | None = None

    def p50_ms(self) -> dict[int, float]:
        """The runtime call's p50 by sequence length."""
        return {row.seq_length: row.p50_ms for row in self.latency}
