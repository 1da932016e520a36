"""The edge-bert command line: exit codes 0 pass / 1 fail / 2 unusable, tables and JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import require_module
from typer.testing import CliRunner

from edge_bert.cli import app

TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"
runner = CliRunner()


@pytest.fixture(scope="module")
def cli_bundles(tiny_models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli")
    texts = tmp_path_factory.mktemp("texts") / "texts.txt"
    texts.write_text("A calm sea.\nThe train was late again, and nobody told us why.\n")
    result = runner.invoke(
        app,
        [
            "convert",
            str(tiny_models["distilbert"]),
            "--target",
            str(TINY_PROFILE),
            "--out",
            str(out),
            "--recipe",
            "fp32",
            "--recipe",
            "dynamic-int8",
            "--texts",
            str(texts),
            "--name",
            "tiny",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "written" in result.output
    return out


def test_convert_writes_named_bundles(cli_bundles):
    assert sorted(p.name for p in cli_bundles.iterdir()) == [
        "tiny-tiny-random-onnx-dynamic-int8",
        "tiny-tiny-random-onnx-fp32",
    ]


def test_validate_pass_table_and_json(cli_bundles):
    bundle = cli_bundles / "tiny-tiny-random-onnx-fp32"
    result = runner.invoke(app, ["validate", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "tokenizer reproduces golden ids" in result.output
    result = runner.invoke(app, ["validate", str(bundle), "--json", "-"])
    data = json.loads(result.stdout)
    assert data["schema"] == "edge-bert/validate/v1" and data["passed"] is True
    assert data["parity"]["samples"] == 2 and data["parity"]["top1_agreement"] == 1.0


def test_validate_gate_failure_exits_1(cli_bundles, tmp_path):
    strict = tmp_path / "strict.toml"
    strict.write_text(TINY_PROFILE.read_text().replace("max_rel_error = 0.4", "max_rel_error = 1e-9"))
    result = runner.invoke(
        app, ["validate", str(cli_bundles / "tiny-tiny-random-onnx-dynamic-int8"), "--profile", str(strict)]
    )
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output


def test_validate_unusable_bundle_exits_2(cli_bundles, tmp_path):
    broken = Path(shutil.copytree(cli_bundles / "tiny-tiny-random-onnx-fp32", tmp_path / "broken"))
    (broken / "model.onnx").write_bytes(b"not a model")
    result = runner.invoke(app, ["validate", str(broken)])
    assert result.exit_code == 2
    assert "model.onnx: size 11 bytes" in result.output and "Traceback" not in result.output


def test_bench_json(cli_bundles, tmp_path):
    out = tmp_path / "bench.json"
    result = runner.invoke(
        app,
        [
            "bench",
            str(cli_bundles / "tiny-tiny-random-onnx-dynamic-int8"),
            "--runs",
            "3",
            "--warmup",
            "1",
            "--seq-lengths",
            "16,64",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["schema"] == "edge-bert/bench/v2"
    assert [r["seq_length"] for r in data["latency"]] == [16, 64]
    assert "p50 ms" in result.output


def test_inspect_and_targets(cli_bundles):
    result = runner.invoke(app, ["inspect", str(cli_bundles / "tiny-tiny-random-onnx-fp32")])
    assert result.exit_code == 0 and "distilbert" in result.output and "sha256" in result.output
    result = runner.invoke(app, ["targets"])
    for name in ("x86", "x86-vnni", "rpi4", "rpi5", "android"):
        assert name in result.output


def test_convert_tflite_and_inspect(tiny_models, tmp_path):
    """--format tflite produces a LiteRT bundle (issue #3), and inspect shows its signatures."""
    require_module("litert_torch", "the tflite extra is not installed")
    profile = Path(__file__).parent / "profiles" / "tiny-random-tflite.toml"
    args = ["convert", str(tiny_models["distilbert"]), "--target", str(profile), "--out", str(tmp_path)]
    result = runner.invoke(app, [*args, "--recipe", "fp32", "--format", "tflite"])
    assert result.exit_code == 0, result.output
    bundle = next(tmp_path.glob("*-fp32"))
    result = runner.invoke(app, ["inspect", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "litert-torch" in result.output and "seq_16" in result.output
