"""The benchmark scripts' protocol: every variant timed alone in its own process, in alternating blocks, with the
machine and its load recorded (sessions sharing one process spin and steal the cores from each other)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_bert.convert.pipeline import convert

ROOT = Path(__file__).resolve().parents[1]
TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"


def test_benchmark_bundles_times_each_bundle_alone_in_alternating_processes(tiny_models, sst2_texts, tmp_path):
    outcomes = convert(
        str(tiny_models["bert"]),
        TINY_PROFILE,
        tmp_path / "bundles",
        texts=sst2_texts[:8],
        recipes=["fp32", "dynamic-int8"],
        log=lambda _: None,
    )
    bundles = [str(o.bundle) for o in outcomes]
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark_bundles.py"), *bundles, "--blocks", "2", "--runs", "3",
         "--warmup", "1", "--seq-lengths", "16,32", "--json", str(report_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(report_path.read_text())
    blocks = report["blocks"]
    names = [Path(b).name for b in bundles]
    # A-B then B-A: the first bundle rotates per round, and every block is a fresh process
    assert [b["label"] for b in blocks] == [names[0], names[1], names[1], names[0]]
    assert len({b["pid"] for b in blocks}) == 4
    assert all(b["load_avg_1min"] >= 0 for b in blocks)
    assert report["machine"]["cpu_count"] >= 1 and "isa_flags" in report["machine"]
    for name in names:
        for length in ("16", "32"):
            row = report["latency"][name][length]
            assert len(row["block_p50_ms"]) == 2
            assert row["p50_ms"] == pytest.approx(sum(row["block_p50_ms"]) / 2)  # the median of the blocks
    assert "each bundle alone in its own process" in done.stdout
    assert all(name in done.stdout for name in names)
