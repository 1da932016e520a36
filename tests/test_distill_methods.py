"""`edge-bert distill --method albert|mobilebert` on tiny real models: students of another family built from
a BERT or DistilBERT teacher, with the structure each paper describes, trained (every loss term falls on a
fixed seed, deterministic, resumable), converted (ONNX and LiteRT, full-integer for MobileBERT) and validated
on real SST-2 text. No mocks. The CLINC150 / SST-2 figures: docs/benchmarks.md (commands there)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from conftest import SHARED_DATA, minilm_dir, save_tiny_model, sst2_dev
from test_distill import history, save_teacher, write_tsv
from transformers.models.mobilebert.modeling_mobilebert import NoNorm
from typer.testing import CliRunner

from edge_bert.cli import app
from edge_bert.evaldata import read_labelled
from edge_bert.training.distill import DistillSettings, distill
from edge_bert.training.methods import albert, mobilebert
from edge_bert.training.setup import Job

AUTO = "AutoModelForSequenceClassification"
PROFILES = Path(__file__).parent / "profiles"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return save_teacher(tmp_path_factory.mktemp("teacher") / "teacher")


@pytest.fixture(scope="module")
def distilbert_teacher(tmp_path_factory) -> Path:
    return save_tiny_model("distilbert", tmp_path_factory.mktemp("dteacher") / "teacher")


@pytest.fixture(scope="module")
def data_files(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    return write_tsv(root / "train.tsv", sst2_dev(limit=160)), write_tsv(
        root / "dev.tsv", sst2_dev(limit=64, offset=160)
    )


def settings(method: str, **extra) -> DistillSettings:
    base = {"layers": 2, "method": method, "epochs": 3, "pred_epochs": 2, "lr": 1e-3, "embedding_size": 16}
    return DistillSettings(**{**base, "bottleneck": 16, "min_pct_of_teacher": 0, **extra})


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_albert_student_shares_one_layer_and_factorises_the_teachers_embedding(family, teacher, distilbert_teacher):
    path = teacher if family == "bert" else distilbert_teacher
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path)
    student, mapping = albert.build(model, settings("albert", layers=3), AUTO)
    config = student.config
    assert type(student).__name__ == "AlbertForSequenceClassification"
    assert mapping == ([1, 3, 4] if family == "bert" else [1, 1, 2])  # g(m) = round(m L / N)
    assert config.num_hidden_layers == 3 and config.num_hidden_groups == 1 and config.inner_group_num == 1
    assert config.hidden_size == 32 and config.embedding_size == 16
    # one parameter set for the 3 layers of compute
    layer_params = [n for n, _ in student.named_parameters() if ".albert_layer_groups." in n]
    assert all(".albert_layer_groups.0.albert_layers.0." in n for n in layer_params) and len(layer_params) == 16
    # the shared layer is the average of the teacher's layers
    prefix = "bert.encoder.layer" if family == "bert" else "distilbert.transformer.layer"
    name = "attention.self.query.weight" if family == "bert" else "attention.q_lin.weight"
    teacher_layers = model.config.num_hidden_layers
    average = torch.stack([model.state_dict()[f"{prefix}.{i}.{name}"] for i in range(teacher_layers)]).mean(0)
    shared = student.albert.encoder.albert_layer_groups[0].albert_layers[0]
    torch.testing.assert_close(shared.attention.query.weight, average)
    # vocab x E times E x H reproduces the teacher's word embeddings within the rank-E truncation error
    words = model.get_input_embeddings().weight.detach()
    singular = torch.linalg.svdvals(words)
    truncation = singular[16:].pow(2).sum().sqrt()
    _, _, vh = torch.linalg.svd(words, full_matrices=False)
    product = student.get_input_embeddings().weight @ vh[:16]
    assert student.get_input_embeddings().weight.shape == (30522, 16)
    torch.testing.assert_close((product - words).norm(), truncation, rtol=1e-3, atol=1e-3)
    assert truncation < words.norm()  # and the truncation really dropped something: E < H
    mapping_in = student.albert.encoder.embedding_hidden_mapping_in
    assert mapping_in.weight.shape == (32, 16)


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_mobilebert_student_has_bottlenecks_nonorm_and_the_teachers_width(family, teacher, distilbert_teacher):
    path = teacher if family == "bert" else distilbert_teacher
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path)
    student, mapping = mobilebert.build(model, settings("mobilebert"), AUTO)
    config = student.config
    assert type(student).__name__ == "MobileBertForSequenceClassification"
    assert config.hidden_size == 32 and config.intra_bottleneck_size == 16 and config.true_hidden_size == 16
    assert config.num_feedforward_networks == 4 and config.hidden_act == "relu" and config.intermediate_size == 64
    assert config.normalization_type == "no_norm" and config.embedding_size == 16 and config.trigram_input
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in student.mobilebert.encoder.modules())
    assert sum(isinstance(m, NoNorm) for m in student.mobilebert.encoder.modules()) > 0
    layer = student.mobilebert.encoder.layer[0]
    assert layer.bottleneck.input.dense.weight.shape == (16, 32)  # inter-block 32 -> intra-block 16
    assert layer.output.bottleneck.dense.weight.shape == (32, 16)
    tokens = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    out = student.mobilebert(input_ids=tokens, output_hidden_states=True)
    assert [h.shape[-1] for h in out.hidden_states] == [32] * 3  # feature maps at the teacher's width
    assert mapping == ([2, 4] if family == "bert" else [1, 2])
    torch.testing.assert_close(
        student.mobilebert.embeddings.position_embeddings.weight, model.base_model.embeddings.position_embeddings.weight
    )


def test_albert_terms_fall_deterministically(teacher, data_files, tmp_path: Path) -> None:
    train, dev = (read_labelled(p) for p in data_files)
    summary = distill(Job(str(teacher), tmp_path / "a"), train, settings("albert"), dev)
    assert summary["method"] == "albert" and summary["layer_map"] == [2, 4]
    stage1, stage2 = history(tmp_path / "a", "intermediate"), history(tmp_path / "a", "prediction")
    for term in ("emb", "hid", "att"):
        assert stage1[0][term] > 0 and stage1[-1][term] < stage1[0][term], (term, stage1)
    assert stage2[-1]["pred"] < stage2[0]["pred"]
    side = summary["side_by_side"]
    assert side["student"]["model_type"] == "albert" and side["student"]["parameters"] < side["teacher"]["parameters"]
    assert 0 < side["student"]["flops_at_128"] < side["teacher"]["flops_at_128"]
    again = distill(Job(str(teacher), tmp_path / "b"), train, settings("albert"), dev)
    assert again["loss_per_epoch"] == summary["loss_per_epoch"]
    assert transformers.AutoConfig.from_pretrained(tmp_path / "a").model_type == "albert"


def test_mobilebert_progressive_stages_fall_and_resume(teacher, data_files, tmp_path: Path) -> None:
    """Each layer's stage lowers its feature-map and attention terms; a run killed in the prediction stage
    resumes there and ends with the weights of an uninterrupted run."""
    train, dev = (read_labelled(p) for p in data_files)
    clean = distill(Job(str(teacher), tmp_path / "clean"), train, settings("mobilebert"), dev)
    for stage in ("layer1", "layer2"):
        epochs = history(tmp_path / "clean", stage)
        for term in ("fmt", "at"):
            assert epochs[-1][term] < epochs[0][term], (stage, term, epochs)
    assert history(tmp_path / "clean", "prediction")[-1]["pred"] < history(tmp_path / "clean", "prediction")[0]["pred"]

    def interrupt(info: dict) -> None:
        if info["stage"] == "prediction" and info["epoch"] == 2:
            raise KeyboardInterrupt

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        distill(Job(str(teacher), out), train, settings("mobilebert"), dev, progress=interrupt)
    # lower layers frozen while the upper one learns: stage 2 left layer 1 and the embeddings as stage 1 made them
    stages = out.parent / (out.name + ".partial") / "checkpoint"
    first, second = (torch.load(stages / f"layer{n}.pt", weights_only=True)["modules"]["student"] for n in (1, 2))
    for name, value in first.items():
        moved = not torch.equal(value, second[name])
        assert moved == (".encoder.layer.1." in name), name
    resumed = distill(Job(str(teacher), out), train, settings("mobilebert"), dev)
    assert resumed["loss_per_epoch"] == clean["loss_per_epoch"]
    assert (out / "training_log.jsonl").read_text().count('"event": "resumed"') == 3  # layer1, layer2, prediction
    load = transformers.AutoModelForSequenceClassification.from_pretrained
    a, b = (load(p).state_dict() for p in (out, tmp_path / "clean"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_embedding_teacher_takes_both_methods(data_files, tmp_path: Path) -> None:
    emb_teacher = save_teacher(tmp_path / "emb", task="feature-extraction")
    texts = read_labelled(data_files[0])
    for method in ("albert", "mobilebert"):
        summary = distill(Job(str(emb_teacher), tmp_path / method), texts, settings(method, min_neighbour_recall=0))
        assert summary["gate"]["metric"] == "neighbour_recall" and summary["method"] == method
        assert transformers.AutoConfig.from_pretrained(tmp_path / method).architectures[0].endswith("Model")
        final = history(tmp_path / method, "prediction")
        assert final[-1]["cos"] < final[0]["cos"]


def test_cli_methods_convert_and_validate(teacher, distilbert_teacher, data_files, tmp_path: Path) -> None:
    """CLI: --method (and the deprecated --recipe, with its warning), the teacher/student table; the students
    convert to ONNX fp32 + dynamic int8 (the untrained-model profile's int8 gates: 2 epochs on 160 rows leave
    near-tied logits) and pass `validate --data` through the runner."""
    runner = CliRunner()
    train, dev = (str(p) for p in data_files)
    # lr 1e-4: at ALBERT's default 3e-4 one epoch on 160 rows leaves this tiny student's logits tied closer
    # still, and int8 flips 19 % of its answers (measured: agreement 0.81 < the profile's 0.9, rescue fails)
    common = ["--data", train, "--eval-data", dev, "--layers", "2", "--epochs", "1", "--pred-epochs", "1"]
    small = ["--embedding-size", "16", "--bottleneck", "16", "--min-pct-of-teacher", "0", "--lr", "1e-4"]
    runs = [("albert", teacher, "--method"), ("mobilebert", distilbert_teacher, "--recipe")]
    for method, source, flag in runs:
        out = tmp_path / method
        result = runner.invoke(app, ["distill", str(source), *common, *small, flag, method, "--out", str(out)])
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.split())
        assert "teacher and student" in text and "GFLOPs @128" in text
        assert ("--recipe is deprecated, use --method" in text) == (flag == "--recipe")
        result = runner.invoke(
            app,
            ["convert", str(out), "--target", str(PROFILES / "tiny-random.toml"), "--recipe", "fp32",
             "--recipe", "dynamic-int8", "--out", str(tmp_path / "bundles"), "--eval-data", dev],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    bundles = sorted((tmp_path / "bundles").iterdir())
    assert len(bundles) == 4
    for bundle in bundles:
        result = runner.invoke(app, ["validate", str(bundle), "--data", dev])
        assert result.exit_code == 0, (bundle.name, result.output)


def test_unknown_method_is_one_clear_error(teacher, data_files, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["distill", str(teacher), "--data", str(data_files[0]), "--layers", "2", "--method", "mobile",
              "--out", str(tmp_path / "s")],
    )  # fmt: skip
    assert result.exit_code == 2 and "unknown method 'mobile'" in result.output and "Traceback" not in result.output


def wide_teacher() -> transformers.BertForSequenceClassification:
    """Hidden 128 (so a layer weighs: 3 unshared copies would add 27 % to an ALBERT student's file)."""
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512, num_labels=2
    )
    return transformers.BertForSequenceClassification(config).eval()


def convert_student(module, name: str, profile: str, recipes: list[str], tmp_path: Path, **extra) -> tuple[dict, int]:
    """Build the method's student from the wide teacher (structure, no training), convert it; outcomes by recipe."""
    from edge_bert.convert.pipeline import convert

    student, _ = module.build(wide_teacher(), settings(name, **{"bottleneck": 32, **extra}), AUTO)
    student.save_pretrained(tmp_path / name)
    transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(tmp_path / name)
    texts = [t for t, _ in sst2_dev(limit=32)]
    outcomes = convert(str(tmp_path / name), PROFILES / profile, tmp_path / "out", recipes=recipes, texts=texts)
    return {o.recipe: o for o in outcomes}, 4 * sum(p.numel() for p in student.parameters())


#: file bytes / fp32 parameter bytes. One copy of the shared layer: ONNX 1.0 (+3 % graph), LiteRT measured
#: 1.045 (3 signatures, seq 16/32/64); 3 more copies of the layer would make 1.27. int8: ONNX <= 30 % (the
#: issue's aim); LiteRT dynamic-int8 measured 0.349 (0.436 before its per-row embedding scales were stored
#: once for the 3 signatures, flatbuffer.share_quantization): this test student is 88 % vocabulary table, whose
#: 30522 scales and zero points (12 bytes a row) weigh 17 % of its 1-byte rows.
SHARES = {
    "tiny-random.toml": {"fp32": (0.95, 1.03), "dynamic-int8": (0.0, 0.30)},
    "tiny-random-tflite.toml": {"fp32": (0.95, 1.06), "dynamic-int8": (0.0, 0.36)},
}


@pytest.mark.parametrize(
    "profile", ["tiny-random.toml", pytest.param("tiny-random-tflite.toml", marks=pytest.mark.slow)]
)
def test_albert_student_files_hold_the_shared_layer_once(profile, tmp_path: Path) -> None:
    """ONNX and LiteRT: the fp32 file is the parameter bytes - one copy of the shared layer."""
    outcomes, parameters = convert_student(
        albert, "albert", profile, ["fp32", "dynamic-int8"], tmp_path, layers=4, embedding_size=64
    )
    shares = {
        r: (o.passed, o.error, o.model_bytes and round(o.model_bytes / parameters, 4)) for r, o in outcomes.items()
    }
    assert all(passed for passed, _, _ in shares.values()), shares
    for recipe, (low, high) in SHARES[profile].items():
        assert low <= shares[recipe][2] <= high, (recipe, shares)


@pytest.mark.slow
def test_mobilebert_student_converts_with_full_integer_litert(tmp_path: Path) -> None:
    outcomes, _ = convert_student(
        mobilebert, "mobilebert", "tiny-random-tflite.toml", ["fp32", "full-int8", "full-int16x8"], tmp_path
    )
    verdicts = {r: (o.passed, o.error) for r, o in outcomes.items()}
    assert set(verdicts) == {"fp32", "full-int8", "full-int16x8"}
    assert all(passed for passed, _ in verdicts.values()), verdicts


@pytest.fixture(scope="module")
def clinc150_teacher(tmp_path_factory) -> tuple[Path, object, object]:
    """The README's CLINC150 teacher: embedded MiniLM, `finetune --preset clinc150` (about 6 CPU-minutes)."""
    from edge_bert.training.finetune import finetune, settings_for

    clinc = SHARED_DATA / "clinc150" / "data_full.json"
    train, test = read_labelled(clinc, split="train"), read_labelled(clinc, split="test")
    path = tmp_path_factory.mktemp("clinc150") / "teacher"
    finetune(Job(None, path), train, settings_for("clinc150"), test)
    return path, train, test


@pytest.mark.slow
@pytest.mark.parametrize(("method", "layers"), [("albert", 3), ("mobilebert", 4)])
def test_clinc150_students_reach_their_goal_with_the_defaults(method, layers, clinc150_teacher, tmp_path) -> None:
    """The issue's figures (docs/benchmarks.md): each method's default student keeps >= 95 % of the teacher on
    CLINC150 test. About 10 CPU-minutes each after the teacher; not in .ci/run (its budget), run by hand."""
    teacher, train, test = clinc150_teacher
    summary = distill(Job(str(teacher), tmp_path / method), train, DistillSettings(layers=layers, method=method), test)
    assert summary["eval"]["accuracy_pct_of_teacher"] >= 95.0, summary["eval"]
