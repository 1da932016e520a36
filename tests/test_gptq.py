"""GPTQ rounding for LiteRT dynamic int8, and the embedding recipe's float key/value projections.

Real weights and activations (all-MiniLM-L6-v2 on SST-2) for the rounding itself; tiny random models of
two families for what lands in the .tflite file (the projections' names differ per family).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import minilm_dir, require_module, save_tiny_model, sst2_dev

from edge_bert.bundle import open_bundle
from edge_bert.convert.architectures import architecture
from edge_bert.convert.pipeline import convert
from edge_bert.formats.tflite.export import operators
from edge_bert.formats.tflite.gptq import QMAX, fully_connected, gptq, hessians, round_weights

require_module("litert_quantizer", "LiteRT tests need the tflite extra")

PROFILE = """
name = "tiny-gptq"
description = "LiteRT dynamic int8 with GPTQ rounding and float key/value projections"
arch = "x86_64"
isa = ["avx2"]
formats = ["tflite"]

[shapes]
policy = "dynamic"
max_length = 64

[gates]
min_top1_agreement = 0.9
min_cosine = 0.99
min_worst_cosine = 0.95
max_rel_error = 0.4

[tflite]
seq_lengths = [16, 64]
recipes = ["dynamic-int8", "fp32"]

[tflite.recipe.dynamic-int8]
rounding = "gptq"
calibration_samples = 24
embedding_float = ["key", "value"]
"""


def minilm_layer_inputs(texts: list[str], layer: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(weight [out, in], inputs [tokens, in]) of one MiniLM layer's value projection and FFN output."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    model = transformers.AutoModel.from_pretrained(minilm_dir()).eval()
    block = model.encoder.layer[layer]
    linears = {"value": block.attention.self.value, "ffn_out": block.output.dense}
    seen: dict[str, list[np.ndarray]] = {name: [] for name in linears}
    hooks = [
        linear.register_forward_hook(lambda _m, args, _o, name=name: seen[name].append(args[0][0].numpy()))
        for name, linear in linears.items()
    ]
    with torch.no_grad():
        for text in texts:
            model(**tokenizer(text, return_tensors="pt"))
    for hook in hooks:
        hook.remove()
    return {
        name: (linear.weight.detach().numpy().astype(np.float64), np.concatenate(seen[name]).astype(np.float64))
        for name, linear in linears.items()
    }


@pytest.mark.parametrize("projection", ["value", "ffn_out"])
def test_gptq_cuts_the_output_error_of_real_weights_on_unseen_text(projection):
    calibration = minilm_layer_inputs([t for t, _ in sst2_dev(limit=64, offset=400)], layer=3)
    unseen = minilm_layer_inputs([t for t, _ in sst2_dev(limit=64, offset=600)], layer=3)
    weight, x = calibration[projection]
    rounded = gptq(weight, x.T @ x)
    scale = np.abs(weight).max(axis=1, keepdims=True) / QMAX
    levels = rounded / scale
    # on the per-channel int8 grid the quantizer computes, with each row's scale unchanged
    assert np.abs(levels - np.rint(levels)).max() < 1e-6 and np.abs(levels).max() <= QMAX + 1e-9
    assert np.array_equal(np.abs(rounded).max(axis=1), np.abs(weight).max(axis=1))
    nearest = np.rint(weight / scale) * scale
    assert np.mean(np.rint(levels) != np.rint(weight / scale)) > 0.05  # GPTQ chose other levels
    held_out = unseen[projection][1]
    error_gptq = np.linalg.norm(held_out @ (rounded - weight).T)
    error_nearest = np.linalg.norm(held_out @ (nearest - weight).T)
    assert error_gptq < 0.8 * error_nearest, (error_gptq, error_nearest)


@pytest.fixture(scope="module")
def embedding_bundles(tmp_path_factory, sst2_texts):
    root = tmp_path_factory.mktemp("gptq")
    profile = root / "tiny-gptq.toml"
    profile.write_text(PROFILE, encoding="utf-8")
    bundles = {}
    for model_type in ("bert", "distilbert"):
        source = save_tiny_model(model_type, root / f"src-{model_type}", task="feature-extraction")
        outcomes = convert(str(source), profile, root / "out", texts=sst2_texts[:40], log=lambda _: None)
        bundles[model_type] = {o.recipe: o for o in outcomes}
    return bundles


def weight_types(path) -> list[tuple[str, int]]:
    """(op scope, weight tensor type) of every FULLY_CONNECTED in every signature of a .tflite file."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
    return [
        (o.scope, o.graph.Tensors(o.op.Inputs(1)).Type()) for o in operators(model) if o.kind == "FULLY_CONNECTED"
    ]


@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
def test_embedding_int8_keeps_exactly_the_key_value_projections_float(model_type, embedding_bundles):
    from ai_edge_litert import schema_py_generated as schema

    outcome = embedding_bundles[model_type]["dynamic-int8"]
    assert outcome.passed, outcome.error
    bundle = open_bundle(outcome.bundle)
    names = architecture(model_type).qkv_projections[1:]  # key, value
    kv = re.compile(rf"\.Linear_({'|'.join(names)});")
    ops = weight_types(bundle.model_path)
    floats = [scope for scope, kind in ops if kind == schema.TensorType.FLOAT32]
    assert len(floats) == 2 * 2 * 2  # 2 layers x key/value x 2 signatures
    assert all(kv.search(scope) for scope in floats)
    assert all(kind == schema.TensorType.INT8 for scope, kind in ops if not kv.search(scope))
    assert len(ops) == 2 * 6 * 2  # query, attention output and FFN in/out are int8
    settings = bundle.manifest.recipe.settings
    assert settings["rounding"] == "gptq" and settings["gptq_signature"] == "seq_64"
    assert settings["gptq_weights"] == 2 * 4  # per layer: query, attention output, FFN in and out
    assert settings["float_scopes"] == [rf"\.Linear_{name};" for name in names]


def test_a_classifier_keeps_nothing_float(tiny_models, sst2_texts, tmp_path):
    profile = tmp_path / "tiny-gptq.toml"
    profile.write_text(PROFILE, encoding="utf-8")
    (outcome,) = convert(
        str(tiny_models["bert"]), profile, tmp_path / "out", texts=sst2_texts[:40], recipes=["dynamic-int8"],
        log=lambda _: None,
    )  # fmt: skip
    assert outcome.passed, outcome.error
    assert "float_scopes" not in outcome.settings and outcome.settings["rounding"] == "gptq"
    from ai_edge_litert import schema_py_generated as schema

    kinds = {kind for _, kind in weight_types(open_bundle(outcome.bundle).model_path)}
    assert kinds == {schema.TensorType.INT8}


def test_rounded_weights_are_what_the_int8_file_holds(embedding_bundles, sst2_texts, tmp_path):
    """The grid claim end to end: GPTQ-rounded float weights quantized by the LiteRT Quantizer's min-max
    recipe come back bit-identical, so the int8 file holds GPTQ's choice (and the buffers stay shared)."""
    from ai_edge_litert import schema_py_generated as schema
    from litert_quantizer import quantizer
    from litert_quantizer import recipe as recipes

    from edge_bert.session import TextEncoder, make_feeds

    fp32 = open_bundle(embedding_bundles["bert"]["fp32"].bundle)
    encoder, dtypes = TextEncoder(fp32), {spec.name: np.dtype(np.int32) for spec in fp32.manifest.inputs}
    encoded = [encoder.encode(text, max_length=64) for text in sst2_texts[:24]]
    feeds = [make_feeds(e.ids, e.type_ids, dtypes, 64) for e in encoded]
    tokens = [len(e.ids) for e in encoded]
    model = fp32.model_path.read_bytes()
    rounded = tmp_path / "rounded.tflite"
    assert round_weights(fp32.model_path, rounded, hessians(model, "seq_64", feeds, tokens), []) == 2 * 6
    assert rounded.stat().st_size == fp32.model_path.stat().st_size  # in place: buffers stay shared
    quantized = tmp_path / "int8.tflite"
    qt = quantizer.Quantizer(str(rounded), recipes.dynamic_wi8_afp32())
    qt.quantize(None, enable_progress_report=False).export_model(str(quantized), overwrite=True)
    data = quantized.read_bytes()
    flat = schema.Model.GetRootAsModel(data, 0)
    source = {op.scope: op for op in fully_connected(rounded.read_bytes())}
    rounded_flat = schema.Model.GetRootAsModel(rounded.read_bytes(), 0)
    checked = 0
    for operator in operators(flat):
        op, scope = operator.op, operator.scope
        weight = operator.graph.Tensors(op.Inputs(1)) if op.InputsLength() > 1 else None
        if scope not in source or weight is None or weight.Type() != schema.TensorType.INT8:
            continue
        buffer = flat.Buffers(weight.Buffer())
        raw = buffer.DataAsNumpy() if buffer.DataLength() else np.frombuffer(
            data, np.uint8, count=buffer.Size(), offset=buffer.Offset()
        )
        levels = raw.view(np.int8).reshape(source[scope].shape).astype(np.float64)
        expected = rounded_flat.Buffers(source[scope].buffer).DataAsNumpy().view(np.float32)
        dequantized = levels * weight.Quantization().ScaleAsNumpy()[:, None]
        assert np.allclose(dequantized, expected.reshape(source[scope].shape), rtol=0, atol=1e-7)
        checked += 1
    assert checked == 2 * 6 * 2  # every weight of every signature
