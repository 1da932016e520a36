"""`edge-bert run` end to end, `--calibration-data`, `--revision` from a real (offline) hub cache, and a
profile's attempts vs required recipes - the paths no other test exercised."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import require_module, save_tiny_model, sst2_dev
from typer.testing import CliRunner

from edge_bert.bundle import open_bundle
from edge_bert.cli import app

PROFILES = Path(__file__).parent / "profiles"
runner = CliRunner()


def test_run_writes_json_reports_and_exit_code(tiny_models, tmp_path):
    out_json = tmp_path / "run.json"
    result = runner.invoke(
        app,
        ["run", str(tiny_models["bert"]), "--target", str(PROFILES / "tiny-random.toml"), "--out", str(tmp_path / "b"),
         "--runs", "2", "--json", str(out_json), "--report-dir", str(tmp_path / "r")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(out_json.read_text())
    assert document["schema"] == "edge-bert/run/v1" and document["passed"] is True
    recipes = sorted(b["validate"]["recipe"] for b in document["bundles"])
    assert recipes == ["dynamic-int8", "fp16", "fp32", "static-int8"]
    assert all(b["bench"]["latency"][0]["p50_ms"] > 0 for b in document["bundles"])
    assert len(list((tmp_path / "r").glob("*.validate.json"))) == 4  # --report-dir, not ./reports
    assert not Path("reports").exists()
    assert "edge-bert run: 4 bundles for target tiny-random" in result.output


def test_run_refuses_bad_input_like_validate(tiny_models, tmp_path):
    result = runner.invoke(app, ["run", str(tiny_models["bert"]), "--json", str(tmp_path / "no" / "x.json")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    result = runner.invoke(app, ["run", str(tiny_models["bert"]), "--runs", "0"])
    assert result.exit_code == 2 and "--runs must be between 1 and" in result.stderr
    assert not (tmp_path / "bundles").exists() and not Path("bundles").exists()  # stopped before converting


def test_calibration_data_is_what_static_int8_calibrates_on(tiny_models, tmp_path):
    texts = [t for t, _ in sst2_dev(limit=40)]
    calibration = tmp_path / "calibration.txt"
    calibration.write_text("\n".join(texts[:11]) + "\n", encoding="utf-8")
    result = runner.invoke(
        app,
        ["convert", str(tiny_models["bert"]), "--target", str(PROFILES / "tiny-random.toml"), "--out",
         str(tmp_path / "b"), "--recipe", "static-int8", "--calibration-data", str(calibration)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (bundle,) = (tmp_path / "b").iterdir()
    # 11 texts in the file, 64 allowed by the recipe: the calibration used exactly the file's texts
    assert open_bundle(bundle).manifest.recipe.settings["calibration_samples"] == 11


def test_attempt_recipe_refused_without_failing_convert(tiny_models, tmp_path):
    """The tiny TFLite profile's full-int8 is refused (int8 activations on an untrained model); as an
    attempt (required = false) the table still shows the refusal with its reason, and the exit is 0."""
    require_module("litert_torch", "the tflite extra is not installed")
    profile = (PROFILES / "tiny-random-tflite.toml").read_text()
    args = ["convert", str(tiny_models["bert"]), "--out", str(tmp_path / "b"), "--recipe", "fp32", "--recipe",
            "full-int8", "--texts", str(_texts(tmp_path))]  # fmt: skip
    required = tmp_path / "required.toml"
    required.write_text(profile.replace('name = "tiny-random-tflite"', 'name = "required"'))
    result = runner.invoke(app, [*args, "--target", str(required)])
    assert result.exit_code == 1 and "failed its parity gate" in result.output
    attempt = tmp_path / "attempt.toml"
    attempt.write_text(
        profile.replace('name = "tiny-random-tflite"', 'name = "attempt"')
        + "required = false\n"  # appended to the [tflite.recipe.full-int8] table, the file's last
    )
    result = runner.invoke(app, [*args, "--target", str(attempt), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "attempt: failed its parity gate" in " ".join(result.output.split())


def _texts(tmp_path: Path) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(t for t, _ in sst2_dev(limit=24)) + "\n", encoding="utf-8")
    return path


def _hub_cache(root: Path) -> tuple[str, str, str]:
    """A Hugging Face hub cache holding two revisions of one repo, laid out as huggingface_hub does."""
    repo = root / "models--edge-bert-test--tiny-bert"
    old, new = "a" * 40, "b" * 40
    for commit, seed in ((old, 1), (new, 2)):
        save_tiny_model("bert", repo / "snapshots" / commit, seed=seed)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(new)
    return "edge-bert-test/tiny-bert", old, new


def test_revision_selects_the_hub_snapshot(tmp_path):
    """--revision is passed to the hub loader: offline, from a real cache, the named commit is converted."""
    repo_id, old, _ = _hub_cache(tmp_path / "hub")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    outputs = {}
    for revision in (old, None):
        out = tmp_path / f"b-{revision}"
        argv = ["convert", repo_id, "--target", str(PROFILES / "tiny-random.toml"), "--out", str(out), "--recipe",
                "fp32", *(["--revision", revision] if revision else [])]  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "edge_bert.cli", *argv], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        (bundle,) = out.iterdir()
        opened = open_bundle(bundle)
        assert opened.manifest.model.source == repo_id and opened.manifest.model.revision == revision
        outputs[revision] = opened.golden()["output"]
    # the two snapshots hold different weights: the revision really chose what was converted
    assert not np.allclose(outputs[old], outputs[None])


def test_revision_with_a_local_directory_is_an_error(tiny_models):
    result = runner.invoke(app, ["convert", str(tiny_models["bert"]), "--revision", "v1"])
    assert result.exit_code == 2 and "names a hub revision" in result.stderr


def test_a_named_recipe_converts_only_the_formats_that_have_it(tiny_models, tmp_path):
    """`--recipe bf16` on x86-vnni (ONNX, LiteRT, OpenVINO) exports OpenVINO only; a recipe no format of the
    target has is one line and exit 2 before anything is exported (it failed after the LiteRT work before)."""
    require_module("openvino", "the openvino extra is not installed")
    args = ["convert", str(tiny_models["bert"]), "--target", "x86-vnni", "--out", str(tmp_path / "b")]
    result = runner.invoke(app, [*args, "--recipe", "bf16", "--texts", str(_texts(tmp_path))])
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["bert-x86-vnni-openvino-bf16"]
    result = runner.invoke(app, [*args, "--recipe", "fp8"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "recipe 'fp8' is in none of target x86-vnni" in lines[0]
    assert "Traceback" not in result.output
