"""LiteRT (.tflite): every family x every recipe on tiny random models, static-length signatures,
Flex/custom-op rejection, broken-output rejection, and real MiniLM weights. Real models, real LiteRT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import LABELS, convert_families, require_module, run_cli_without_frameworks, save_tiny_model

require_module("litert_torch", "the tflite extra is not installed")

from edge_bert.accuracy import neighbour_agreement
from edge_bert.backends.litert import LiteRtBackend
from edge_bert.bench.protocol import bench
from edge_bert.bundle import open_bundle
from edge_bert.convert.architectures import REGISTRY
from edge_bert.convert.pipeline import convert
from edge_bert.errors import BundleError, ConversionError
from edge_bert.formats.tflite.export import check_builtin_ops, op_inventory
from edge_bert.formats.tflite.quantize import quantize
from edge_bert.profiles import load_profile
from edge_bert.session import BundleSession
from edge_bert.tasks import TASKS, passed
from edge_bert.validate import validate

TFLITE_PROFILE = Path(__file__).parent / "profiles" / "tiny-random-tflite.toml"
RECIPES = ["dynamic-int8", "fp16", "fp32", "weight-only-int8", "full-int8", "full-int16x8"]
#: full-int8 (int8 activations) is for NPUs; on untrained tiny models it may miss even the loose
#: gates (measured: BERT worst cosine -0.2). It must then be refused, never written.
MAY_FAIL = {"full-int8", "full-int16x8"}


@pytest.fixture(scope="module")
def converted(tiny_models, sst2_texts, tmp_path_factory):
    return convert_families(tiny_models, TFLITE_PROFILE, tmp_path_factory.mktemp("tflite-bundles"), sst2_texts)


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_every_recipe_converts_within_its_gate_and_validates(arch, converted):
    outcomes = converted[arch]
    assert sorted(outcomes) == sorted(RECIPES)
    for recipe, outcome in outcomes.items():
        if not outcome.passed:
            assert recipe in MAY_FAIL, f"{arch} {recipe}: {outcome.error}"
            assert outcome.bundle is None and "failed its parity gate" in outcome.error
            continue
        result = validate(outcome.bundle)
        assert result["passed"], (arch, recipe, result["gates"])
        assert result["runtime"]["name"] == "litert"
        assert result["parity"]["max_abs_error"] == pytest.approx(outcome.parity["max_abs_error"], rel=1e-4, abs=1e-6)
    fp32 = outcomes["fp32"].parity
    assert fp32["max_abs_error"] <= 1e-5 and fp32["worst_cosine"] > 0.99999
    assert outcomes["fp16"].parity["worst_cosine"] > 0.9999


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_bundle_has_int32_signatures_and_builtin_ops_only(arch, converted):
    bundle = open_bundle(converted[arch]["dynamic-int8"].bundle)
    manifest = bundle.manifest.to_dict()
    assert manifest["format"] == "tflite" and manifest["model_file"] == "model.tflite"
    assert bundle.seq_lengths == (16, 32, 64) and bundle.max_length == 64
    assert bundle.input_names == list(REGISTRY[arch].inputs)
    assert {spec["dtype"] for spec in manifest["inputs"]} == {"int32"}
    signatures = manifest["shapes"]["signatures"]
    assert sorted(signatures) == ["seq_16", "seq_32", "seq_64"]
    assert signatures["seq_32"]["inputs"]["input_ids"] == {"dtype": "int32", "shape": [1, 32]}
    assert signatures["seq_32"]["outputs"]["logits"] == {"dtype": "float32", "shape": [1, len(LABELS)]}
    ops = op_inventory(bundle.model_path)
    assert not ops["flex"] and not ops["custom"]
    assert "FULLY_CONNECTED" in manifest["export"]["ops"]
    assert (bundle.path / "labels.txt").read_text().split() == LABELS


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_int8_and_fp16_are_smaller(arch, converted):
    sizes = {recipe: o.model_bytes for recipe, o in converted[arch].items()}
    # tiny models only: the per-row int8 scales of the 30522-row vocabulary table (stored once for all
    # signatures: flatbuffer.share_quantization) rival ALBERT's 16-wide table itself; MiniLM-L6 int8 is 0.29x
    assert sizes["dynamic-int8"] < 0.85 * sizes["fp32"]
    assert sizes["fp16"] < 0.7 * sizes["fp32"]


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_per_channel_quantization_tables_are_stored_once_for_all_signatures(arch, converted):
    """Every tensor reading a shared int8 buffer points at one quantization table (one flatbuffer position)."""
    from ai_edge_litert import schema_py_generated as schema

    outcome = converted[arch]["dynamic-int8"]
    data = (outcome.bundle / "model.tflite").read_bytes()
    model = schema.Model.GetRootAsModel(data, 0)
    tables: dict[int, set[int]] = {}
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            quant = tensor.Quantization()
            if quant is not None and quant.ScaleLength() > 1 and tensor.Buffer():
                tables.setdefault(tensor.Buffer(), set()).add(quant._tab.Pos)
    assert model.SubgraphsLength() == 3 and tables, arch
    assert all(len(positions) == 1 for positions in tables.values()), arch
    assert outcome.settings["quantization_tables_shared_bytes"] > 0


def test_sharing_quantization_tables_changes_no_output(converted, tmp_path):
    """The rewrite against the quantizer's own file: smaller, and every signature's output bit for bit."""
    from ai_edge_litert.interpreter import Interpreter as LiteRtInterpreter
    from litert_quantizer import quantizer
    from litert_quantizer import recipe as recipes

    from edge_bert.formats.tflite.flatbuffer import share_quantization

    src = converted["albert"]["fp32"].bundle / "model.tflite"
    original, shared = tmp_path / "original.tflite", tmp_path / "shared.tflite"
    quantizer.Quantizer(str(src), recipes.dynamic_wi8_afp32()).quantize().export_model(str(original))
    shared.write_bytes(original.read_bytes())
    saved = share_quantization(shared)
    assert saved > 0 and shared.stat().st_size == original.stat().st_size - saved
    ids = np.random.default_rng(0).integers(5, 1000, 40)
    for length in (16, 32, 64):
        outputs = []
        for path in (original, shared):
            runner = LiteRtInterpreter(model_path=str(path)).get_signature_runner(f"seq_{length}")
            names = runner.get_input_details()
            outputs.append(runner(**{k: v for k, v in _feeds(ids[:length], length).items() if k in names}))
        assert outputs[0].keys() == outputs[1].keys()
        assert all(np.array_equal(outputs[0][k], outputs[1][k]) for k in outputs[0])


def _interpreter_float_ops(path: Path) -> tuple[dict[str, int], set[str]]:
    """Independent of the flatbuffer reader: LiteRT's own view of the first signature's ops (no XNNPACK
    rewrite), as float-computing op -> count, and the dtypes of every activation tensor it quantized."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    counts: dict[str, int] = {}
    quantized = set()
    for op in interpreter._get_ops_details():
        dtypes = [tensors[i]["dtype"] for i in [*op["inputs"], *op["outputs"]] if i >= 0]
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            quantized |= {np.dtype(tensors[i]["dtype"]).name for i in op["outputs"]}
        elif any(np.issubdtype(d, np.floating) for d in dtypes):
            counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return counts, quantized


def _flatbuffer_float_ops(path: Path) -> dict[str, int]:
    """Independent of float_ops() and its operator walk: the .tflite read with the flatbuffer schema directly,
    every subgraph's operators whose input or output tensor is a float, QUANTIZE/DEQUANTIZE aside."""
    from ai_edge_litert import schema_py_generated as schema

    builtin = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
    float_types = (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16, schema.TensorType.FLOAT64)
    counts: dict[str, int] = {}
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        is_float = [graph.Tensors(t).Type() in float_types for t in range(graph.TensorsLength())]
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            opcode = model.OperatorCodes(op.OpcodeIndex())
            name = builtin[max(opcode.BuiltinCode(), opcode.DeprecatedBuiltinCode())]
            touched = list(op.InputsAsNumpy()) + list(op.OutputsAsNumpy())
            if name not in ("QUANTIZE", "DEQUANTIZE") and any(t >= 0 and is_float[t] for t in touched):
                counts[name] = counts.get(name, 0) + 1
    return counts


@pytest.mark.parametrize(("recipe", "activations"), [("full-int8", "int8"), ("full-int16x8", "int16")])
def test_full_integer_recipes_report_their_float_ops_and_the_verdict_matches_the_manifest(
    converted, tmp_path, recipe, activations
):
    """What an NPU delegate needs: integer activations; the manifest says which ops still compute in float."""
    fp32 = open_bundle(converted["bert"]["fp32"].bundle)
    spec = load_profile(TFLITE_PROFILE).formats["tflite"]
    golden = fp32.golden()  # real SST-2 token ids
    rows = zip(golden["input_ids"], golden["token_type_ids"], golden["lengths"], strict=True)
    calibration = [(ids[:n], types[:n]) for ids, types, n in rows]
    dst = tmp_path / "model.tflite"
    settings = quantize(spec.recipe(recipe), fp32.model_path, dst, ("input_ids", "attention_mask", "token_type_ids"),
                        [16, 32, 64], calibration)  # fmt: skip
    assert settings["activations"].startswith(activations)
    assert settings["float_ops"] == _flatbuffer_float_ops(dst)
    assert settings["integer_graph"] == (not settings["float_ops"])
    seen, quantized = _interpreter_float_ops(dst)
    # three signatures of the same structure: LiteRT's view of one, times three, is what the file says
    assert {op: 3 * n for op, n in seen.items()} == settings["float_ops"]
    assert activations in quantized
    # matmuls and softmax run on integer activations (the vocabulary lookup, and in int16 the LayerNorm
    # SQUARED_DIFFERENCE of this plain export, are what the quantizer leaves float)
    assert "FULLY_CONNECTED" not in seen and "BATCH_MATMUL" not in seen and "SOFTMAX" not in seen
    if activations == "int16":
        assert settings["float_ops"]["SQUARED_DIFFERENCE"] > 0
    if activations == "int16":  # padding is masked again: the same text padded 16 -> 64 barely moves
        assert settings["attention_mask_rescaled"] == 3  # one attention-mask select per signature
        backend = LiteRtBackend(dst.read_bytes(), threads=2)
        short = np.stack([backend.run(_feeds(ids[:10], 16))["logits"][0] for ids, _ in calibration[:8]])
        padded = np.stack([backend.run(_feeds(ids[:10], 64))["logits"][0] for ids, _ in calibration[:8]])
        cosine = np.sum(short * padded, axis=1) / (np.linalg.norm(short, axis=1) * np.linalg.norm(padded, axis=1))
        assert cosine.mean() > 0.99, cosine
    # convert quantizes an export whose LayerNorms compute their variance with MUL (MulLayerNorm): the same
    # float ops but SQUARED_DIFFERENCE, which is integer there; and it reports them, written or not
    outcome = converted["bert"][recipe]
    plain = {op: n for op, n in settings["float_ops"].items() if op != "SQUARED_DIFFERENCE"}
    assert outcome.settings["float_ops"] == plain
    if outcome.passed:  # written: its manifest carries the same claim and the gate figures validate reproduces
        bundle = open_bundle(outcome.bundle)
        manifest = bundle.manifest.to_dict()
        assert manifest["recipe"]["settings"]["float_ops"] == _flatbuffer_float_ops(bundle.model_path)
        assert passed(manifest["conversion_check"]["gates"]) and validate(outcome.bundle)["passed"]
    else:
        assert outcome.bundle is None and "failed its parity gate" in outcome.error


def test_smallest_fitting_signature_is_used_and_long_text_truncated(converted):
    session = BundleSession(open_bundle(converted["bert"]["fp32"].bundle))
    backend = session.backend
    assert isinstance(backend, LiteRtBackend) and backend.seq_lengths == [16, 32, 64]
    words = "the ferry was late but the crossing was calm and lovely ".split()
    picked = {}
    for count in (6, 20, 45, 300):
        text = " ".join((words * 40)[:count])
        outputs, encoded = session.run_text(text)
        picked[count] = session.feeds(encoded.ids)["input_ids"].shape[1]
        assert outputs["logits"].shape == (1, len(LABELS))
        # the same ids on a longer signature give the same logits: padding is masked exactly
        if picked[count] < 64:
            longer = backend.run({k: _pad(v, 64) for k, v in session.feeds(encoded.ids, encoded.type_ids).items()})
            np.testing.assert_allclose(longer["logits"], outputs["logits"], atol=1e-5)
    assert picked == {6: 16, 20: 32, 45: 64, 300: 64}
    _, encoded = session.run_text(" ".join((words * 40)[:300]))
    assert encoded.truncated and len(encoded.ids) == 64
    with pytest.raises(BundleError, match="no signature for 48 tokens"):
        backend.run({name: np.zeros((1, 48), np.int32) for name in backend.input_names})


def _feeds(ids: np.ndarray, length: int) -> dict[str, np.ndarray]:
    feeds = {name: np.zeros((1, length), np.int32) for name in ("input_ids", "attention_mask", "token_type_ids")}
    feeds["input_ids"][0, : len(ids)] = ids
    feeds["attention_mask"][0, : len(ids)] = 1
    return feeds


def _pad(array: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros((1, length), array.dtype)
    out[:, : array.shape[1]] = array
    return out


def _doctor(src: Path, dst: Path, custom_code: str) -> None:
    """Rewrite the GELU operator code as a custom op, as a model needing Flex (FlexErf) would carry it."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(src.read_bytes(), 0)
    for code in model.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.GELU:
            code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
            code.customCode = custom_code
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(builder.Output())


@pytest.mark.parametrize("custom_code", ["FlexErf", "MyCustomOp"])
def test_flex_and_custom_ops_are_rejected_by_name(converted, tmp_path, custom_code):
    src = open_bundle(converted["bert"]["fp32"].bundle).model_path
    assert check_builtin_ops(src)  # the real model: builtin only
    doctored = tmp_path / "doctored.tflite"
    _doctor(src, doctored, custom_code)
    kind = "Select TF \\(Flex\\) ops" if custom_code.startswith("Flex") else "custom ops"
    with pytest.raises(ConversionError, match=f"{kind} \\['{custom_code}'\\]"):
        check_builtin_ops(doctored)
    # and it is not an academic check: a plain LiteRT interpreter cannot run such a model
    with pytest.raises(BundleError, match="LiteRT cannot load"):
        LiteRtBackend(doctored.read_bytes(), where=str(doctored))


def test_fp16_overflow_is_caught_by_the_gate_and_not_written(tmp_path, sst2_texts):
    """tensorflow#43719-style: a layer whose weights exceed the fp16 range (65504) turns into inf/NaN in
    the fp16 model while fp32 (and PyTorch, LayerNorm absorbs the scale) stay finite."""
    import torch
    import transformers

    source = save_tiny_model("bert", tmp_path / "src")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(source)
    with torch.no_grad():
        dense = model.bert.encoder.layer[0].output.dense.weight
        dense.mul_(1e5 / dense.abs().max())
    model.save_pretrained(source)
    outcomes = {
        o.recipe: o
        for o in convert(
            str(source),
            TFLITE_PROFILE,
            tmp_path / "out",
            texts=sst2_texts[:16],
            recipes=["fp32", "fp16"],
            log=lambda _: None,
        )
    }
    assert outcomes["fp32"].passed, outcomes["fp32"].error
    fp16 = outcomes["fp16"]
    assert not fp16.passed and fp16.bundle is None
    assert fp16.parity["finite"] == 0.0
    assert "failed its parity gate" in fp16.error and "nan" in fp16.error.lower()
    assert not (tmp_path / "out" / "src-tiny-random-tflite-tflite-fp16").exists()


def test_minilm_dynamic_int8_matches_sentence_transformers_and_ships_app_extras(tmp_path):
    """Real weights, shipped android profile: embeddings agree with sentence-transformers-style pooling."""
    from conftest import sst2_dev
    from test_minilm import reference_embeddings

    golden = [text for text, _ in sst2_dev(limit=32, offset=400)]  # calibration: none of the texts below
    (outcome,) = convert(
        None, "android", tmp_path, texts=golden, formats=["tflite"], recipes=["dynamic-int8"], log=lambda _: None
    )
    assert outcome.passed, outcome.error
    bundle = open_bundle(outcome.bundle)
    assert bundle.seq_lengths == (16, 32, 64, 128)
    # the profile's search-grade int8: GPTQ rounding of the 24 int8 weights, key/value projections float
    settings = bundle.manifest.recipe.settings
    assert settings["rounding"] == "gptq" and settings["gptq_weights"] == 24
    assert settings["float_scopes"] == [r"\.Linear_key;", r"\.Linear_value;"]
    session = BundleSession(bundle)
    # issue #10's goal, against sentence-transformers' pooling, on the first 300 SST-2 dev texts
    search = [text for text, _ in sst2_dev(limit=300)]
    ours = np.stack([session.run_text(text)[0]["sentence_embedding"][0] for text in search])
    reference = reference_embeddings(search)
    cosine = np.sum(ours * reference, axis=1)
    assert cosine.min() > 0.99, cosine.min()
    assert neighbour_agreement(ours, reference)["neighbour_agreement"] >= 0.95
    assert validate(bundle.path)["passed"]
    # what an app developer gets next to the model
    vocab = (bundle.path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 30522 and vocab[101] == "[CLS]"
    cases = [json.loads(line) for line in (bundle.path / "tokenizer_cases.jsonl").read_text().splitlines()]
    assert len(cases) >= 200
    assert any(len(c["input_ids"]) == 128 and c["untruncated_length"] > 128 for c in cases)
    assert any("é" in c["text"] for c in cases) and any("🚀" in c["text"] for c in cases)
    encoder = session.encoder
    for case in cases:
        assert encoder.encode(case["text"]).ids.tolist() == case["input_ids"], case["text"]
    guide = (bundle.path / "ANDROID.md").read_text()
    assert "seq_16" in guide and "seq_128" in guide and "runSignature" in guide and "sentence_embedding" in guide
    # bench: end-to-end latency next to the model's for every length, and the roofline against the int8 peak
    result = bench(bundle.path, threads=2, seq_lengths=(16, 128), warmup=1, runs=5)
    assert [row["seq_length"] for row in result["latency"]] == [16, 128]
    for row in result["latency"]:
        assert row["padded_to"] == row["seq_length"]  # a signature per length
        assert row["e2e"]["p50_ms"] >= row["p50_ms"] > 0 and row["overhead_pct"] >= 0
        assert row["flops"] == bundle.manifest.flops.per_seq_length[str(row["seq_length"])] > 0
        assert row["gflops_per_s"] > 0 and row["pct_of_peak"] > 0
    assert result["roofline"]["compared_with"] == "int8" and result["roofline"]["peak"]["int8"]["gflops_per_s"] > 0


@pytest.mark.slow
def test_minilm_full_int16x8_verdict_is_the_profiles_gates_on_its_figures(tmp_path):
    """Real weights, shipped android profile: the a16w8 attempt is converted, its integer claim is read
    back from the file, and written exactly as the profile's gates say for its figures: it is written
    (measured: cosine 0.9983, worst 0.9934, above the profile's gates) and the written bundle validates."""
    from conftest import sst2_dev

    golden = [text for text, _ in sst2_dev(limit=32)]
    (outcome,) = convert(
        None, "android", tmp_path, texts=golden, formats=["tflite"], recipes=["full-int16x8"], log=lambda _: None
    )
    recipe = load_profile("android").formats["tflite"].recipe("full-int16x8")
    verdicts = TASKS["feature-extraction"].gate(outcome.parity, None, recipe.gates)
    assert outcome.passed == passed(verdicts) and outcome.required is False
    settings = outcome.settings
    assert settings["activations"].startswith("int16") and settings["integer_graph"] == (not settings["float_ops"])
    # the encoder itself is integer: matmuls, softmax, GELU and LayerNorm arithmetic run on int16 activations
    assert not {"FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX", "GELU", "RSQRT", "SQUARED_DIFFERENCE"} & set(
        settings["float_ops"]
    )
    assert outcome.passed and outcome.bundle is not None, outcome.error  # real MiniLM a16w8 is written
    bundle = open_bundle(outcome.bundle)
    assert bundle.manifest.to_dict()["recipe"]["settings"] == settings and validate(outcome.bundle)["passed"]
    assert _flatbuffer_float_ops(bundle.model_path) == settings["float_ops"]  # the claim, read back from the file


def test_tflite_validate_and_bench_run_without_torch(converted):
    """The device side: ai-edge-litert + tokenizers + numpy, with torch/transformers/tensorflow blocked."""
    bundle = str(converted["distilbert"]["dynamic-int8"].bundle)
    stdout = run_cli_without_frameworks(["validate", bundle], ["bench", bundle, "--runs", "3", "--warmup", "1"])
    assert "PASS" in stdout and "p50" in stdout and "e2e p50" in stdout and "GFLOP/s int8" in stdout


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_integer_friendly_copy_computes_the_same_function(arch, tiny_models):
    """The full-integer recipes' export: every LayerNorm as MulLayerNorm, same outputs, the original untouched."""
    import torch
    import transformers
    from torch import nn

    from edge_bert.formats.tflite.export import MulLayerNorm, integer_friendly

    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_models[arch]).eval()
    norms = sum(isinstance(m, nn.LayerNorm) for m in model.modules())
    friendly = integer_friendly(model)
    assert sum(isinstance(m, MulLayerNorm) for m in friendly.modules()) == norms
    assert not any(isinstance(m, nn.LayerNorm) for m in friendly.modules())
    assert sum(isinstance(m, nn.LayerNorm) for m in model.modules()) == norms  # a copy was changed
    batch = transformers.AutoTokenizer.from_pretrained(tiny_models[arch])("the ferry was late", return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(friendly(**batch).logits, model(**batch).logits, atol=1e-5)
