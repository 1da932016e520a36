"""``edge-bert matrix``: real conversions of a tiny BERT and the embedded MiniLM, validated and benched here;
a device that cannot be reached fails its cells only; a second run redoes nothing finished; a run killed
mid-way continues where it stopped; no bench overlaps a conversion; the output is typed result files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_bert.cli import app
from edge_bert.results.bench import BenchResult
from edge_bert.results.io import load_result
from edge_bert.results.validate import ValidateResult

ROOT = Path(__file__).parent.parent
TINY_PROFILE = ROOT / "tests" / "profiles" / "tiny-random.toml"
UNREACHABLE = "ssh://nobody@127.0.0.1:9"  # the discard port: connection refused at once
runner = CliRunner()


def _matrix(tmp_path: Path, model: Path, devices: list[str], name: str = "tiny") -> Path:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(
        f'name = "{name}"\ntargets = ["{TINY_PROFILE}"]\nformats = ["onnx"]\nrecipes = ["fp32", "dynamic-int8"]\n'
        f"devices = {json.dumps(devices)}\nseq_lengths = [16, 32]\nruns = 3\nwarmup = 1\nthreads = 1\n"
        f'timeout_s = 600\n\n[[models]]\nid = "tiny-bert"\nsource = "{model}"\n',
        encoding="utf-8",
    )
    return spec


def _files(out: Path) -> dict[str, int]:
    """Every result, record and bundle manifest with its modification time (ns): a redone cell changes them."""
    paths = [*(out / "results").iterdir(), *(out / "cells").iterdir(), *(out / "bundles").glob("*/*/manifest.json")]
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in paths}


def _cells_written(out: Path) -> int:
    return len(list((out / "cells").glob("*.json"))) if (out / "cells").is_dir() else 0


def test_matrix_isolates_failures_and_never_redoes_a_finished_cell(tiny_models, tmp_path):
    out = tmp_path / "out"
    spec = _matrix(tmp_path, tiny_models["bert"], ["local", UNREACHABLE])
    first = runner.invoke(app, ["matrix", str(spec), "--out", str(out), "--jobs", "2"])
    assert first.exit_code == 1, first.output  # the unreachable device's cells are required: they failed
    index = json.loads((out / "matrix.json").read_text())
    cells = {(c["recipe"], c["device"]): c for c in index["cells"]}
    assert len(cells) == 4 and {c["status"] for k, c in cells.items() if k[1] == "local"} == {"done"}
    for recipe in ("fp32", "dynamic-int8"):
        failed = cells[(recipe, UNREACHABLE)]
        assert failed["status"] == "failed" and failed["exit_class"] == "input" and "127.0.0.1" in failed["reason"]
        done = cells[(recipe, "local")]
        checked, timed = load_result(out / done["validate"]), load_result(out / done["bench"])
        assert isinstance(checked, ValidateResult) and checked.passed and checked.recipe == recipe
        assert isinstance(timed, BenchResult) and sorted(timed.p50_ms()) == [16, 32] and timed.settings.threads == 1
        assert checked.bundle_id == timed.bundle_id and timed.device.id == "local"
    # honest timing: every conversion of the run ended before the first device step started
    first_device_step = min(c["device_steps"][0] for c in index["cells"] if "device_steps" in c)
    assert len(index["conversions"]) == 2 and max(end for _, end in index["conversions"].values()) <= first_device_step

    before = _files(out)
    again = runner.invoke(app, ["matrix", str(spec), "--out", str(out)])
    assert again.exit_code == 1 and "2 of 4 cells done" in again.stderr, again.output
    assert _files(out) == before  # nothing finished was redone (nor converted again): same files, same times


def test_a_killed_matrix_continues_where_it_stopped(tiny_models, tmp_path):
    out = tmp_path / "out"
    spec = _matrix(tmp_path, tiny_models["bert"], ["local"], name="killed")
    argv = [sys.executable, "-m", "edge_bert.cli", "matrix", str(spec), "--out", str(out), "--jobs", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 600
    while _cells_written(out) == 0:
        assert process.poll() is None and time.monotonic() < deadline, "the matrix ended before a cell finished"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and whatever step it was running
    process.wait()
    finished = _files(out)
    assert _cells_written(out) == 1
    index = json.loads((out / "matrix.json").read_text())
    assert sorted(c["status"] for c in index["cells"]) in (["done", "pending"], ["done", "done"])

    resumed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "2 of 2 cells done" in resumed.stderr
    after = _files(out)
    assert {k: after[k] for k in finished} == finished  # the finished cell was not redone
    assert _cells_written(out) == 2


def test_a_bad_matrix_is_one_line_naming_the_field(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "x"\ntargets = ["x86"]\nrecipes = ["fp32"]\ndevices = ["local"]\nruns = "many"\n'
                    '[[models]]\nid = "m"\nsource = "embedded"\n')  # fmt: skip
    result = runner.invoke(app, ["matrix", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "runs: expected an integer, got 'many'" in result.stderr, result.output
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


@pytest.mark.slow
def test_the_offline_example_runs(tmp_path):
    """examples/offline.toml as shipped: the embedded MiniLM, ONNX fp32 and dynamic-int8, on this machine."""
    out = tmp_path / "out"
    result = runner.invoke(app, ["matrix", str(ROOT / "examples" / "offline.toml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    index = json.loads((out / "matrix.json").read_text())
    assert [c["status"] for c in index["cells"]] == ["done", "done"]
    for cell in index["cells"]:
        checked, timed = load_result(out / cell["validate"]), load_result(out / cell["bench"])
        assert checked.passed and checked.bundle.startswith("minilm-x86-vnni-onnx-")
        assert checked.parity.mean_cosine > 0.99 and sorted(timed.p50_ms()) == [16, 64]


def test_a_timed_out_step_is_recorded_and_the_rest_go_on(tiny_models, tmp_path):
    """A device that accepts the connection and never answers: validate outlives timeout_s and is killed, the
    cell is recorded with exit class "timeout", and the cells after it still run."""
    out = tmp_path / "out"
    convert_only = _matrix(tmp_path, tiny_models["bert"], [UNREACHABLE], name="convert")
    assert runner.invoke(app, ["matrix", str(convert_only), "--out", str(out)]).exit_code == 1  # bundles kept
    silent = socket.create_server(("127.0.0.1", 0))  # listens, never accepts: ssh waits for a banner
    try:
        device = f"ssh://nobody@127.0.0.1:{silent.getsockname()[1]}"
        spec = _matrix(tmp_path, tiny_models["bert"], [device, UNREACHABLE], name="silent")
        spec.write_text(spec.read_text().replace("timeout_s = 600", "timeout_s = 10"))
        started = time.monotonic()
        result = runner.invoke(app, ["matrix", str(spec), "--out", str(out)])
        took = time.monotonic() - started
    finally:
        silent.close()
    assert result.exit_code == 1, result.output
    index = json.loads((out / "matrix.json").read_text())
    cells = {(c["recipe"], c["device"]): c for c in index["cells"]}
    assert index["conversions"] and all(end - start < 1 for start, end in index["conversions"].values())  # reused
    for recipe in ("fp32", "dynamic-int8"):
        late = cells[(recipe, device)]
        assert late["status"] == "failed" and late["exit_class"] == "timeout", late
        assert late["reason"] == "validate took longer than 10 s" and 10 <= late["seconds"] < 15
        refused = cells[(recipe, UNREACHABLE)]  # run after the first timeout: the matrix went on
        assert refused["status"] == "failed" and refused["exit_class"] == "input" and "127.0.0.1" in refused["reason"]
    assert took >= 20
