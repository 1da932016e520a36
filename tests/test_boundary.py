"""The runner must install and run on a device with numpy + tokenizers + one runtime: nothing it
imports may pull in torch, transformers, tensorflow, jax or mediapipe (a host-side dependency), nor ray
(the matrix's --ray extra, imported only when asked for)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import edge_bert

HEAVY = ("torch", "transformers", "tensorflow", "jax", "onnx.reference", "mediapipe", "ray")
#: the host side: conversion, per-format export and quantization, training (the convert extra)
HOST_PACKAGES = ("edge_bert.convert.", "edge_bert.formats.", "edge_bert.training.")


def runner_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(edge_bert.__path__, "edge_bert.")]
    # a __main__ module runs the CLI when imported: the package it belongs to is checked instead
    return sorted(n for n in names if not n.startswith(HOST_PACKAGES) and not n.endswith(".__main__"))


def test_runner_modules_are_found():
    modules = runner_modules()
    for expected in (
        "edge_bert.cli",
        "edge_bert.validate",
        "edge_bert.bench.protocol",
        "edge_bert.backends.ort",
        "edge_bert.backends.litert",
    ):
        assert expected in modules


def test_runner_imports_no_heavy_framework():
    code = (
        "import importlib, sys\n"
        f"for name in {runner_modules()!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_validate_and_bench_run_without_torch(tmp_path):
    """Block torch/transformers at import time and run the CLI's validate + bench on a real bundle."""
    from conftest import minilm_dir  # noqa: F401 - ensures the embedded model is installed
    from test_bad_input import TINY_PROFILE

    from edge_bert.convert.pipeline import convert

    source = tmp_path / "model"
    from conftest import run_cli_without_frameworks, save_tiny_model

    save_tiny_model("distilbert", source)
    (outcome,) = convert(str(source), TINY_PROFILE, tmp_path / "out", recipes=["dynamic-int8"], log=lambda _: None)
    bundle = str(outcome.bundle)
    stdout = run_cli_without_frameworks(
        ["validate", bundle], ["bench", bundle, "--runs", "3", "--warmup", "1", "--seq-lengths", "16"]
    )
    assert "PASS" in stdout and "p50" in stdout
