"""Quiet by default (edge_bert/cli/logs.py): real `convert`, `run` and `finetune` subprocesses on tiny models
print edge-bert's own lines only; what torch, torchao, transformers, absl/TensorFlow, LiteRT and ONNX Runtime
print (from Python and from C) lands in OUT.log, named in one line; with -v it is on stderr, never stdout.

The patterns are the noise these commands printed before the change (recorded with this environment):
  Failed to load .../torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so: Could not load this library: ...
  W1204 15:00:54.380000 12738 torch/utils/_pytree.py:630] <enum 'KernelPreference'> is an Enum subclass ...
  Loading weights: 100%|██████████| 41/41 [00:00<00:00, 14836.21it/s]      (transformers)
  Writing model shards: 100%|██████████| 1/1 [00:00<00:00, 136.16it/s]     (transformers, finetune)
  WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
  I0000 00:00:1796396480.101485   13167 port.cc:153] oneDNN custom operations are on. ...
  (00:08) [ DONE] LiteRT-Torch Convert > Run FX Passes > ExportedProgram Run ...   (x80 for one tiny model)
  INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import requires, sst2_dev
from test_distill import save_teacher, write_tsv

ROOT = Path(__file__).resolve().parents[1]
PROFILES = Path(__file__).parent / "profiles"
NOISE = {
    "torchao": r"Failed to load .*torchao",
    "torch": r"torch/utils/_pytree\.py",
    "transformers": r"Loading weights|Writing model shards",
    "absl": r"absl::InitializeLog|^[IWEF]\d{4} [\d:.]+ +\d+ \w+\.cc:\d+\]",
    "LiteRT": r"XNNPACK delegate|LiteRT-Torch Convert",
    "onnxruntime": r"\[[WEI]:onnxruntime:",
}


def families(text: str) -> set[str]:
    """Which libraries' noise the text holds."""
    return {name for name, pattern in NOISE.items() if re.search(pattern, text, re.MULTILINE)}


def edge_bert(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter, as a user runs it, with its own temp dir (to see what it leaves)."""
    temp = tmp_path / "tmpdir"
    temp.mkdir(exist_ok=True)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "TMPDIR": str(temp)}
    done = subprocess.run([sys.executable, "-m", "edge_bert.cli", *argv], capture_output=True, text=True, env=env)
    assert not list(temp.glob("edge-bert-*.log")), "a temporary log was left behind"
    return done


def assert_quiet(done: subprocess.CompletedProcess, out: Path) -> str:
    """Exit 0, no third-party line on the terminal, one line naming OUT.log; returns the log's text."""
    assert done.returncode == 0, done.stdout + done.stderr
    assert families(done.stdout + done.stderr) == set(), done.stdout + done.stderr
    log = out.with_name(out.name + ".log")
    assert done.stderr.splitlines() == [f"third-party output: {log} (edge-bert -v shows it)"], done.stderr
    assert log.is_file() and log.parent == out.parent  # beside OUT: OUT holds only what the verb writes
    return log.read_text(encoding="utf-8", errors="replace")


def convert_args(model: Path, profile: str, out: Path, *recipes: str) -> list[str]:
    return ["convert", str(model), "--target", str(PROFILES / profile), "--out", str(out),
            *[a for r in recipes for a in ("--recipe", r)]]  # fmt: skip


def test_convert_onnx_is_quiet_and_logs(tiny_models, tmp_path):
    out = tmp_path / "bundles"
    done = edge_bert(tmp_path, *convert_args(tiny_models["bert"], "tiny-random.toml", out, "fp32", "dynamic-int8"))
    log = assert_quiet(done, out)
    assert {"torch", "transformers"} <= families(log), log
    # edge-bert's own progress and table are as before, on stdout
    assert "recipe dynamic-int8: producing bert-tiny-random-onnx-dynamic-int8" in done.stdout
    assert done.stdout.count("written") == 2
    assert sorted(p.name for p in out.iterdir()) == ["bert-tiny-random-onnx-dynamic-int8", "bert-tiny-random-onnx-fp32"]


@requires(importlib.util.find_spec("litert_torch") is not None, "the tflite extra is not installed")
def test_convert_litert_is_quiet_and_logs(tiny_models, tmp_path):
    out = tmp_path / "bundles"
    done = edge_bert(tmp_path, *convert_args(tiny_models["bert"], "tiny-random-tflite.toml", out, "fp32"))
    log = assert_quiet(done, out)
    assert {"torch", "transformers", "absl", "LiteRT"} <= families(log), log
    # the XNNPACK banner (C++, straight to fd 2) is dropped by the LiteRT backend itself, so that a runner's
    # error stays one line even outside a quiet verb; the rest of LiteRT's stderr reaches the log
    assert "XNNPACK delegate" not in log + done.stdout + done.stderr
    assert "to LiteRT, signatures [16, 32, 64]" in done.stdout and "written" in done.stdout


def test_verbose_run_puts_third_party_lines_on_stderr_and_keeps_json_pure(tiny_models, tmp_path):
    out = tmp_path / "bundles"
    args = ["-v", "run", str(tiny_models["bert"]), "--target", str(PROFILES / "tiny-random.toml"), "--out", str(out),
            "--report-dir", str(tmp_path / "reports"), "--runs", "2", "--json", "-"]  # fmt: skip
    done = edge_bert(tmp_path, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(done.stdout)  # stdout is the JSON document and nothing else
    assert document["schema"] == "edge-bert/run/v1" and len(document["bundles"]) == 4
    assert {"torch", "transformers"} <= families(done.stderr), done.stderr
    assert "recipe fp32: producing" in done.stderr  # our own progress, on stderr because stdout carries JSON
    assert "third-party output" not in done.stderr and not out.with_name("bundles.log").exists()


@pytest.fixture(scope="module")
def finetune_files(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("quiet-ft")
    return save_teacher(root / "base", layers=2), write_tsv(root / "train.tsv", sst2_dev(limit=48))


@pytest.mark.parametrize("verbose", [False, True], ids=["default", "verbose"])
def test_finetune_is_quiet_unless_verbose(finetune_files, tmp_path, verbose):
    base, train = finetune_files
    out = tmp_path / "models" / "tiny-sst2"
    args = ["finetune", str(base), "--data", str(train), "--epochs", "1", "--out", str(out)]
    done = edge_bert(tmp_path, *(["-v", *args] if verbose else args))
    assert "edge-bert finetune" in done.stdout and "train_rows" in done.stdout  # the summary table, as before
    assert (out / "model.safetensors").is_file() and not (out / "tiny-sst2.log").exists()
    if verbose:
        assert done.returncode == 0, done.stdout + done.stderr
        assert families(done.stdout) == set(), done.stdout
        assert {"torch", "transformers"} <= families(done.stderr), done.stderr
        assert not out.with_name("tiny-sst2.log").exists()
    else:
        assert {"torch", "transformers"} <= families(assert_quiet(done, out))


def test_unusable_input_prints_one_line_and_leaves_no_log(tiny_models, tmp_path):
    out = tmp_path / "bundles"
    done = edge_bert(tmp_path, *convert_args(tiny_models["bert"], "tiny-random.toml", out, "no-such-recipe"))
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
    assert families(done.stdout + done.stderr) == set() and not out.with_name("bundles.log").exists()
