"""The ratio logic of the benchmark scripts that hold the speed targets, on inputs recorded from real runs
(tests/data/, MiniLM fp32 and dynamic-int8 bundles of the x86-vnni profile, timed by
scripts/benchmark_bundles.py on this 2-core machine under load); expected figures worked by hand from them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(SCRIPTS))

from benchmark_bundles import ratios_to_first  # noqa: E402
from isolated_timing import summarize  # noqa: E402

FP32, INT8 = "all-minilm-l6-v2-x86-vnni-onnx-fp32", "all-minilm-l6-v2-x86-vnni-onnx-dynamic-int8"


def recorded_bundles() -> dict:
    return json.loads((DATA / "benchmark_bundles_minilm.json").read_text())


def test_block_medians_and_spread_from_recorded_blocks():
    """Two blocks per bundle: the figure is their median (the mean of two), the spread (max-min)/min."""
    latency = recorded_bundles()["latency"]
    for label, length, p50, spread in ((FP32, "128", 261.1494, 47.4965), (INT8, "128", 161.8601, 40.8893)):
        blocks = [{"rows": {length: {"p50_ms": ms, "runs": 10}}} for ms in latency[label][length]["block_p50_ms"]]
        summary = summarize(blocks)[int(length)]
        assert summary["p50_ms"] == pytest.approx(p50, abs=1e-4) == latency[label][length]["p50_ms"]
        assert summary["spread_pct"] == pytest.approx(spread, abs=1e-4) and summary["runs"] == 10


def test_ratio_to_first_bundle_on_recorded_run():
    """The x-first column: the first bundle's p50 over each bundle's, so int8 at 1.61x is faster than fp32."""
    report = recorded_bundles()
    stats = {label: {int(n): row for n, row in rows.items()} for label, rows in report["latency"].items()}
    ratios = ratios_to_first(stats, [FP32, INT8], 128)
    assert ratios == pytest.approx({FP32: 1.0, INT8: 261.1494 / 161.8601}, abs=1e-4)  # 1.6134
    assert ratios == pytest.approx(report["ratio_to_first"]["ratios"])  # what the script wrote
    assert ratios_to_first(stats, [INT8, FP32], 16) == pytest.approx({INT8: 1.0, FP32: 34.7485 / 36.7327}, abs=1e-4)


def test_peer_goal_threshold_from_the_isa():
    """Issue 20: 1.25x at 128 and not slower at 16 on AVX512-BF16/AMX CPUs; not slower at 128 elsewhere."""
    from peer_goal import goal_for

    assert goal_for(["avx2", "avx512f", "avx512_vnni", "amx_bf16", "amx_int8"]).min_ratio == {128: 1.25, 16: 1.0}
    assert goal_for(["avx2", "avx512_vnni", "avx512_bf16"]).min_ratio == {128: 1.25, 16: 1.0}  # this host
    assert goal_for(["avx2", "avx512f", "avx512_vnni"]).min_ratio == {128: 1.0}
    assert goal_for(["avx2", "fma"]).min_ratio == {128: 1.0}


def test_peer_goal_compares_the_fastest_accurate_variants():
    """A faster peer that fails the accuracy gate does not count; the ratio is the best accurate peer's p50 over
    our best accurate bundle's, per length (figures worked by hand)."""
    from peer_goal import goal_for, verdict

    latency = {
        "ours-int8": {128: {"p50_ms": 4.0}, 16: {"p50_ms": 1.2}},
        "ours-inaccurate": {128: {"p50_ms": 2.0}, 16: {"p50_ms": 0.5}},
        "peer-bf16": {128: {"p50_ms": 5.2}, 16: {"p50_ms": 1.5}},
        "peer-int8": {128: {"p50_ms": 3.0}, 16: {"p50_ms": 1.0}},
    }
    accurate = {"ours-int8": True, "ours-inaccurate": False, "peer-bf16": True, "peer-int8": False}
    rows = verdict(
        latency, ["ours-int8", "ours-inaccurate"], ["peer-bf16", "peer-int8"], accurate, goal_for(["amx_bf16"])
    )
    at128, at16 = rows
    assert (at128["ours"], at128["peer"], at128["fastest_peer"]) == ("ours-int8", "peer-bf16", "peer-int8")
    assert at128["ratio"] == pytest.approx(1.3) and at128["pass"]  # 5.2 / 4.0 >= 1.25
    assert at128["ratio_to_fastest_peer"] == pytest.approx(0.75)
    assert at16["ratio"] == pytest.approx(1.25) and at16["pass"]  # 1.5 / 1.2 >= 1.0
    slower = {**latency, "ours-int8": {128: {"p50_ms": 4.5}, 16: {"p50_ms": 1.6}}}
    assert [r["pass"] for r in verdict(slower, ["ours-int8"], ["peer-bf16"], accurate, goal_for(["amx_bf16"]))] == [
        False,
        False,
    ]  # 5.2 / 4.5 = 1.16 < 1.25; 1.5 / 1.6 < 1
