"""Bundles of the rpi4, rpi5 and android profiles validated on emulated ARM64 boards (qemu user-mode).

Real qemu, real aarch64 wheels of onnxruntime and ai-edge-litert, real ARM kernels (NEON on the
Cortex-A72 of emu:rpi4; sdot/udot on the Cortex-A76 of emu:rpi5). The userland is prepared once by
``edge-bert device setup`` (``.ci/run`` does it; cached under ~/.cache/edge-bert). Under CI (conftest.IN_CI) a
missing qemu or userland fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import unavailable
from typer.testing import CliRunner

from edge_bert.cli import app
from edge_bert.devices import emu_setup, open_device
from edge_bert.devices.dispatch import validate_on
from edge_bert.validate import validate

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ("rpi4", "rpi5", "android")
DEVICES = ("emu:rpi4", "emu:rpi5")
#: an fp32 top-1 probability lead this large is a clear answer; below it, int8 rounding may flip a near-tie
CLEAR_MARGIN = 0.05
LOOSE_GATES = "[gates]\nmin_top1_agreement = 0.9\nmin_cosine = 0.99\nmin_worst_cosine = 0.95\nmax_rel_error = 0.4\n\n"
runner = CliRunner()


def tiny_profile(name: str, out: Path) -> Path:
    """The shipped profile (its recipes, reduce_range, ort_format, app extras) with int8 gates for an
    untrained model (see tests/profiles/tiny-random.toml) and short LiteRT signatures (fast to convert)."""
    text = (ROOT / "targets" / f"{name}.toml").read_text()
    text = re.sub(r"(?m)^name = .*$", f'name = "tiny-random-{name}"', text)
    text = text.replace("seq_lengths = [16, 32, 64, 128]", "seq_lengths = [16, 32]")
    text = re.sub(r"(?ms)^\[gates\].*?(?=^\[)", LOOSE_GATES, text)
    path = out / f"tiny-random-{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def userland() -> Path:
    if emu_setup.missing_tools():
        unavailable(
            f"emulation needs {', '.join(emu_setup.missing_tools())} (apt-get install qemu-user-static debootstrap)"
        )
    if not emu_setup.ready():
        if os.geteuid() != 0:
            unavailable("the arm64 userland is not set up (sudo edge-bert device setup emu:rpi5)")
        emu_setup.setup(log=lambda _: None)
    return emu_setup.userland_dir()


@pytest.fixture(scope="module")
def arm_bundles(userland, tmp_path_factory) -> dict[str, Path]:
    """ONNX and TFLite dynamic-int8 bundles of a tiny classifier, per ARM profile (converted on x86)."""
    from conftest import save_tiny_model

    from edge_bert.convert.pipeline import convert

    root = tmp_path_factory.mktemp("arm")
    model = save_tiny_model("bert", root / "model")
    bundles = {}
    for name in PROFILES:
        outcomes = convert(
            str(model), str(tiny_profile(name, root)), root / "out", recipes=["dynamic-int8"], log=lambda _: None
        )
        for outcome in outcomes:
            assert outcome.passed, outcome.error
            bundles[f"{name}-{outcome.format}"] = outcome.bundle
    assert len(bundles) == 6
    return bundles


@pytest.fixture(scope="module")
def host_results(arm_bundles) -> dict[str, dict]:
    return {key: validate(path) for key, path in arm_bundles.items()}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bundle_key", [f"{p}-{f}" for p in PROFILES for f in ("onnx", "tflite")])
def test_bundle_validates_on_emulated_board(arm_bundles, host_results, bundle_key, device):
    result = validate_on(open_device(device), arm_bundles[bundle_key]).to_dict()
    host = host_results[bundle_key]
    assert result["passed"], result["gates"]
    assert result["emulated"] is True and result["device"]["kind"] == "emu" and result["device"]["id"] == device
    machine = result["machine"]
    assert machine["machine"] == "aarch64" and "qemu-user emulated" in machine["cpu_model"]
    assert ("asimddp" in machine["isa_flags"]) is (device == "emu:rpi5")  # A72: no dot products; A76: sdot/udot
    assert result["bundle_id"] == host["bundle_id"] and result["runtime"]["name"] == host["runtime"]["name"]
    # same answers as on x86 wherever the fp32 model's answer is clear
    mine, ref = result["predictions"], host["predictions"]
    clear = np.asarray(ref["fp32_margin"]) >= CLEAR_MARGIN
    assert clear.sum() >= len(clear) // 2
    assert np.array_equal(np.asarray(mine["top1"])[clear], np.asarray(ref["top1"])[clear])
    assert abs(result["parity"]["mean_cosine"] - host["parity"]["mean_cosine"]) < 1e-3


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_android_bundle_on_emulated_phone_core(arm_bundles, host_results, fmt):
    """The phone big core: Armv9 with i8mm and SVE2, where onnxruntime and XNNPACK pick other int8 kernels."""
    result = validate_on(open_device("emu:android-arm64"), arm_bundles[f"android-{fmt}"]).to_dict()
    host = host_results[f"android-{fmt}"]
    assert result["passed"], result["gates"]
    assert {"asimddp", "i8mm", "sve2"} <= set(result["machine"]["isa_flags"])
    clear = np.asarray(host["predictions"]["fp32_margin"]) >= CLEAR_MARGIN
    assert np.array_equal(
        np.asarray(result["predictions"]["top1"])[clear], np.asarray(host["predictions"]["top1"])[clear]
    )


def test_cli_marks_emulated_results_and_results_table(arm_bundles, host_results):
    bundle = arm_bundles["rpi5-tflite"]
    local = runner.invoke(app, ["validate", str(bundle)])
    assert local.exit_code == 0, local.output
    result = runner.invoke(app, ["validate", str(bundle), "--device", "emu:rpi4"])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "qemu-user emulated" in result.output
    assert Path("reports", f"{bundle.name}@emu_rpi4.validate.json").exists()
    bench = runner.invoke(app, ["bench", str(bundle), "--device", "emu:rpi5", "--runs", "2", "--warmup", "0",
                                "--seq-lengths", "16", "--json", "reports/emu.bench.json"])  # fmt: skip
    assert bench.exit_code == 0, bench.output
    assert "EMULATED (qemu), timings are not device latency" in bench.output
    # every timing column says "emulated" (the 80-column test terminal wraps the headers, so count the word)
    assert bench.output.count("emulated") >= 5
    assert json.loads(Path("reports/emu.bench.json").read_text())["emulated"] is True
    table = runner.invoke(app, ["results", "reports", "--json", "-"])
    assert table.exit_code == 0, table.output
    rows = {row["device"]: row for row in json.loads(table.stdout)["rows"]}
    assert set(rows) == {"local", "emu:rpi4", "emu:rpi5"}
    same, total = map(int, rows["emu:rpi4"]["same_top1_as_host"].split("/"))
    ref = host_results["rpi5-tflite"]["predictions"]
    assert rows["emu:rpi4"]["emulated"] and total == len(ref["top1"])
    assert same >= sum(m >= CLEAR_MARGIN for m in ref["fp32_margin"])
    assert "p50_ms" not in rows["emu:rpi5"] and rows["emu:rpi5"]["emulated_p50_ms"]
    markdown = runner.invoke(app, ["results", "reports", "--as", "markdown"])
    assert "emu:rpi4 (emulated)" in markdown.stdout and "| emulated |" in markdown.stdout


def test_device_setup_is_idempotent(userland):
    """`edge-bert device setup` (what .ci/run does first) on a ready userland leaves it alone and says so."""
    stamp = userland / emu_setup.STAMP
    before = (stamp.stat().st_mtime_ns, stamp.read_text(), (userland / emu_setup.SITE).stat().st_mtime_ns)
    result = runner.invoke(app, ["device", "setup", "emu:rpi5"])
    assert result.exit_code == 0, result.output
    assert f"arm64 userland ready: {userland}" in result.output.replace("\n", "")
    assert "debootstrap" not in result.output and "pip:" not in result.output  # nothing was fetched again
    assert (stamp.stat().st_mtime_ns, stamp.read_text(), (userland / emu_setup.SITE).stat().st_mtime_ns) == before
    assert "aarch64" in result.output and emu_setup.ready()  # the probe ran on the emulated board
    local = runner.invoke(app, ["device", "setup", "local"])
    assert local.exit_code == 0 and "nothing to prepare" in local.output
    unknown = runner.invoke(app, ["device", "setup", "emu:rpi9"])
    assert unknown.exit_code == 2 and "emu:rpi5" in unknown.output and "Traceback" not in unknown.output


def test_device_check_shows_the_emulated_isa(userland):
    for device, has_dot in (("emu:rpi4", False), ("emu:rpi5", True)):
        result = runner.invoke(app, ["device", "check", device, "--json", "-"])
        assert result.exit_code == 0, result.output
        info = json.loads(result.stdout)
        assert info["device"]["emulated"] and info["machine"]["machine"] == "aarch64"
        assert ("asimddp" in info["machine"]["isa_flags"]) is has_dot
        assert info["versions"]["onnxruntime"] and info["versions"]["ai-edge-litert"] and info["missing"] == []
    unknown = runner.invoke(app, ["device", "check", "emu:rpi9"])
    assert unknown.exit_code == 2 and "emu:rpi5" in unknown.output


@pytest.fixture(scope="module")
def minilm_bundles(userland, tmp_path_factory) -> list[Path]:
    """The real all-MiniLM-L6-v2, converted on x86 for the Raspberry Pi 5 profile (ONNX and LiteRT int8)."""
    from edge_bert.convert.pipeline import convert

    outcomes = convert(
        None, "rpi5", tmp_path_factory.mktemp("minilm-rpi5"), recipes=["dynamic-int8"], log=lambda _: None
    )
    assert all(o.passed for o in outcomes), [o.error for o in outcomes]
    return [o.bundle for o in outcomes]


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_minilm_validates_on_emulated_board(minilm_bundles, device):
    for bundle in minilm_bundles:
        host = validate(bundle)
        result = validate_on(open_device(device), bundle).to_dict()
        assert result["passed"], result["gates"]
        assert abs(result["parity"]["mean_cosine"] - host["parity"]["mean_cosine"]) < 2e-3
        assert result["parity"]["worst_cosine"] >= 0.97
