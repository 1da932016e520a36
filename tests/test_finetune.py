"""`edge-bert finetune` (edge_bert/training/finetune.py): data readers on the real files, the cached
frozen-layer path against the standard forward, tiny-model runs through the CLI (deterministic,
convertible), presets, the label checks; the full CLINC150 preset is slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from conftest import SHARED_DATA, minilm_dir, requires, sst2_dev
from test_distill import save_teacher, write_tsv
from typer.testing import CliRunner

from edge_bert.cli import app
from edge_bert.evaldata import read_labelled
from edge_bert.training import finetune as ft
from edge_bert.training.setup import Job

needs_data = requires(SHARED_DATA.is_dir(), f"evaluation data not found at {SHARED_DATA}")
CLINC = SHARED_DATA / "clinc150" / "data_full.json"


@needs_data
def test_readers_parse_real_files() -> None:
    splits = {split: read_labelled(CLINC, split=split) for split in ("train", "val", "test")}
    assert {k: len(v) for k, v in splits.items()} == {"train": 15000, "val": 3000, "test": 4500}
    assert ft.label_names(splits["train"], splits["test"]) == sorted(set(splits["train"].labels))
    assert len(set(splits["train"].labels)) == 150 and "oos" not in splits["train"].labels
    sst2_train, sst2_dev_data = (
        read_labelled(SHARED_DATA / "sst2" / "train.tsv"),
        read_labelled(SHARED_DATA / "sst2" / "dev.tsv"),
    )
    assert (len(sst2_train), len(sst2_dev_data)) == (67349, 872)
    assert ft.label_names(sst2_train) == ["0", "1"] and sst2_dev_data.labels.count("1") == 444


def test_cached_path_matches_standard_forward() -> None:
    """Training runs on cached lower-layer states; they must give the HF model's own logits."""
    path = minilm_dir()
    model = transformers.BertForSequenceClassification.from_pretrained(path, num_labels=3).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    ids = [torch.tensor(tokenizer(t)["input_ids"]) for t in ("book a table for two", "hi")]
    for frozen in (0, 4, 5, 6):
        hidden, mask = ft.pad(ft.cache_frozen(model, ids, frozen))
        tokens, _ = ft.pad(ids)
        with torch.inference_mode():
            expected = model(input_ids=tokens, attention_mask=mask).logits
            got = ft.top_logits(model, hidden, mask, frozen)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("ft")
    base = save_teacher(root / "base", layers=4)
    return base, write_tsv(root / "train.tsv", sst2_dev(limit=160)), write_tsv(root / "dev.tsv", sst2_dev(64, 160))


def test_cli_finetune_converts_and_validates(files, tmp_path: Path) -> None:
    base, train, dev = files
    runner = CliRunner()
    args = ["finetune", str(base), "--data", str(train), "--eval-data", str(dev), "--epochs", "2", "--seed", "3"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "a"
    config = transformers.AutoConfig.from_pretrained(out)
    assert config.architectures == ["BertForSequenceClassification"]
    assert config.id2label == {0: "negative", 1: "positive"}
    summary = json.loads((out / "eval_summary.json").read_text())
    assert summary["eval"]["rows"] == 64 and 0 <= summary["eval"]["accuracy"] <= 1
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r.get("event") == "epoch"] == [1, 2]
    assert all("loss" in r and r["examples_per_s"] > 0 for r in log if "step" in r)
    # deterministic with --seed: the same command gives the same weights
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "b")]).exit_code == 0
    a, b = (transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / d).state_dict() for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # an existing OUT is not replaced without --overwrite
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "--overwrite" in result.output
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
            str(dev),
        ],
    )
    assert result.exit_code == 0, result.output
    bundle = next((tmp_path / "bundles").iterdir())
    assert runner.invoke(app, ["validate", str(bundle), "--data", str(dev)]).exit_code == 0


def test_frozen_layers_leave_the_bottom_untouched_and_presets_name_labels(files, tmp_path: Path) -> None:
    """The sst2 preset: 3 bottom layers frozen (cached path), SST-2's 0/1 become negative/positive."""
    base, _, _ = files
    rows = sst2_dev(limit=96)
    numeric = tmp_path / "numeric.tsv"
    numeric.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    ft.finetune(Job(str(base), tmp_path / "out"), read_labelled(numeric), ft.settings_for("sst2"))
    before = transformers.BertForSequenceClassification.from_pretrained(base).state_dict()
    after = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "out")
    assert after.config.id2label == {0: "negative", 1: "positive"}
    state = after.state_dict()
    for key in state:
        frozen = "embeddings" in key or any(f".layer.{i}." in key for i in range(3))
        if key.startswith("bert.") and "pooler" not in key:
            assert torch.equal(state[key], before[key]) == frozen, key


def test_label_only_in_eval_data_is_named(files, tmp_path: Path) -> None:
    base, train, _ = files
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\na fine film\tpositive\nso so\tmixed\nmeh\tmixed\n")
    result = CliRunner().invoke(
        app, ["finetune", str(base), "--data", str(train), "--eval-data", str(dev), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2, result.output
    assert "'mixed' (2 rows)" in result.output and "never occur in the training data" in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


def test_unknown_preset_and_too_many_frozen_layers_are_exit_2(files, tmp_path: Path) -> None:
    base, train, _ = files
    runner = CliRunner()
    for extra, message in ((["--preset", "imdb"], "unknown preset"), (["--frozen-layers", "9"], "--frozen-layers 9")):
        result = runner.invoke(app, ["finetune", str(base), "--data", str(train), "--out", str(tmp_path / "o"), *extra])
        assert result.exit_code == 2 and message in result.output, result.output


@needs_data
@pytest.mark.slow
def test_clinc150_preset_reaches_target(tmp_path: Path) -> None:
    train, test = read_labelled(CLINC, split="train"), read_labelled(CLINC, split="test")
    out = tmp_path / "model"
    summary = ft.finetune(Job(None, out), train, ft.settings_for("clinc150", seed=0), test)
    assert summary["eval"]["accuracy"] >= 0.94
    model = transformers.AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 150 and type(model).__name__ == "BertForSequenceClassification"
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "training_log.jsonl"):
        assert (out / name).is_file(), name
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    with torch.inference_mode():
        logits = model(**tokenizer(["what is my bank balance"], return_tensors="pt")).logits
    assert model.config.id2label[int(logits.argmax())] == "balance"
