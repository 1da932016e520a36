"""`edge-bert distill` on tiny real models: a 4-layer BERT teacher -> 2-layer students (DistilBERT and
TinyBERT recipes), an embedding teacher -> an embedding student; the students convert and validate.

Real models, real SST-2 text, no mocks. Full-size CLINC150/SST-2 runs: the slow test at the end and
scripts/benchmark_distill.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from conftest import SHARED_DATA, minilm_dir, requires, sst2_dev, tiny_config
from typer.testing import CliRunner

from edge_bert.cli import app
from edge_bert.evaldata import LabelledData, read_labelled
from edge_bert.training.data import STAGING_SUFFIX
from edge_bert.training.distill import DistillSettings, distill
from edge_bert.training.setup import Job
from edge_bert.training.student import build_student, distilbert_layer_map, tinybert_layer_map

needs_data = requires(SHARED_DATA.is_dir(), f"labelled data not found at {SHARED_DATA}")
LABELS = ["negative", "positive"]


def save_teacher(out: Path, task: str = "text-classification", layers: int = 4, seed: int = 0) -> Path:
    """A tiny 4-layer BERT (hidden 32, 4 heads) with the real MiniLM tokenizer."""
    torch.manual_seed(seed)
    config = tiny_config("bert", num_hidden_layers=layers)
    config.id2label, config.label2id = dict(enumerate(LABELS)), {n: i for i, n in enumerate(LABELS)}
    config.num_labels = 2
    model_class = (
        transformers.BertForSequenceClassification if task == "text-classification" else transformers.BertModel
    )
    model_class(config).save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return out


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> Path:
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{LABELS[y]}\n" for t, y in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return save_teacher(tmp_path_factory.mktemp("teacher") / "teacher")


@pytest.fixture(scope="module")
def data_files(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    return write_tsv(root / "train.tsv", sst2_dev(limit=160)), write_tsv(
        root / "dev.tsv", sst2_dev(limit=64, offset=160)
    )


def test_layer_maps_follow_the_papers() -> None:
    assert distilbert_layer_map(12, 6) == [0, 2, 4, 7, 9, 11]  # Sanh et al.'s extraction
    assert distilbert_layer_map(6, 3) == [0, 2, 5]
    assert tinybert_layer_map(12, 4) == [3, 6, 9, 12]  # g(m) = 3m
    assert tinybert_layer_map(6, 3) == [2, 4, 6]


def test_student_layers_are_the_teachers(teacher: Path) -> None:
    model = transformers.BertForSequenceClassification.from_pretrained(teacher)
    student, mapping = build_student(model, 2, None, "distilbert")
    assert type(student) is type(model) and student.config.num_hidden_layers == 2 and mapping == [0, 3]
    t_state, s_state = model.state_dict(), student.state_dict()
    for key, value in s_state.items():
        source = key.replace(".layer.0.", ".layer.0.").replace(".layer.1.", ".layer.3.")
        torch.testing.assert_close(value, t_state[source], rtol=0, atol=0)
    # and a layer the student does not take really differs from the one it does
    name = "bert.encoder.layer.1.attention.self.query.weight"
    assert not torch.equal(s_state[name], t_state["bert.encoder.layer.1.attention.self.query.weight"])
    narrow, tiny_map = build_student(model, 2, 16, "tinybert")
    assert narrow.config.hidden_size == 16 and narrow.config.intermediate_size == 32 and tiny_map == [2, 4]


def test_distilbert_family_teacher(data_files, tmp_path: Path) -> None:
    """A DistilBERT-architecture teacher: same recipe, layers found by the registry's field names."""
    from conftest import save_tiny_model

    teacher = save_tiny_model("distilbert", tmp_path / "distilbert-teacher")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(teacher)
    student, mapping = build_student(model, 1, None, "distilbert")
    assert student.config.n_layers == 1 and mapping == [0]
    torch.testing.assert_close(
        student.distilbert.transformer.layer[0].ffn.lin1.weight, model.distilbert.transformer.layer[0].ffn.lin1.weight
    )
    summary = distill(
        Job(str(teacher), tmp_path / "s"), read_labelled(data_files[0]), DistillSettings(layers=1, epochs=1)
    )
    assert transformers.AutoConfig.from_pretrained(tmp_path / "s").model_type == "distilbert"
    assert summary["recipe"] == "distilbert"


def history(out: Path, stage: str) -> list[dict]:
    records = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("event") == "epoch" and r["stage"] == stage]


def test_distilbert_recipe_end_to_end(teacher: Path, data_files, tmp_path: Path) -> None:
    """Loss terms present and decreasing; a normal checkpoint that converts and validates on the data."""
    train, dev = (read_labelled(p) for p in data_files)
    out = tmp_path / "student"
    summary = distill(Job(str(teacher), out), train, DistillSettings(layers=2, epochs=4, lr=5e-4), dev)
    epochs = history(out, "distill")
    assert len(epochs) == 4 and {"kd", "ce", "cos", "loss"} <= set(epochs[0])
    for term in ("kd", "cos", "loss"):
        assert epochs[-1][term] < epochs[0][term], (term, epochs)
    assert summary["recipe"] == "distilbert" and summary["student_parameters"] < summary["teacher_parameters"]
    assert summary["eval"]["rows"] == 64 and "accuracy_pct_of_teacher" in summary["eval"]
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(out)
    assert loaded.config.num_hidden_layers == 2 and loaded.config.id2label == {0: "negative", 1: "positive"}
    assert not (out.parent / (out.name + STAGING_SUFFIX)).exists()
    assert json.loads((out / "eval_summary.json").read_text())["recipe"] == "distilbert"
    # deterministic on a fixed seed: a second run gives the same weights
    again = distill(Job(str(teacher), tmp_path / "again"), train, DistillSettings(layers=2, epochs=4, lr=5e-4), dev)
    assert again["loss_per_epoch"] == summary["loss_per_epoch"]


def test_tinybert_recipe_terms_decrease(teacher: Path, data_files, tmp_path: Path) -> None:
    train, dev = (read_labelled(p) for p in data_files)
    out = tmp_path / "tiny"
    summary = distill(
        Job(str(teacher), out), train, DistillSettings(layers=2, hidden_size=16, epochs=4, pred_epochs=3, lr=1e-3), dev
    )
    assert summary["recipe"] == "tinybert" and summary["hidden_size"] == 16 and summary["layer_map"] == [2, 4]
    stage1, stage2 = history(out, "intermediate"), history(out, "prediction")
    for term in ("emb", "hid", "att"):
        assert stage1[0][term] > 0 and stage1[-1][term] < stage1[0][term], (term, stage1)
    assert stage2[-1]["pred"] < stage2[0]["pred"]
    assert transformers.AutoConfig.from_pretrained(out).hidden_size == 16


def test_unlabelled_texts_distil_with_soft_targets_alone(teacher: Path, tmp_path: Path) -> None:
    texts = LabelledData([t for t, _ in sst2_dev(limit=96)], None, {"name": "texts"})
    summary = distill(Job(str(teacher), tmp_path / "s"), texts, DistillSettings(layers=1, epochs=2, lr=5e-4))
    terms = summary["loss_per_epoch"]["distill"]
    assert "ce" not in terms[0] and terms[-1]["kd"] < terms[0]["kd"]
    assert summary["gate"] is None and summary["passed"]


def test_resume_after_interruption_gives_the_same_model(teacher: Path, data_files, tmp_path: Path) -> None:
    """Kill the run after epoch 1 (a progress callback raises); rerunning resumes and matches a clean run."""
    train = read_labelled(data_files[0])
    settings = DistillSettings(layers=2, epochs=2, lr=5e-4)

    def interrupt(info: dict) -> None:
        if info["epoch"] == 2:
            raise KeyboardInterrupt

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        distill(Job(str(teacher), out), train, settings, progress=interrupt)
    assert (tmp_path / ("resumed" + STAGING_SUFFIX) / "checkpoint" / "distill.pt").is_file() and not out.exists()
    resumed = distill(Job(str(teacher), out), train, settings)
    clean = distill(Job(str(teacher), tmp_path / "clean"), train, settings)
    assert resumed["loss_per_epoch"] == clean["loss_per_epoch"]
    log = (out / "training_log.jsonl").read_text()
    assert '"event": "resumed"' in log
    a, b = (
        transformers.AutoModelForSequenceClassification.from_pretrained(p).state_dict()
        for p in (out, tmp_path / "clean")
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_embedding_teacher_and_convert(data_files, tmp_path: Path) -> None:
    """Embedding teacher -> embedding student (pooled cosine/MSE), gated by neighbour recall; then CLI
    convert + validate --data on the student."""
    teacher = save_teacher(tmp_path / "emb-teacher", task="feature-extraction")
    texts = LabelledData([t for t, _ in sst2_dev(limit=200)], None, {"name": "sst2"})
    out = tmp_path / "emb-student"
    summary = distill(
        Job(str(teacher), out), texts, DistillSettings(layers=2, epochs=3, lr=5e-4, min_neighbour_recall=0.0)
    )
    assert summary["recipe"] == "embedding" and summary["gate"]["metric"] == "neighbour_recall"
    epochs = history(out, "distill")
    assert epochs[-1]["cos"] < epochs[0]["cos"]
    assert 0.0 <= summary["eval"]["neighbour_recall"] <= 1.0
    assert transformers.AutoConfig.from_pretrained(out).architectures == ["BertModel"]
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "convert",
            str(out),
            "--target",
            "x86",
            "--format",
            "onnx",
            "--recipe",
            "fp32",
            "--out",
            str(tmp_path / "bundles"),
            "--eval-data",
            str(data_files[1]),
        ],
    )
    assert result.exit_code == 0, result.output
    bundle = next((tmp_path / "bundles").iterdir())
    result = runner.invoke(app, ["validate", str(bundle), "--data", str(data_files[1])])
    assert result.exit_code == 0, result.output


def test_cli_distill_both_recipes_convert_and_validate(teacher: Path, data_files, tmp_path: Path) -> None:
    runner = CliRunner()
    train, dev = (str(p) for p in data_files)
    for name, extra in (("distil", []), ("tiny", ["--hidden-size", "16"])):
        out = tmp_path / name
        result = runner.invoke(
            app,
            [
                "distill",
                str(teacher),
                "--data",
                train,
                "--eval-data",
                dev,
                "--layers",
                "2",
                "--out",
                str(out),
                "--epochs",
                "1",
                "--pred-epochs",
                "1",
                "--min-pct-of-teacher",
                "0",
                *extra,
            ],
        )
        assert result.exit_code == 0, result.output
        result = runner.invoke(
            app,
            [
                "convert",
                str(out),
                "--target",
                "x86",
                "--format",
                "onnx",
                "--recipe",
                "fp32",
                "--out",
                str(tmp_path / "bundles"),
                "--eval-data",
                dev,
            ],
        )
        assert result.exit_code == 0, result.output
    for bundle in (tmp_path / "bundles").iterdir():
        result = runner.invoke(app, ["validate", str(bundle), "--data", dev])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "5"], "needs 1..4 layers (the teacher has 4)"),
        (["--layers", "2", "--hidden-size", "18"], "multiple of its 4 attention heads"),
        (["--layers", "2", "--recipe", "embedding"], "needs a feature-extraction teacher"),
    ],
)
def test_impossible_students_are_one_clear_error(teacher: Path, data_files, tmp_path: Path, args, message) -> None:
    result = CliRunner().invoke(
        app, ["distill", str(teacher), "--data", str(data_files[0]), "--out", str(tmp_path / "s"), *args]
    )
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "s").exists() and not (tmp_path / ("s" + STAGING_SUFFIX)).exists()


def test_eval_label_the_teacher_lacks_is_named(teacher: Path, data_files, tmp_path: Path) -> None:
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\na fine film\tpositive\nso so\tmixed\n")
    args = ["distill", str(teacher), "--data", str(data_files[0]), "--eval-data", str(dev), "--layers", "2"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "'mixed' (1 rows)" in result.output, result.output
    assert not (tmp_path / "s").exists() and not (tmp_path / ("s" + STAGING_SUFFIX)).exists()


def test_failed_gate_exits_1_but_writes_the_student(teacher: Path, data_files, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "distill",
            str(teacher),
            "--data",
            str(data_files[0]),
            "--eval-data",
            str(data_files[1]),
            "--layers",
            "1",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "s"),
            "--min-pct-of-teacher",
            "1000",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "gate failed" in result.output and (tmp_path / "s" / "model.safetensors").is_file()


@needs_data
@pytest.mark.slow
def test_clinc150_three_layer_student_keeps_97_percent(tmp_path: Path) -> None:
    """Full size: the preset-fine-tuned MiniLM teacher, a 3-layer DistilBERT-recipe student (see README)."""
    from edge_bert.training.finetune import finetune, settings_for

    clinc = SHARED_DATA / "clinc150" / "data_full.json"
    train, test = read_labelled(clinc, split="train"), read_labelled(clinc, split="test")
    finetune(Job(None, tmp_path / "teacher"), train, settings_for("clinc150"), test)
    summary = distill(Job(str(tmp_path / "teacher"), tmp_path / "student"), train, DistillSettings(layers=3), test)
    assert summary["eval"]["accuracy_pct_of_teacher"] >= 97.0, summary["eval"]


def test_run_distill_prints_teacher_and_student_side_by_side(teacher: Path, data_files, tmp_path: Path) -> None:
    """`run TEACHER --distill 2 --data ...`: student trained, both converted, validated on the data, benched."""
    profile = Path(__file__).resolve().parent / "profiles" / "tiny-random.toml"
    train, dev = (str(p) for p in data_files)
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(teacher),
            "--distill",
            "2",
            "--data",
            train,
            "--eval-data",
            dev,
            "--target",
            str(profile),
            "--out",
            str(tmp_path / "bundles"),
            "--runs",
            "2",
        ],
    )
    table = result.output[result.output.index("edge-bert run --distill 2") :]
    assert "teacher" in table and "student" in table and "% of teacher" in table and "p50 @128 ms" in table
    # measured: exit 0 - the student and both bundles pass their gates (the student's % of teacher included);
    # seeded teacher, data and training, so a 1 here is a regression, not chance
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "bundles").iterdir())
    assert any(n.startswith("teacher-l2-") for n in names) and any(n.startswith("teacher-tiny") for n in names), names
    assert (tmp_path / "models" / "teacher-l2" / "model.safetensors").is_file()
    result = CliRunner().invoke(app, ["run", str(teacher), "--distill", "2"])
    assert result.exit_code == 2 and "--distill needs --data" in result.output
