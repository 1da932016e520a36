"""Typed results (edge_bert/results/): a real validate and bench of a tiny bundle round-trip through JSON into
their typed objects; a document with an unknown, missing or wrong-typed field, or from a newer schema
version, is refused with one line naming the dotted field or the version - from a file (``results``) and
from a device's answer (a real sshd on 127.0.0.1 whose Python rewrites the runner's output: exit 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_untrusted_input import TINY_PROFILE, _assert_refused
from typer.testing import CliRunner

from edge_bert.bench.protocol import bench_result
from edge_bert.cli import app
from edge_bert.results.bench import BenchResult
from edge_bert.results.io import check, load_result, parse_result
from edge_bert.results.validate import ValidateResult
from edge_bert.schema import SchemaError
from edge_bert.validate import validate_result

runner = CliRunner()
DOCS = Path(__file__).parent.parent / "docs" / "results"


@pytest.fixture(scope="module")
def bundle(tiny_models, tmp_path_factory) -> Path:
    from edge_bert.convert.pipeline import convert

    root = tmp_path_factory.mktemp("typed-results")
    (outcome,) = convert(str(tiny_models["bert"]), TINY_PROFILE, root / "bundles", recipes=["fp32"], log=print)
    assert outcome.passed, outcome.error
    return outcome.bundle


@pytest.fixture(scope="module")
def documents(bundle) -> dict[str, dict]:
    """What a real local validate and bench wrote (JSON, as on disk and on the wire)."""
    checked = validate_result(bundle)
    timed = bench_result(bundle, runs=3, warmup=1, seq_lengths=(16, 32))
    return {"validate": json.loads(json.dumps(checked.to_dict())), "bench": json.loads(json.dumps(timed.to_dict()))}


def test_real_results_round_trip(bundle, documents):
    checked, timed = parse_result(documents["validate"]), parse_result(documents["bench"])
    assert isinstance(checked, ValidateResult) and isinstance(timed, BenchResult)
    assert checked.to_dict() == documents["validate"] and timed.to_dict() == documents["bench"]
    assert check(checked) == checked and check(timed) == timed
    assert checked.bundle == bundle.name and checked.device.id == "local" and checked.passed is True
    assert checked.gates["min_cosine"].passed is True and checked.checks.tokenizer.passed is True
    assert checked.parity.mean_cosine == documents["validate"]["parity"]["mean_cosine"] > 0.999
    assert sorted(timed.p50_ms()) == [16, 32] and timed.settings.runs == 3
    assert timed.latency[0].e2e.p50_ms == documents["bench"]["latency"][0]["e2e"]["p50_ms"] > 0
    assert timed.checksums["manifest.json"] == checked.checksums["manifest.json"]  # one bundle, one id
    assert "pass" in documents["validate"]["gates"]["min_cosine"]  # the JSON keeps its key names


def test_the_cli_writes_what_the_reader_reads(bundle, tmp_path):
    for verb, extra in (("validate", ["--report-dir", str(tmp_path / "r")]), ("bench", ["--runs", "2", "--warmup",
                        "1", "--seq-lengths", "16"])):  # fmt: skip
        out = tmp_path / f"{verb}.json"
        result = runner.invoke(app, [verb, str(bundle), *extra, "--json", str(out)])
        assert result.exit_code == 0, result.output
        assert load_result(out).schema == f"edge-bert/{verb}/{'v1' if verb == 'validate' else 'v2'}"


def test_committed_result_files_still_load():
    timed = load_result(DOCS / "bench-tflite-dynamic-int8.json")
    assert isinstance(timed, BenchResult) and timed.roofline.peak is not None and timed.roofline.peak.int8
    run = json.loads((DOCS / "quickstart-run.json").read_text())
    for entry in run["bundles"]:
        assert parse_result(entry["validate"]).passed is True
        assert parse_result(entry["bench"]).latency[0].seq_length == 16


def _edit(document: dict, path: str, value=None, delete: bool = False) -> dict:
    document = json.loads(json.dumps(document))
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = document
    for key in parents:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return document


@pytest.mark.parametrize(
    ("kind", "path", "value", "delete", "message"),
    [
        ("validate", "parity.mean_cosine", "high", False, "parity.mean_cosine: expected a number, got 'high'"),
        ("validate", "parity.mean_cosine", None, True, "parity.mean_cosine: missing (required)"),
        ("validate", "parity.colour", 1.0, False, "parity.colour: unknown key"),
        ("validate", "gates.min_cosine.pass", "yes", False, "gates.min_cosine.pass: expected true or false"),
        ("validate", "passed", 1, False, "passed: expected true or false, got 1"),
        ("validate", "checks.tokenizer.texts", -1, False, "checks.tokenizer.texts: must be ≥ 0"),
        ("validate", "checksums.extra", "abc", False, "checksums: 'extra' must be 64 lower-case hex"),
        ("validate", "device.emulated", "no", False, "device.emulated: expected true or false"),
        ("validate", "bundle", "../../etc", False, "bundle: must be 1-128 of"),
        ("bench", "latency.0.p50_ms", True, False, "latency[0].p50_ms: expected a number, got True"),
        ("bench", "latency.1.p51_ms", 1.0, False, "latency[1].p51_ms: unknown key"),
        ("bench", "latency.0.e2e", None, True, "latency[0].e2e: missing (required)"),
        ("bench", "settings.threads", "2", False, "settings.threads: expected an integer, got '2'"),
        ("bench", "memory_mib.peak_rss", [1], False, "memory_mib.peak_rss: expected a number"),
        ("bench", "board.after.cpu_mhz", {"cpu0": "fast"}, False, "board.after.cpu_mhz.cpu0: expected a number"),
        ("bench", "thread_sweep", [{"threads": 0, "p50_ms": {}}], False, "thread_sweep[0].threads: must be ≥ 1"),
        ("bench", "roofline.peak.fp32", None, True, "roofline.peak.fp32: missing (required)"),
        (
            "bench",
            "schema",
            "edge-bert/bench/v3",
            False,
            "edge-bert/bench/v3 is not one this edge-bert reads (newer than v2; upgrade edge-bert",
        ),
        ("validate", "schema", "edge-bert/validate/v0", False, "older than v1"),
        ("validate", "schema", "edge-bert/report/v1", False, "is not an edge-bert validate or bench result"),
    ],
)
def test_a_bad_field_is_refused_by_name(documents, kind, path, value, delete, message):
    bad = _edit(documents[kind], path, value, delete)
    with pytest.raises(SchemaError) as raised:
        parse_result(bad)
    assert message in str(raised.value) and "\n" not in str(raised.value), str(raised.value)


def test_results_skips_a_bad_file_with_one_line_naming_the_field(documents, tmp_path):
    (tmp_path / "good.json").write_text(json.dumps(documents["bench"]))
    (tmp_path / "bad.json").write_text(json.dumps(_edit(documents["bench"], "latency.0.p50_ms", "1 ms")))
    (tmp_path / "new.json").write_text(json.dumps(_edit(documents["validate"], "schema", "edge-bert/validate/v7")))
    table = runner.invoke(app, ["results", str(tmp_path), "--json", "-"])
    assert table.exit_code == 0, table.output
    skipped = sorted(line for line in table.stderr.splitlines() if line.startswith("skipped"))
    assert len(skipped) == 2, table.stderr
    assert "bad.json: latency[0].p50_ms: expected a number, got '1 ms'" in skipped[0]
    assert "new.json: schema: edge-bert/validate/v7 is not one this edge-bert reads (newer than v1" in skipped[1]
    (row,) = json.loads(table.stdout)["rows"]
    assert row["p50_ms"] == {str(r["seq_length"]): r["p50_ms"] for r in documents["bench"]["latency"]}


def _lying_python(tmp_path: Path, sed: str) -> Path:
    evil = tmp_path / "evil-python"
    evil.write_text(f"#!/bin/sh\n{sys.executable} \"$@\" | sed -e '{sed}'\n")
    evil.chmod(0o755)
    return evil


@pytest.mark.parametrize(
    ("verb", "sed", "field"),
    [
        ("bench", 's/"p50_ms": [0-9.e-]*/"p50_ms": "fast"/', "latency[0].p50_ms: expected a number, got 'fast'"),
        ("bench", 's/"threads": \\([0-9]*\\)/"threads": \\1, "root": true/', "settings.root: unknown key"),
        ("validate", 's/"mean_cosine": [0-9.e-]*/"mean_cosine": "1.0"/', "parity.mean_cosine: expected a number"),
        (
            "validate",
            's#"schema": "edge-bert/validate/v1"#"schema": "edge-bert/validate/v2"#',
            "edge-bert/validate/v2 is not one this edge-bert reads (newer than v1",
        ),
    ],
)
def test_a_hostile_device_answer_is_exit_2_naming_the_field(sshd, bundle, tmp_path, verb, sed, field):
    """The device's JSON answer is parsed into the typed result: what does not fit is one line, exit 2."""
    evil = _lying_python(tmp_path, sed)
    extra = ["--runs", "2", "--warmup", "1", "--seq-lengths", "16"] if verb == "bench" else []
    result = runner.invoke(app, [verb, str(bundle), "--device", sshd.url, "--remote-python", str(evil), *extra,
                                 "--report-dir", str(tmp_path / "r")] if verb == "validate" else
                           [verb, str(bundle), "--device", sshd.url, "--remote-python", str(evil), *extra])  # fmt: skip
    _assert_refused(result, field)


def test_an_honest_device_answer_is_typed_with_the_device(sshd, bundle, tmp_path):
    from edge_bert.devices.dispatch import bench_on
    from edge_bert.devices.ssh import SshTransport

    timed = bench_on(SshTransport(sshd.url, sys.executable), bundle, runs=2, warmup=1, seq_lengths=(16,))
    assert isinstance(timed, BenchResult) and timed.device.kind == "ssh" and timed.device.id == sshd.url
    assert check(timed) == timed and timed.latency[0].p50_ms > 0
