"""``convert --recipe auto --device D``: every candidate measured on the device, the fastest that passes
kept, never one that is not faster than fp32; the manifest says why the others lost."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from sshd_server import start_sshd
from typer.testing import CliRunner

from edge_bert.cli import app
from edge_bert.convert.auto_recipe import Candidate, choose
from edge_bert.results.validate import GateVerdict

TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"
runner = CliRunner()


def candidate(recipe: str, p50: dict[int, float] | None, passed: bool = True, fmt: str = "onnx") -> Candidate:
    verdict = GateVerdict(threshold=0.99, value=0.999 if passed else 0.5, passed=passed)
    c = Candidate(fmt, recipe, Path(recipe), device_gates={"min_cosine": verdict}, passed=passed)
    c.p50_ms = {threads: {128: ms} for threads, ms in (p50 or {}).items()} if passed else {}
    return c


def test_choice_follows_each_devices_measurements():
    # a board with dot products: int8 well ahead of fp32, best at 4 threads
    vnni = [candidate("fp32", {1: 40.0, 4: 14.0}), candidate("dynamic-int8", {1: 15.0, 4: 5.0}),
            candidate("fp16", {1: 42.0, 4: 15.0})]  # fmt: skip
    winner = choose(vnni, 128)
    assert (winner.recipe, winner.best(128)) == ("dynamic-int8", (4, 5.0))
    assert "slower on the device" in vnni[0].reason and "not faster than fp32" in vnni[2].reason
    # a board without them: int8 no faster than fp32 there, so fp32 it is, at the thread count that measured best
    plain = [candidate("fp32", {1: 40.0, 4: 12.0}), candidate("dynamic-int8", {1: 39.0, 4: 12.5})]
    winner = choose(plain, 128)
    assert (winner.recipe, winner.best(128)) == ("fp32", (4, 12.0))
    assert plain[1].reason.startswith("not faster than fp32")
    # the fastest fails its gates on the device: never chosen, and the reason names the gate
    failing = [candidate("fp32", {2: 20.0}), candidate("dynamic-int8", None, passed=False)]
    assert choose(failing, 128).recipe == "fp32" and "min_cosine" in failing[1].reason
    # an int8 faster than fp32 only at 1 thread still wins if that is the fastest setting measured
    assert choose(
        [candidate("fp32", {1: 30.0, 2: 20.0}), candidate("dynamic-int8", {1: 18.0, 2: 21.0})], 128
    ).recipe == ("dynamic-int8")


def test_choice_spans_formats_and_compares_int8_with_its_own_formats_fp32():
    """The x86 profiles offer ONNX and LiteRT: the device's figures pick the format too."""
    rows = [candidate("fp32", {2: 9.6}), candidate("dynamic-int8", {2: 4.6}),
            candidate("fp32", {2: 7.8}, fmt="tflite"), candidate("dynamic-int8", {2: 3.1}, fmt="tflite")]  # fmt: skip
    winner = choose(rows, 128)
    assert (winner.format, winner.recipe) == ("tflite", "dynamic-int8")
    assert all("slower on the device" in c.reason for c in rows if c is not winner)
    # LiteRT int8 slower than LiteRT fp32 on some board: the onnx int8 wins, not the tflite fp32 reference
    rows = [candidate("fp32", {2: 9.6}), candidate("dynamic-int8", {2: 4.6}),
            candidate("fp32", {2: 7.8}, fmt="tflite"), candidate("dynamic-int8", {2: 8.0}, fmt="tflite")]  # fmt: skip
    assert (choose(rows, 128).format, choose(rows, 128).recipe) == ("onnx", "dynamic-int8")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from conftest import save_tiny_model

    return save_tiny_model("bert", tmp_path_factory.mktemp("auto") / "model")


def check_selection(out: Path, device: str) -> dict:
    (bundle,) = [p for p in out.iterdir() if p.is_dir() and p.name != "candidates"]
    selection = json.loads((bundle / "manifest.json").read_text())["selection"]
    assert selection["device"]["id"] == device and selection["threads_tried"] == [1, 2]
    rows = selection["candidates"]
    assert sorted(r["recipe"] for r in rows) == ["dynamic-int8", "fp16", "fp32", "static-int8"]
    (chosen,) = [r for r in rows if r["chosen"]]
    assert bundle.name.endswith(chosen["recipe"])
    n = str(selection["seq_length"])
    best = {r["recipe"]: min(t[n] for t in r["p50_ms"].values()) for r in rows if r["passed"]}
    fp32 = best["fp32"]
    # the choice follows the figures recorded: the fastest passing, unless it is not faster than fp32
    fastest = min(best, key=best.get)
    assert chosen["recipe"] == (fastest if best[fastest] < fp32 else "fp32")
    assert all(r["reason"] for r in rows) and all(not r["chosen"] for r in rows if r is not chosen)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["target"]["bench"]["threads"] == chosen["best_threads"]  # the thread count comes with the recipe
    return selection


def test_auto_on_local_device_writes_only_the_winner(model, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["convert", str(model), "--target", str(TINY_PROFILE), "--recipe", "auto",
                                 "--device", "local", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "--recipe auto on local" in result.output and "chosen" in result.output
    check_selection(out, "local")
    assert [p.name for p in out.iterdir()] == [next(p for p in out.iterdir()).name]  # nothing else left in OUT
    check = runner.invoke(app, ["validate", str(next(out.iterdir()))])
    assert check.exit_code == 0, check.output  # the manifest with its selection record is a valid bundle


def test_auto_over_ssh_keeps_candidates(model, tmp_path, tmp_path_factory, monkeypatch):
    server = start_sshd(tmp_path_factory.mktemp("auto-sshd"))
    monkeypatch.setenv("EDGE_BERT_SSH_CONFIG", str(server.config))
    try:
        out = tmp_path / "out"
        result = runner.invoke(app, ["convert", str(model), "--target", str(TINY_PROFILE), "--recipe", "auto",
                                     "--device", server.url, "--remote-python", sys.executable, "--out", str(out),
                                     "--keep-candidates"])  # fmt: skip
        assert result.exit_code == 0, result.output
        selection = check_selection(out, server.url)
        assert selection["device"]["kind"] == "ssh"
        assert len(list((out / "candidates").iterdir())) == 4
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def test_auto_refuses_an_emulated_device(model, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["convert", str(model), "--target", str(TINY_PROFILE), "--recipe", "auto",
                                 "--device", "emu:rpi5", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 2
    assert "cannot decide on speed" in result.output and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())
