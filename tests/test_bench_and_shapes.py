"""bench's protocol on real text, the machine fingerprint, and static-length bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_bert.bench.protocol import bench
from edge_bert.bundle import open_bundle
from edge_bert.convert.pipeline import convert
from edge_bert.fingerprint import fingerprint
from edge_bert.session import BundleSession
from edge_bert.validate import validate

TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"


@pytest.fixture(scope="module")
def dynamic_bundle(tiny_models, sst2_texts, tmp_path_factory) -> Path:
    (outcome,) = convert(
        str(tiny_models["albert"]),
        TINY_PROFILE,
        tmp_path_factory.mktemp("dyn"),
        texts=sst2_texts,
        recipes=["dynamic-int8"],
        log=lambda _: None,
    )
    return outcome.bundle


@pytest.fixture(scope="module")
def static_bundle(tiny_models, sst2_texts, tmp_path_factory) -> Path:
    profile = tmp_path_factory.mktemp("profile") / "static.toml"
    profile.write_text(TINY_PROFILE.read_text().replace('policy = "dynamic"', 'policy = "static"\nseq_lengths = [64]'))
    (outcome,) = convert(
        str(tiny_models["mobilebert"]),
        profile,
        tmp_path_factory.mktemp("static"),
        texts=sst2_texts,
        recipes=["fp32"],
        log=lambda _: None,
    )
    assert outcome.passed, outcome.error
    return outcome.bundle


def test_bench_reports_the_protocol(dynamic_bundle):
    progress = []
    result = bench(
        dynamic_bundle,
        threads=1,
        seq_lengths=(16, 64, 128, 512),
        warmup=2,
        runs=7,
        progress=lambda label, done, total: progress.append((label, done, total)),
    )
    assert [row["seq_length"] for row in result["latency"]] == [16, 64, 128]
    assert result["skipped_seq_lengths"] == [512]
    for row in result["latency"]:
        assert row["padded_to"] == row["seq_length"]  # dynamic: no padding beyond the text
        assert row["runs"] == 7
        assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["throughput_per_s"] == pytest.approx(1000 / row["mean_ms"])
    assert result["cold_load_ms"] > 0 and result["first_inference_ms"] > 0
    assert result["memory_mib"]["peak_rss"] >= result["memory_mib"]["rss_after_load"] > 0
    assert result["settings"] == {"threads": 1, "warmup": 2, "runs": 7, "batch": 1}
    assert result["machine"] == machine_read_independently()
    assert progress[-1][1:] == (21, 21)


def machine_read_independently() -> dict[str, object]:
    """The machine record, read without edge_bert.fingerprint: /proc files by regex, uname and nproc."""
    import platform
    import re
    import subprocess
    import sys

    cpuinfo = Path("/proc/cpuinfo").read_text()
    first = re.search(r"^(?:model name|Model|Hardware)\s*:\s*(.*)$", cpuinfo, re.M)
    flags = re.search(r"^(?:flags|Features)\s*:(.*)$", cpuinfo, re.M)
    kib = int(re.search(r"^MemTotal:\s+(\d+) kB$", Path("/proc/meminfo").read_text(), re.M).group(1))
    wanted = "avx2 fma avx512f avx512bw avx512_vnni avx_vnni avx512_bf16 amx_int8 asimd asimddp asimdhp i8mm bf16"
    wanted += " sve sve2"  # the ISA flags that change int8/fp16 speed
    uname = platform.uname()
    return {
        "machine": subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip(),
        "cpu_model": first.group(1).strip() if first else uname.processor or "unknown",
        "cpu_count": len(re.findall(r"^processor\s*:", cpuinfo, re.M)),
        "affinity_cpus": int(subprocess.run(["nproc"], capture_output=True, text=True).stdout),
        "isa_flags": sorted(set(flags.group(1).split()) & set(wanted.split())) if flags else [],
        "mem_total_gib": round(kib / 1048576, 1),
        "os": f"{uname.system} {uname.release}",
        "python": ".".join(str(n) for n in sys.version_info[:3]),
    }


def test_fingerprint_names_the_isa():
    machine = fingerprint()
    assert machine == machine_read_independently() and machine["cpu_count"] >= 1
    cpuinfo = Path("/proc/cpuinfo").read_text()
    for flag in ("avx2", "avx512_vnni", "asimddp"):
        assert (flag in machine["isa_flags"]) == (f" {flag}" in cpuinfo or f"\t{flag}" in cpuinfo)


def test_static_bundle_pads_to_its_length(static_bundle):
    bundle = open_bundle(static_bundle)
    assert bundle.seq_lengths == (64,)
    assert list(bundle.manifest.inputs[0].shape) == ["batch", 64]
    assert validate(static_bundle)["passed"]
    session = BundleSession(bundle)
    _, encoded = session.run_text("short text")
    assert session.feeds(encoded.ids)["input_ids"].shape == (1, 64)
    _, long_encoded = session.run_text("word " * 200)
    assert long_encoded.truncated and len(long_encoded.ids) == 64
    result = bench(static_bundle, threads=1, seq_lengths=(16, 64), warmup=1, runs=3)
    assert [row["padded_to"] for row in result["latency"]] == [64, 64]
