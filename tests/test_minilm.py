"""Real pretrained weights: all-MiniLM-L6-v2 as a feature-extraction bundle, under the shipped x86
profiles, against sentence-transformers-style embeddings computed here independently."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import minilm_dir, sst2_dev, with_static_int8

from edge_bert.bench.protocol import bench
from edge_bert.bundle import open_bundle
from edge_bert.convert.pipeline import convert
from edge_bert.session import BundleSession
from edge_bert.validate import validate


def reference_embeddings(texts: list[str]) -> np.ndarray:
    """What sentence-transformers computes for this model: mean pooling over the mask, then L2 norm."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    model = transformers.AutoModel.from_pretrained(minilm_dir()).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            batch = tokenizer(text, return_tensors="pt", truncation=True, max_length=128)
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            rows.append(torch.nn.functional.normalize(pooled, dim=1)[0].numpy())
    return np.stack(rows)


@pytest.fixture(scope="module")
def minilm_bundles(tmp_path_factory):
    golden_texts = [text for text, _ in sst2_dev(limit=64)]
    out = tmp_path_factory.mktemp("minilm")
    outcomes = convert(
        None, "x86", out, texts=golden_texts, formats=["onnx"], recipes=["dynamic-int8", "fp32"], log=lambda _: None
    )
    static = with_static_int8("x86", out)  # no longer shipped (slower than dynamic), still a recipe kind
    outcomes += convert(None, static, out, texts=golden_texts, recipes=["static-int8"], log=lambda _: None)
    outcomes += convert(
        None, "x86-vnni", out, texts=golden_texts, formats=["onnx"], recipes=["dynamic-int8"], log=lambda _: None
    )
    return {f"{o.bundle.name if o.bundle else o.recipe}": o for o in outcomes}


@pytest.fixture(scope="module")
def unseen():
    texts = [text for text, _ in sst2_dev(limit=100, offset=100)]
    return texts, reference_embeddings(texts)


def embed(bundle_path, texts):
    session = BundleSession(open_bundle(bundle_path), threads=2)
    return np.stack([session.run_text(t)[0]["sentence_embedding"][0] for t in texts])


def test_all_recipes_pass_their_cosine_gates(minilm_bundles):
    assert len(minilm_bundles) == 4
    for name, outcome in minilm_bundles.items():
        assert outcome.passed, f"{name}: {outcome.error}"
        assert validate(outcome.bundle)["passed"]


def test_manifest_describes_the_real_model(minilm_bundles):
    manifest = open_bundle(minilm_bundles["all-minilm-l6-v2-x86-onnx-fp32"].bundle).manifest.to_dict()
    assert manifest["model"]["architecture"] == "bert"
    assert manifest["model"]["task"] == "feature-extraction"
    assert manifest["model"]["parameters"] == 22_713_216
    assert manifest["model"]["pooling"] == "mean" and manifest["model"]["normalize"] is True
    assert manifest["outputs"] == ["sentence_embedding", "last_hidden_state"]
    assert manifest["golden"]["count"] == 64


@pytest.mark.parametrize(
    ("bundle", "min_mean", "min_worst"),
    [
        ("all-minilm-l6-v2-x86-onnx-fp32", 0.99999, 0.9999),
        ("all-minilm-l6-v2-x86-onnx-dynamic-int8", 0.99, 0.97),
        ("all-minilm-l6-v2-x86-static-onnx-static-int8", 0.99, 0.97),
        ("all-minilm-l6-v2-x86-vnni-onnx-dynamic-int8", 0.99, 0.97),
    ],
)
def test_embeddings_match_sentence_transformers_on_unseen_sst2(minilm_bundles, unseen, bundle, min_mean, min_worst):
    texts, reference = unseen
    ours = embed(minilm_bundles[bundle].bundle, texts)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=2e-2)
    cosine = np.sum(ours * reference, axis=1) / np.linalg.norm(ours, axis=1)
    assert cosine.mean() >= min_mean, (bundle, cosine.mean())
    assert cosine.min() >= min_worst, (bundle, cosine.min())


def test_bench_e2e_and_roofline_on_real_weights(minilm_bundles):
    """End-to-end latency next to the model's for every length, over the same runs; FLOPs from the manifest
    equal the analytic count of a 6-layer, 384-wide BERT encoder (its pooler is not in the graph)."""
    for name in ("all-minilm-l6-v2-x86-onnx-fp32", "all-minilm-l6-v2-x86-vnni-onnx-dynamic-int8"):
        path = minilm_bundles[name].bundle
        flops = open_bundle(path).manifest.flops.per_seq_length
        for length in (16, 64, 128):
            analytic = 6 * (2 * length * (4 * 384**2 + 2 * 384 * 1536) + 4 * length**2 * 384)
            assert flops[str(length)] == pytest.approx(analytic, rel=0.01)
        result = bench(path, threads=2, seq_lengths=(16, 64, 128), warmup=1, runs=5)
        assert [row["seq_length"] for row in result["latency"]] == [16, 64, 128]
        for row in result["latency"]:
            assert row["e2e"]["p50_ms"] >= row["p50_ms"] > 0 and row["e2e"]["p99_ms"] >= row["p99_ms"]
            assert row["overhead_pct"] >= 0 and row["flops"] == flops[str(row["seq_length"])]
        peak = "int8" if "int8" in name else "fp32"
        assert result["roofline"]["compared_with"] == peak and result["roofline"]["peak"][peak]["gflops_per_s"] > 0


def test_int8_is_a_quarter_of_fp32(minilm_bundles):
    fp32 = minilm_bundles["all-minilm-l6-v2-x86-onnx-fp32"].model_bytes
    for name in ("all-minilm-l6-v2-x86-onnx-dynamic-int8", "all-minilm-l6-v2-x86-static-onnx-static-int8"):
        assert minilm_bundles[name].model_bytes <= 0.26 * fp32, name
