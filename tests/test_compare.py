"""``edge-bert compare``: a tiny BERT teacher fine-tuned on real SST-2 rows, one student per method trained by
``distill`` inside the matrix, every bundle converted, validated on held-out SST-2 rows and benched here; a
second run retrains and redoes nothing; a student that cannot be trained fails its cells only. The matrix
spec's student tables are strict, and ``examples/hub.toml`` parses with its hub ids left as names."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from conftest import SHARED_DATA, requires, sst2_dev
from test_distill import save_teacher, write_tsv
from typer.testing import CliRunner

from edge_bert.cli import app
from edge_bert.errors import InputError
from edge_bert.matrix.spec import cells, read_matrix
from edge_bert.results.bench import BenchResult
from edge_bert.results.io import load_result
from edge_bert.results.validate import ValidateResult

ROOT = Path(__file__).parent.parent
TINY_PROFILE = ROOT / "tests" / "profiles" / "tiny-random.toml"
needs_data = requires(SHARED_DATA.is_dir(), f"labelled data not found at {SHARED_DATA}")
runner = CliRunner()


def test_the_hub_example_parses_with_hub_ids_as_names():
    spec, base = read_matrix(ROOT / "examples" / "hub.toml")
    found = cells(spec, base)
    by_id = {m.id: m for m in spec.models}
    assert [m.id for m in spec.models if m.reference] == ["bert-base"]
    assert by_id["bert-base"].source == "bert-base-uncased"
    methods = {m.source: m.method for m in spec.models}
    assert methods == {
        "bert-base-uncased": None,
        "distilbert-base-uncased-finetuned-sst-2-english": "distilbert",
        "huawei-noah/TinyBERT_General_4L_312D": "tinybert",
        "albert-base-v2": "albert",
        "google/mobilebert-uncased": "mobilebert",
        "sentence-transformers/all-MiniLM-L6-v2": None,
    }
    assert {c.model.source for c in found} == set(methods)  # a hub id is not taken for a path
    assert len(found) == 6 * 4 and len({c.key for c in found}) == len(found)


HEAD = 'name = "s"\ntargets = ["x86"]\nrecipes = ["fp32"]\ndevices = ["local"]\n'
TEACHER = '[[models]]\nid = "t"\nsource = "embedded"\n'
TRAIN = '[train]\nlocation = "train.tsv"\n'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (TRAIN + TEACHER + '[[models]]\nid = "s"\n[models.distill]\nteacher = "t"\nlayer = 2\n',
         "models[1].distill.layer: unknown key"),
        (TRAIN + TEACHER + '[[models]]\nid = "s"\n[models.distill]\nteacher = "t"\nlayers = 0\n',
         "models[1].distill.layers:"),
        (TRAIN + TEACHER + '[[models]]\nid = "s"\n[models.distill]\nteacher = "nobody"\nlayers = 2\n',
         "models[1].distill.teacher: 'nobody' is not the id of a model with a source"),
        (TEACHER + '[[models]]\nid = "s"\n[models.distill]\nteacher = "t"\nlayers = 2\n',
         "train: a distilled model needs the [train] table"),
        (TRAIN + TEACHER + '[[models]]\nid = "s"\nsource = "x"\n[models.distill]\nteacher = "t"\nlayers = 2\n',
         "models[1]: give either source or [models.distill]"),
        (TRAIN + '[[models]]\nid = "t"\n', "models[0]: give either source or [models.distill]"),
        ('[train]\nlocation = "a.tsv"\nrows = 3\n' + TEACHER, "train.rows: unknown key"),
    ],
)  # fmt: skip
def test_student_tables_are_strict(tmp_path, body, message):
    path = tmp_path / "m.toml"
    path.write_text(HEAD + body, encoding="utf-8")
    with pytest.raises(InputError, match=None) as caught:
        read_matrix(path)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "distilbert,quantum"], "--methods 'distilbert,quantum': expected distinct names among"),
        (["--data", "missing.tsv"], "--data missing.tsv: no such file"),
        (["--formats", "coreml"], "--formats: coreml not in tiny-random's formats"),
    ],
)
def test_bad_compare_input_is_one_line(tmp_path, args, message):
    teacher = save_teacher(tmp_path / "teacher")
    data = write_tsv(tmp_path / "d.tsv", [("a fine film", 1), ("dull", 0)])
    base = ["compare", str(teacher), "--data", str(data), "--eval-data", str(data), "--target", str(TINY_PROFILE)]
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


@pytest.fixture(scope="module")
def teacher_and_data(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A tiny 4-layer BERT fine-tuned on 300 SST-2 rows (2 epochs), and 64 held-out rows to evaluate on."""
    root = tmp_path_factory.mktemp("compare")
    train = write_tsv(root / "train.tsv", sst2_dev(limit=300))
    dev = write_tsv(root / "dev.tsv", sst2_dev(limit=64, offset=300))
    args = ["finetune", str(save_teacher(root / "base")), "--data", str(train), "--eval-data", str(dev)]
    result = runner.invoke(app, [*args, "--epochs", "2", "--seed", "0", "--out", str(root / "teacher")])
    assert result.exit_code == 0, result.output
    return root / "teacher", train, dev


def _compare(teacher: Path, train: Path, dev: Path, out: Path, methods: str):
    return runner.invoke(app, [
        "compare", str(teacher), "--data", str(train), "--eval-data", str(dev), "--target", str(TINY_PROFILE),
        "--recipes", "fp32", "--methods", methods, "--layers", "2", "--epochs", "1", "--pred-epochs", "1",
        "--seq-lengths", "16,32", "--runs", "3", "--threads", "1", "--out", str(out),
    ])  # fmt: skip


def _files(out: Path) -> dict[str, int]:
    """Students, results, records and bundle manifests with their modification times (ns)."""
    paths = [*out.glob("students/*/model.safetensors"), *(out / "results").iterdir(), *(out / "cells").iterdir(),
             *out.glob("bundles/*/*/manifest.json")]  # fmt: skip
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in paths}


@needs_data
def test_compare_trains_one_student_per_method_measures_each_and_resumes(teacher_and_data, tmp_path):
    teacher, train, dev = teacher_and_data
    out = tmp_path / "out"
    result = _compare(teacher, train, dev, out, "distilbert,albert")
    assert result.exit_code == 0, result.output
    assert "3 of 3 cells done, 0 required failed" in result.stderr
    spec = tomllib.loads((out / "MATRIX.toml").read_text())
    assert [(m["id"], m.get("method"), m.get("reference", False)) for m in spec["models"]] == [
        ("teacher", None, True), ("distilbert", "distilbert", False), ("albert", "albert", False)]  # fmt: skip
    students = {json.loads(p.read_text())["model_type"]: p.parent for p in out.glob("students/*/config.json")}
    assert sorted(students) == ["albert", "bert"]
    assert json.loads((students["bert"] / "config.json").read_text())["num_hidden_layers"] == 2  # teacher: 4
    # distill's factorised embedding (128) is wider than this teacher (32): compare asked for half its width
    assert json.loads((students["albert"] / "config.json").read_text())["embedding_size"] == 16

    index = json.loads((out / "matrix.json").read_text())
    assert {c["model"]: c["status"] for c in index["cells"]} == {"teacher": "done", "distilbert": "done",
                                                                 "albert": "done"}  # fmt: skip
    for cell in index["cells"]:
        checked, timed = load_result(out / cell["validate"]), load_result(out / cell["bench"])
        assert isinstance(checked, ValidateResult) and isinstance(timed, BenchResult)
        assert checked.bundle.startswith(f"{cell['model']}-tiny-random-onnx-") and checked.bundle_id == timed.bundle_id
        assert checked.accuracy is not None and checked.accuracy.rows == 64 and sorted(timed.p50_ms()) == [16, 32]
    # the student's bundle is the trained student's: convert read its directory (its bytes are the cell key)
    albert = next(c for c in index["cells"] if c["model"] == "albert")
    manifest = json.loads(next((out / "bundles").glob(f"{albert['key'].split('-')[0]}/*/manifest.json")).read_text())
    assert "albert" in json.dumps(manifest).lower()

    before = _files(out)
    again = _compare(teacher, train, dev, out, "distilbert,albert")
    assert again.exit_code == 0 and "3 of 3 cells done" in again.stderr, again.output
    assert _files(out) == before  # no student retrained, no cell converted, validated or benched again


@needs_data
@pytest.mark.slow
def test_a_student_that_cannot_be_trained_fails_its_cells_only(teacher_and_data, tmp_path):
    """One student asks for more layers than the teacher has: distill refuses it; the other is trained,
    converted, validated and benched, and the matrix exits 1 naming the reason. (slow: 62 s at load 12;
    the test above, the fast one, took 93 s there)"""
    teacher, train, dev = teacher_and_data
    spec = tmp_path / "m.toml"
    spec.write_text(
        f'name = "students"\ntargets = ["{TINY_PROFILE}"]\nformats = ["onnx"]\nrecipes = ["fp32"]\n'
        f'devices = ["local"]\nseq_lengths = [16]\nruns = 2\nwarmup = 1\nthreads = 1\n\n'
        f'[data]\nlocation = "{dev}"\n\n[train]\nlocation = "{train}"\nlimit = 100\n\n'
        f'[[models]]\nid = "teacher"\nsource = "{teacher}"\nreference = true\nrequired = false\n\n'
        '[[models]]\nid = "small"\nmethod = "distilbert"\n[models.distill]\nteacher = "teacher"\nlayers = 1\n'
        "epochs = 1\n\n"
        '[[models]]\nid = "huge"\nmethod = "distilbert"\n[models.distill]\nteacher = "teacher"\nlayers = 9\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = runner.invoke(app, ["matrix", str(spec), "--out", str(out)])
    assert result.exit_code == 1, result.output
    cells_ = {c["model"]: c for c in json.loads((out / "matrix.json").read_text())["cells"]}
    assert cells_["teacher"]["status"] == "done" and cells_["small"]["status"] == "done"
    huge = cells_["huge"]
    assert huge["status"] == "failed" and huge["exit_class"] == "input"
    assert "training the student" in huge["reason"] and "needs 1..4 layers (the teacher has 4)" in huge["reason"]
    assert load_result(out / cells_["small"]["bench"]).p50_ms()[16] > 0
    assert [p.name.split("-")[0] for p in (out / "students").iterdir() if p.is_dir()] == ["small"]
