"""The worked example of a new task: token classification (a tag per token, as NER uses) as one task class
(edge_bert/tasks.py) plus its host extension (edge_bert/convert/tasks.py). Every family's tiny
``…ForTokenClassification`` converts with nothing told (the checkpoint's architecture names the task), passes
its parity gate, and the written bundle validates and answers one tag per token."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import LABELS, minilm_dir, require_module, sst2_dev, tiny_config

from edge_bert.bundle import open_bundle
from edge_bert.convert.architectures import REGISTRY
from edge_bert.convert.pipeline import convert
from edge_bert.evaldata import LabelledData
from edge_bert.session import BundleSession
from edge_bert.tasks import TASKS, infer_task
from edge_bert.validate import validate

TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"
TFLITE_PROFILE = Path(__file__).parent / "profiles" / "tiny-random-tflite.toml"
TASK = TASKS["token-classification"]


def _save_tagger(model_type: str, out: Path) -> Path:
    """A tiny random ``…ForTokenClassification`` of ``model_type`` (same config as the other tiny models)."""
    import torch
    import transformers

    torch.manual_seed(0)
    transformers.AutoModelForTokenClassification.from_config(tiny_config(model_type)).save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [text for text, _ in sst2_dev(limit=24)]


def test_parity_compares_real_tokens_only():
    """Two texts of 3 and 1 tokens, 2 tags: flipping one real token's top tag costs 1 of 4 tokens;
    whatever a model computes past a text's tokens is never compared."""
    reference = np.array([[[4.0, 0.0], [0.0, 4.0], [4.0, 0.0]], [[0.0, 4.0], [np.nan, np.nan], [np.nan, np.nan]]])
    flipped = np.nan_to_num(reference.copy(), nan=123.0)  # padding filled with anything
    assert TASK.parity(flipped, reference)["top1_agreement"] == 1.0
    assert TASK.parity(flipped, reference)["samples"] == 4  # tokens, not texts
    flipped[0, 1] = [4.0, 0.0]
    metrics = TASK.parity(flipped, reference)
    assert metrics["top1_agreement"] == 0.75
    # the flipped token's probabilities [0.982, 0.018] against [0.018, 0.982]: cosine 2*0.982*0.018/(0.982²+0.018²)
    p = 1 / (1 + np.exp(-4.0))
    assert metrics["worst_cosine"] == pytest.approx(2 * p * (1 - p) / (p**2 + (1 - p) ** 2), rel=1e-6)
    # on evaluation data, rows are words (each word's first token): the same comparison, counted in words
    assert TASK.evaluate(flipped, reference, None, None) == {"rows": 2, "words": 4, "agreement": 0.75}


def test_answer_is_one_tag_per_token():
    logits = np.array([[[0.0, 3.0, 0.0], [2.0, 0.0, 0.0]]])
    answer = TASK.answer({"logits": logits}, LABELS)
    assert answer.tags == (1, 0) and answer.tag_labels == ("neutral", "negative")
    assert answer.vector.shape == (2, 3) and np.allclose(answer.vector.sum(axis=1), 1.0)


def test_infer_task_recognises_token_classification():
    assert infer_task(["BertForTokenClassification"]) is TASK
    assert infer_task(["DistilBertForSequenceClassification"]).name == "text-classification"
    assert infer_task(["BertModel"]).name == "feature-extraction"


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_every_family_converts_to_onnx_and_validates(arch, texts, tmp_path):
    source = _save_tagger(arch, tmp_path / "model")
    outcomes = convert(str(source), TINY_PROFILE, tmp_path / "out", texts=texts, recipes=["fp32", "dynamic-int8"],
                       log=lambda _: None)  # fmt: skip
    for outcome in outcomes:
        assert outcome.passed, (arch, outcome.recipe, outcome.error)
        bundle = open_bundle(outcome.bundle)
        assert bundle.task == "token-classification" and list(bundle.labels) == LABELS
        golden = bundle.golden()
        assert golden["output"].shape == (len(texts), golden["lengths"].max(), len(LABELS))
        assert outcome.parity["samples"] == golden["lengths"].sum()  # every real token, no padding
        result = validate(outcome.bundle)
        assert result["passed"], (arch, outcome.recipe, result["gates"])
        assert result["parity"]["max_abs_error"] == pytest.approx(outcome.parity["max_abs_error"], rel=1e-4, abs=1e-6)
    assert outcomes[0].recipe == "fp32" and outcomes[0].parity["max_abs_error"] <= 1e-5
    answer = BundleSession(open_bundle(outcomes[0].bundle)).answer(texts[0])
    tokens = len(BundleSession(open_bundle(outcomes[0].bundle)).encoder.encode(texts[0]).ids)
    assert len(answer.tags) == tokens and set(answer.tag_labels) <= set(LABELS)


def test_eval_data_gates_tag_agreement(texts, tmp_path):
    """With evaluation data the bundle keeps fp32's per-word outputs (each word's first token); validate gates
    tag agreement on them (sentences without tags: no entity F1, see tests/test_ner.py for that)."""
    source = _save_tagger("bert", tmp_path / "model")
    pairs = sst2_dev(limit=40)
    data = LabelledData([t for t, _ in pairs], None, {"name": "sst2-dev"})
    (outcome,) = convert(str(source), TINY_PROFILE, tmp_path / "out", texts=texts, recipes=["fp32"],
                         eval_data=data, log=lambda _: None)  # fmt: skip
    assert outcome.passed, outcome.error
    result = validate(outcome.bundle, data=data)
    metrics = result["accuracy"]["metrics"]
    assert metrics["rows"] == 40 and metrics["words"] == sum(len(t.split()) for t, _ in pairs)
    assert metrics["agreement"] >= 0.99
    assert result["gates"]["min_prediction_agreement"]["decides"] and result["passed"]


def test_litert_export_passes_parity_and_validates(texts, tmp_path):
    require_module("litert_torch", "the tflite extra is not installed")
    source = _save_tagger("bert", tmp_path / "model")
    (outcome,) = convert(str(source), TFLITE_PROFILE, tmp_path / "out", texts=texts, recipes=["fp32"],
                         log=lambda _: None)  # fmt: skip
    assert outcome.passed, outcome.error
    export = open_bundle(outcome.bundle).manifest.export["parity"]  # LiteRT vs PyTorch, per signature
    assert export["max_abs_error"] <= 1e-5 and set(export["signatures"]) == {"seq_16", "seq_32", "seq_64"}
    result = validate(outcome.bundle)
    assert result["passed"], result["gates"]
    assert result["parity"]["samples"] == open_bundle(outcome.bundle).golden()["lengths"].sum()
