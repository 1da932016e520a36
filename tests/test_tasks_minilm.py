"""Slow: the embedded MiniLM fine-tuned for question answering (SQuAD dev, first 38 articles; evaluated on
held-out articles) and for NER (WNUT-17), converted for x86-vnni (ONNX) with --eval-data, and validated
with --data: every int8 recipe keeps >= 99 % of its fp32 EM/F1 / entity F1, or the gate refused it with
the reason shown. Small subsets (minutes on 2 cores); the published figures are the README's commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED_DATA, requires

from edge_bert.convert.pipeline import convert
from edge_bert.evaldata import read_labelled
from edge_bert.training.finetune import FinetuneSettings, finetune
from edge_bert.training.setup import Job
from edge_bert.validate import validate

needs_data = requires(SHARED_DATA.is_dir(), f"labelled data not found at {SHARED_DATA}")
SQUAD = SHARED_DATA / "squad" / "dev-v1.1.json"
WNUT = SHARED_DATA / "ner"


def _convert_and_validate(model: Path, out: Path, data) -> None:
    outcomes = convert(str(model), "x86-vnni", out, formats=["onnx"], eval_data=data,
                       log=lambda _: None)  # fmt: skip
    assert outcomes
    for outcome in outcomes:
        if not outcome.passed:  # refused by a gate: the reason is shown, nothing is written
            assert outcome.error, outcome.recipe
            continue
        result = validate(outcome.bundle, data=data)
        metrics = result["accuracy"]["metrics"]
        assert result["passed"], (outcome.recipe, result["gates"])
        assert metrics["accuracy_pct_of_fp32"] >= 99.0, (outcome.recipe, metrics)


@pytest.mark.slow
@needs_data
def test_minilm_question_answering(tmp_path: Path) -> None:
    train = read_labelled(SQUAD, split="articles:0:38")
    held_out = read_labelled(SQUAD, split="articles:38:40", limit=100)
    settings = FinetuneSettings(epochs=1, max_train=600, frozen_layers=3, lr=3e-4, head_lr=2e-3, batch_size=16,
                                max_length=256)  # fmt: skip
    summary = finetune(Job(None, tmp_path / "qa"), train, settings, held_out)
    assert summary["train_loss_per_epoch"][0] < 5.0 and summary["eval"]["f1"] > 10.0, summary["eval"]
    _convert_and_validate(tmp_path / "qa", tmp_path / "bundles", held_out)


@pytest.mark.slow
@needs_data
def test_minilm_ner(tmp_path: Path) -> None:
    train = read_labelled(WNUT / "train.conll")
    test = read_labelled(WNUT / "test.conll", limit=300)
    settings = FinetuneSettings(epochs=1, frozen_layers=1, lr=3e-4, head_lr=2e-3, batch_size=16, max_length=128)
    summary = finetune(Job(None, tmp_path / "ner"), train, settings, test)
    assert summary["eval"]["entity_f1"] > 0.2, summary["eval"]
    _convert_and_validate(tmp_path / "ner", tmp_path / "bundles", test)
