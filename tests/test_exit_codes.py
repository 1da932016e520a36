"""Every verb keeps the same contract: exit 0 pass, 1 a gate failed, 2 unusable input (exactly one line on
stderr, no traceback), and with ``--json -`` stdout holds one JSON document and nothing else, whose
``passed`` agrees with the exit code. One table over all verbs, on tiny random models and real SST-2 rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import sst2_dev
from test_distill import save_teacher, write_tsv
from typer.testing import CliRunner

from edge_bert.cli import app

TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"
runner = CliRunner()


def one_recipe_profile(path: Path, recipe: str, section: str) -> Path:
    """The tiny-random profile with a single ONNX recipe (a run of it converts, validates and benches one)."""
    head = TINY_PROFILE.read_text().split("[onnx]")[0]
    path.write_text(f'{head}[onnx]\nopset = 17\noptimize = true\nrecipes = ["{recipe}"]\n\n{section}\n')
    return path


@pytest.fixture(scope="module")
def world(tiny_models, tmp_path_factory) -> dict[str, str]:
    """What the table's commands refer to: models, bundles, profiles, data, a reports directory."""
    root = tmp_path_factory.mktemp("exit-codes")
    model = tiny_models["distilbert"]
    bundles = root / "bundles"
    convert = ["convert", str(model), "--target", str(TINY_PROFILE), "--out", str(bundles), "--name", "t"]
    assert runner.invoke(app, [*convert, "--recipe", "fp32", "--recipe", "dynamic-int8"]).exit_code == 0
    fp32 = one_recipe_profile(
        root / "fp32.toml", "fp32", "[onnx.recipe.fp32]\ngates = { min_top1_agreement = 1.0, min_cosine = 0.9999 }"
    )
    strict = one_recipe_profile(
        root / "strict.toml",
        "dynamic-int8",
        "[onnx.recipe.dynamic-int8]\nper_channel = true\ngates = { max_rel_error = 1e-9 }",
    )
    reports, empty = root / "reports", root / "empty"
    empty.mkdir()
    fp32_bundle = next(bundles.glob("*-onnx-fp32"))
    assert runner.invoke(app, ["validate", str(fp32_bundle), "--report-dir", str(reports)]).exit_code == 0
    return {
        "model": str(model),
        "fp32_bundle": str(fp32_bundle),
        "int8_bundle": str(next(bundles.glob("*-onnx-dynamic-int8"))),
        "fp32_profile": str(fp32),
        "strict_profile": str(strict),
        "teacher": str(save_teacher(root / "teacher", layers=2)),
        "train": str(write_tsv(root / "train.tsv", sst2_dev(limit=64))),
        "dev": str(write_tsv(root / "dev.tsv", sst2_dev(limit=32, offset=64))),
        "reports": str(reports),
        "empty": str(empty),
        "missing": str(root / "does-not-exist"),
    }


TRAIN = ["--data", "{train}", "--eval-data", "{dev}", "--epochs", "1"]
#: (verb, expected exit code, arguments with {placeholders} from ``world``, whether it takes --json)
TABLE = [
    ("targets", 0, [], True),
    ("inspect", 0, ["{fp32_bundle}"], True),
    ("inspect", 2, ["{missing}"], True),
    ("validate", 0, ["{fp32_bundle}"], True),
    ("validate", 1, ["{int8_bundle}", "--profile", "{strict_profile}"], True),
    ("validate", 2, ["{missing}"], True),
    ("bench", 0, ["{fp32_bundle}", "--runs", "2", "--warmup", "0", "--seq-lengths", "16"], True),
    ("bench", 2, ["{fp32_bundle}", "--seq-lengths", "16,x"], True),
    ("bench", 2, ["{fp32_bundle}", "--threads", "1", "--thread-sweep", "1,2"], True),
    ("convert", 0, ["{model}", "--target", "{fp32_profile}", "--out", "{tmp}/b", "--recipe", "fp32"], True),
    ("convert", 1, ["{model}", "--target", "{strict_profile}", "--out", "{tmp}/b"], True),
    ("convert", 2, ["{missing}", "--target", "{fp32_profile}", "--out", "{tmp}/b"], True),
    ("run", 0, ["{model}", "--target", "{fp32_profile}", "--out", "{tmp}/b", "--runs", "1"], True),
    ("run", 1, ["{model}", "--target", "{strict_profile}", "--out", "{tmp}/b", "--runs", "1"], True),
    ("run", 2, ["{model}", "--target", "{fp32_profile}", "--runs", "0"], True),
    ("finetune", 0, ["{teacher}", *TRAIN, "--out", "{tmp}/m"], True),
    ("finetune", 1, ["{teacher}", *TRAIN, "--out", "{tmp}/m", "--min-accuracy", "1.0"], True),
    ("finetune", 2, ["{teacher}", "--data", "{missing}", "--out", "{tmp}/m"], True),
    ("distill", 0, ["{teacher}", *TRAIN, "--layers", "1", "--out", "{tmp}/s", "--min-pct-of-teacher", "0"], True),
    ("distill", 1, ["{teacher}", *TRAIN, "--layers", "1", "--out", "{tmp}/s", "--min-pct-of-teacher", "1e6"], True),
    ("distill", 2, ["{teacher}", *TRAIN, "--layers", "9", "--out", "{tmp}/s"], True),
    ("results", 0, ["{reports}"], True),
    ("results", 2, ["{empty}"], True),
    ("device check", 0, ["local"], True),
    ("device check", 2, ["bogus://board"], True),
    ("device setup", 0, ["local"], False),
    ("device setup", 2, ["emu:no-such-board"], True),
]


@pytest.mark.parametrize(("verb", "code", "args", "takes_json"), TABLE, ids=[f"{v}-{c}" for v, c, *_ in TABLE])
def test_exit_code(world, tmp_path, verb: str, code: int, args: list[str], takes_json: bool) -> None:
    argv = [*verb.split(), *(a.format(**world, tmp=tmp_path) for a in args)]
    # unusable input is refused the same with and without --json; without it stderr holds only the refusal
    result = runner.invoke(app, [*argv, "--json", "-"] if takes_json and code != 2 else argv)
    assert result.exit_code == code, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if code == 2:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    elif takes_json:
        document = json.loads(result.stdout)  # nothing but the document on stdout
        assert document["schema"].startswith("edge-bert/")
        if "passed" in document or code == 1:
            assert document["passed"] is (code == 0), document.get("passed")


def test_failed_gate_is_in_the_document(world, tmp_path) -> None:
    """A finetune gated out of reach reports the measured value under the threshold (and still writes OUT)."""
    argv = ["finetune", world["teacher"], *(a.format(**world) for a in TRAIN), "--out", str(tmp_path / "m")]
    result = runner.invoke(app, [*argv, "--min-accuracy", "1.0", "--json", "-"])
    gate = json.loads(result.stdout)["gate"]
    assert result.exit_code == 1 and gate["metric"] == "accuracy" and gate["value"] < gate["threshold"] == 1.0
    assert (tmp_path / "m" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("argv", "warning"),
    [
        (["results", "{reports}", "--format", "markdown"], "--format is deprecated, use --as"),
        (
            ["bench", "{fp32_bundle}", "--runs", "1", "--warmup", "0", "--seq-lengths", "16", "--threads", "1,2"],
            "--threads 1,2,... is deprecated, use --thread-sweep",
        ),
        (
            ["finetune", "{teacher}", *TRAIN, "--out", "{tmp}/m", "--threads", "1"],
            "--threads is deprecated, use --torch-threads",
        ),
    ],
)
def test_old_spellings_still_work_with_one_warning(world, tmp_path, argv: list[str], warning: str) -> None:
    result = runner.invoke(app, [a.format(**world, tmp=tmp_path) for a in argv])
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if "deprecated" in line] == [f"warning: {warning}"]


def test_run_distill_honours_json_and_device(world, tmp_path) -> None:
    """`run --distill` writes one run document (teacher and student bundles, the distillation summary) as the
    only stdout, and goes through --device: an unusable device is refused before anything trains."""
    argv = ["run", world["teacher"], "--distill", "1", "--data", world["train"], "--eval-data", world["dev"]]
    argv += ["--target", world["fp32_profile"], "--out", str(tmp_path / "b"), "--runs", "1"]
    refused = runner.invoke(app, [*argv, "--device", "emu:no-such-board"])
    assert refused.exit_code == 2 and "unknown emulated device" in refused.stderr
    assert not Path("models").exists()  # refused before the student trains (the tests run in tmp_path)
    result = runner.invoke(app, [*argv, "--json", "-"])
    document = json.loads(result.stdout)
    assert document["schema"] == "edge-bert/run/v1" and document["distill"]["command"] == "distill"
    assert [b["role"] for b in document["bundles"]] == ["teacher", "student"]
    assert all(b["validate"]["accuracy"]["rows"] == 32 for b in document["bundles"])
    assert result.exit_code == (0 if document["passed"] else 1)


def test_an_option_the_device_runner_does_not_know_is_an_error(world) -> None:
    """RUNNER_OPTIONS is the one map from the local functions' keywords to the device runner's options: a
    keyword it lacks fails loudly (before any copy) instead of silently not reaching the device."""
    from edge_bert.devices import open_device
    from edge_bert.devices.dispatch import on_device, validate_on

    transport = open_device("local")
    with pytest.raises(TypeError, match=r"unknown option.*colour"):
        on_device("bench", transport, colour="red")
    with pytest.raises(TypeError, match=r"unknown option.*shuffle"):
        validate_on(transport, Path(world["fp32_bundle"]), threads=1, shuffle=True)
    result = on_device("validate", transport, profile=world["fp32_profile"])(Path(world["fp32_bundle"]), threads=1)
    assert result.passed and result.device.kind == "local"
