"""What a board does to latency: CPU clock and temperature (from /sys, where the board exposes them)
around a bench, burst vs sustained speed (``bench --sustained SECONDS``) and thread sweeps
(``bench --threads 1,2,4``).

A Raspberry Pi without a heatsink throttles within a minute at full load; a phone does so sooner.
A burst p50 alone then overstates what an app sees, so the sustained figure and whether the clock
dropped are reported next to it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from edge_bert.devices.probe import sensors
from edge_bert.results.bench import BenchResult, SweepRow

#: the clock counts as dropped when its highest core runs this much below where it started
CLOCK_DROP = 0.95


def snapshot() -> dict[str, Any]:
    """CPU clock (MHz per core) and temperatures (°C per thermal zone) now; empty where /sys has none."""
    return {"time": time.time(), **sensors()}


def _peak(values: dict[str, float]) -> float | None:
    return max(values.values()) if values else None


def sustained_run(run: Callable[[], object], seconds: float) -> dict[str, Any]:
    """Run back to back for ``seconds``: p50 of the first tenth (burst) vs the last quarter (sustained)."""
    before = snapshot()
    samples: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 8:
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    after = snapshot()
    burst = statistics.median(samples[: max(1, len(samples) // 10)])
    steady = statistics.median(samples[-max(1, len(samples) // 4) :])
    clock = (_peak(before["cpu_mhz"]), _peak(after["cpu_mhz"]))
    return {
        "seconds": seconds,
        "runs": len(samples),
        "burst_p50_ms": burst,
        "sustained_p50_ms": steady,
        "sustained_over_burst": steady / burst if burst else None,
        "clock_mhz": {"before": clock[0], "after": clock[1]},
        "temperature_c": {"before": _peak(before["temperature_c"]), "after": _peak(after["temperature_c"])},
        "clock_dropped": (clock[1] < CLOCK_DROP * clock[0]) if None not in clock else None,
    }


def thread_sweep(bench: Callable[..., BenchResult], counts: tuple[int, ...] | None, bundle, **options: Any):
    """One bench per thread count (``--threads 1,2,4``); the result is the fastest one's (at the longest
    length) with ``thread_sweep``: every count's p50s."""
    if not counts or len(counts) == 1:
        return bench(bundle, threads=counts[0] if counts else None, **options)
    results = [bench(bundle, threads=count, **options) for count in counts]
    best = min(results, key=lambda r: r.latency[-1].p50_ms)
    sweep = [SweepRow(threads=r.settings.threads, p50_ms={str(n): ms for n, ms in r.p50_ms().items()}) for r in results]
    return replace(best, thread_sweep=sweep, best_threads=best.settings.threads)


def board_lines(result: BenchResult) -> list[str]:
    """Lines under the bench table: the sweep, clock and temperature, burst vs sustained."""
    tag = "emulated " if result.emulated else ""
    lines = []
    for row in result.thread_sweep or []:
        cells = ", ".join(f"@{n} {ms:.2f} ms" for n, ms in row.p50_ms.items())
        best = " (fastest)" if row.threads == result.best_threads else ""
        lines.append(f"{tag}p50 with {row.threads} thread(s): {cells}{best}")
    before, after = result.board.before, result.board.after
    if before.cpu_mhz or before.temperature_c:
        lines.append(
            f"clock {_fmt(_peak(before.cpu_mhz), 'MHz')} -> {_fmt(_peak(after.cpu_mhz), 'MHz')}, "
            f"temperature {_fmt(_peak(before.temperature_c), '°C')} -> {_fmt(_peak(after.temperature_c), '°C')}"
        )
    if s := result.sustained:
        dropped = {True: "the clock dropped", False: "the clock held", None: "clock not exposed"}[s.clock_dropped]
        lines.append(
            f"{tag}burst p50 {s.burst_p50_ms:.2f} ms vs sustained p50 {s.sustained_p50_ms:.2f} ms over "
            f"{s.seconds:.0f} s ({s.runs} runs at {result.latency[-1].seq_length} tokens); {dropped}"
        )
    return lines


def _fmt(value: float | None, unit: str) -> str:
    return "?" if value is None else f"{value:.0f} {unit}"
