"""Each family, each ONNX recipe: converted, gated at conversion, and passing validate on load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import LABELS

from edge_bert.bundle import open_bundle
from edge_bert.convert.architectures import REGISTRY
from edge_bert.convert.pipeline import convert
from edge_bert.session import BundleSession
from edge_bert.validate import validate

TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"
RECIPES = ["dynamic-int8", "static-int8", "fp16", "fp32"]


@pytest.fixture(scope="module")
def converted(tiny_models, sst2_texts, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles")
    return {
        arch: convert(str(path), TINY_PROFILE, out, texts=sst2_texts, log=lambda _: None)
        for arch, path in tiny_models.items()
    }


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_every_recipe_converts_and_validates(arch, converted):
    outcomes = {o.recipe: o for o in converted[arch]}
    assert sorted(outcomes) == sorted(RECIPES)
    for recipe, outcome in outcomes.items():
        assert outcome.passed, f"{arch} {recipe}: {outcome.error}"
        result = validate(outcome.bundle)
        assert result["passed"], (arch, recipe, result["gates"])
        assert result["checks"]["tokenizer"]["pass"]
        # the device-side result reproduces what the converter measured, on the same runtime
        assert result["parity"]["max_abs_error"] == pytest.approx(outcome.parity["max_abs_error"], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_bundle_contents_follow_the_registry(arch, converted):
    fp32 = next(o for o in converted[arch] if o.recipe == "fp32")
    bundle = open_bundle(fp32.bundle)
    manifest = bundle.manifest.to_dict()
    assert manifest["model"]["architecture"] == arch
    assert bundle.input_names == list(REGISTRY[arch].inputs)
    assert ("token_type_ids" in bundle.input_names) == (arch != "distilbert")
    assert manifest["model"]["labels"] == LABELS
    assert (bundle.path / "labels.txt").read_text().split() == LABELS
    assert manifest["export"]["exporter"] in REGISTRY[arch].exporters
    assert manifest["export"]["parity"]["max_abs_error"] <= 1e-4
    for name in ("model.onnx", "config.json", "tokenizer.json", "golden.npz"):
        assert name in manifest["files"]
    assert json.loads((bundle.path / "config.json").read_text())["model_type"] == arch


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_int8_is_smaller_and_dynamic_axes_work(arch, converted):
    outcomes = {o.recipe: o for o in converted[arch]}
    assert outcomes["dynamic-int8"].model_bytes < 0.5 * outcomes["fp32"].model_bytes
    session = BundleSession(open_bundle(outcomes["fp32"].bundle))
    for text in ("short", "a somewhat longer sentence that has quite a few more tokens in it than the first"):
        outputs, encoded = session.run_text(text)
        assert outputs["logits"].shape == (1, len(LABELS))
        assert session.feeds(encoded.ids)["input_ids"].shape == (1, len(encoded.ids))


def test_fp32_bundle_matches_pytorch_on_unseen_text(tiny_models, converted):
    """Not just the golden set: fresh text through the runner equals PyTorch on the same ids."""
    import torch
    import transformers

    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"]).eval()
    session = BundleSession(open_bundle(next(o for o in converted["bert"] if o.recipe == "fp32").bundle))
    outputs, encoded = session.run_text("The ferry was late, but the crossing itself was calm and lovely.")
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(encoded.ids[None]), token_type_ids=torch.tensor(encoded.type_ids[None]))
    np.testing.assert_allclose(outputs["logits"], ref.logits.numpy(), atol=1e-5)


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_feature_extraction_pools_inside_the_graph(arch, tmp_path, sst2_texts):
    """Encoder-only checkpoints convert as sentence embeddings: mean pooling + L2 norm in the graph."""
    import torch
    from conftest import save_tiny_model

    source = save_tiny_model(arch, tmp_path / "src", task="feature-extraction")
    (outcome,) = convert(
        str(source), TINY_PROFILE, tmp_path / "out", texts=sst2_texts[:8], recipes=["fp32"], log=lambda _: None
    )
    bundle = open_bundle(outcome.bundle)
    assert bundle.task == "feature-extraction" and bundle.primary_output == "sentence_embedding"
    session = BundleSession(bundle)
    outputs, encoded = session.run_text("Pooling happens inside the exported graph.")
    import transformers

    model = transformers.AutoModel.from_pretrained(source).eval()
    feeds = {"input_ids": torch.tensor(encoded.ids[None])}
    if "token_type_ids" in bundle.input_names:
        feeds["token_type_ids"] = torch.tensor(encoded.type_ids[None])
    with torch.no_grad():
        hidden = model(**feeds).last_hidden_state
    expected = torch.nn.functional.normalize(hidden.mean(dim=1), dim=1).numpy()
    np.testing.assert_allclose(outputs["sentence_embedding"], expected, atol=1e-5)
    np.testing.assert_allclose(outputs["last_hidden_state"], hidden.numpy(), atol=1e-4)


def test_attention_fusion_is_a_recipe_option(tiny_models, tmp_path, sst2_texts):
    """scripts/attention_fusion.toml: the same int8 recipe with QAttention and with attention unfused."""
    import onnx

    profile = Path(__file__).resolve().parent.parent / "scripts" / "attention_fusion.toml"
    outcomes = convert(str(tiny_models["bert"]), profile, tmp_path, texts=sst2_texts, log=lambda _: None)
    ops = {o.recipe: {n.op_type for n in onnx.load(str(o.bundle / "model.onnx")).graph.node} for o in outcomes}
    assert "QAttention" in ops["dynamic-int8"]
    assert not {"QAttention", "Attention"} & ops["dynamic-int8-unfused"]
    assert "MatMulInteger" in ops["dynamic-int8-unfused"] and "Attention" in ops["fp32"]
