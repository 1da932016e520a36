"""Accuracy rescue on a model made to fail int8: one attention channel scaled up 1000x in V and scaled
back down in the attention output projection. The fp32 function is unchanged, but the projection's
input now has an outlier channel that per-tensor dynamic activation quantization cannot represent.
The rescue must find that projection, keep it float, and pass the shipped gates."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import minilm_dir, sst2_dev, tiny_config, with_static_int8

from edge_bert.bundle import open_bundle
from edge_bert.convert.pipeline import convert
from edge_bert.evaldata import LabelledData
from edge_bert.formats.tflite.sensitivity import short_name
from edge_bert.validate import validate

ROOT = Path(__file__).resolve().parent.parent
LAYER, CHANNEL, SCALE = 1, 5, 1e3


def _load_script():
    """scripts/inject_outlier.py (scripts/ is not a package): the same surgery users run."""
    spec = importlib.util.spec_from_file_location("inject_outlier", ROOT / "scripts" / "inject_outlier.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


inject_outlier = _load_script().inject_outlier


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny BERT sentence encoder (hidden 64), clean and with the outlier; same weights otherwise."""
    import torch
    import transformers

    root = tmp_path_factory.mktemp("rescue-models")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    saved = {}
    for name in ("clean", "outlier"):
        torch.manual_seed(0)
        config = tiny_config("bert", hidden_size=64, intermediate_size=128, num_attention_heads=4)
        model = transformers.AutoModel.from_config(config).eval()
        if name == "outlier":
            inject_outlier(model, LAYER, CHANNEL, SCALE)
        model.save_pretrained(root / name, safe_serialization=True)
        tokenizer.save_pretrained(root / name)
        saved[name] = root / name
    return saved


def test_outlier_keeps_the_fp32_function(models) -> None:
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(models["clean"])
    batch = tokenizer([t for t, _ in sst2_dev(limit=16)], padding=True, return_tensors="pt")
    with torch.no_grad():
        clean, outlier = (transformers.AutoModel.from_pretrained(models[n])(**batch).last_hidden_state for n in models)
    assert torch.allclose(clean, outlier, atol=1e-4)


def android_short(tmp_path: Path) -> Path:
    """The shipped android profile (shipped gates) with two signatures, to keep the test quick. Two, not
    one: litert-torch numbers tensors per signature, and the op kept float must be float in both."""
    profile = tmp_path / "android-short.toml"
    text = (ROOT / "targets" / "android.toml").read_text()
    profile.write_text(text.replace("seq_lengths = [16, 32, 64, 128]", "seq_lengths = [16, 32]"))
    return profile


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("onnx", "/model/encoder/layer.1/attention/output/dense/MatMul"),
        ("tflite", "BertLayer_1/BertAttention_attention/BertSelfOutput_output/Linear_dense"),
    ],
)
def test_rescue_keeps_the_broken_projection_float(models, tmp_path: Path, fmt: str, expected: str) -> None:
    target = "x86-vnni" if fmt == "onnx" else android_short(tmp_path)
    texts = [t for t, _ in sst2_dev(limit=40)]

    def run(model: Path, out: str, rescue: bool):
        (outcome,) = convert(
            str(model), target, tmp_path / out, formats=[fmt], recipes=["dynamic-int8"], texts=texts,
            allow_rescue=rescue, log=lambda _: None,
        )  # fmt: skip
        return outcome

    clean = run(models["clean"], "clean", rescue=True)
    assert clean.passed and clean.rescue is None  # nothing to rescue: plain int8 passes
    failing = run(models["outlier"], "plain", rescue=False)
    assert not failing.passed and "failed its parity gate" in failing.error
    assert failing.parity["worst_cosine"] < 0.9
    rescued = run(models["outlier"], "rescued", rescue=True)
    assert rescued.passed, rescued.error
    info = rescued.rescue
    (kept,) = info["kept_float"]
    assert (short_name(kept) if fmt == "tflite" else kept) == expected
    top = info["ranking"][0]
    assert top["node"] == info["kept_float"][0]
    assert top["error_introduced"] > 3 * info["ranking"][1]["error_introduced"]  # one clear culprit
    sizes = info["bytes"]
    assert sizes["plain"] < sizes["rescued"] < sizes["fp16_estimate"]
    assert all(ms > 0 for ms in info["host_p50_ms"].values())
    bundle = open_bundle(rescued.bundle)
    assert bundle.manifest.recipe.settings["keep_float"] == info["kept_float"]  # both formats record it
    result = validate(rescued.bundle)  # the runner agrees, from the bundle alone
    assert result["passed"] and result["parity"]["worst_cosine"] > 0.97
    assert np.isfinite(result["parity"]["max_abs_error"])


def test_neighbour_gate_alone_triggers_rescue(models, tmp_path: Path) -> None:
    """With the cosine and error gates out of the way, the neighbour gate alone (on labelled data, where it
    decides) refuses the outlier's int8 embeddings (texts lose their nearest text); the rescue keeps the
    broken projection float."""
    profile = tmp_path / "neighbours-only.toml"
    text = (ROOT / "targets" / "x86-vnni.toml").read_text()
    for key, lax in (("min_cosine", -1.0), ("min_worst_cosine", -1.0), ("max_rel_error", 100.0)):
        text = re.sub(rf"^{key} = .*$", f"{key} = {lax}", text, count=1, flags=re.M)
    profile.write_text(
        text.replace(
            "[gates]\n",
            "[gates]\nmin_neighbour_agreement = 0.95\nmin_neighbour_recall = 0.0\nmin_accuracy_pct_of_fp32 = 0.0\n",
        )
    )
    rows = sst2_dev(limit=40)
    texts = [t for t, _ in rows]
    data = LabelledData(texts, [str(y) for _, y in rows], {"name": "sst2-dev-40"})
    (outcome,) = convert(
        str(models["outlier"]), profile, tmp_path / "out", formats=["onnx"], recipes=["dynamic-int8"], texts=texts,
        eval_data=data, log=lambda _: None,
    )  # fmt: skip
    assert outcome.passed, outcome.error
    info = outcome.rescue
    assert set(info["plain_failed_gates"]) == {"min_neighbour_agreement"}
    assert info["plain_failed_gates"]["min_neighbour_agreement"]["value"] < 0.95
    assert info["kept_float"][0] == "/model/encoder/layer.1/attention/output/dense/MatMul"
    assert validate(outcome.bundle, data=data)["gates"]["min_neighbour_agreement"]["value"] >= 0.95


def test_smoothquant_keeps_the_function_and_flattens_the_outlier(models, tmp_path: Path) -> None:
    """SmoothQuant (smooth_alpha) divides the projection's outlier input channel and multiplies its
    weights back: the fp32 graph computes the same, and per-tensor int8 no longer breaks on it."""
    import onnxruntime as ort

    from edge_bert.formats.onnx.smooth import smooth
    from edge_bert.session import make_feeds

    texts = [t for t, _ in sst2_dev(limit=40)]
    profile = tmp_path / "smooth.toml"
    text = (ROOT / "targets" / "x86-vnni.toml").read_text()
    profile.write_text(text.replace("[onnx.recipe.dynamic-int8]\n", "[onnx.recipe.dynamic-int8]\nsmooth_alpha = 0.8\n"))
    options = {"formats": ["onnx"], "recipes": ["dynamic-int8"], "texts": texts, "allow_rescue": False,
               "log": lambda _: None}  # fmt: skip
    (plain,) = convert(str(models["outlier"]), "x86-vnni", tmp_path / "plain", **options)
    (smoothed,) = convert(str(models["outlier"]), profile, tmp_path / "smooth", **options)
    assert plain.parity["worst_cosine"] < 0.9 < smoothed.parity["worst_cosine"]
    assert smoothed.parity["mean_cosine"] > plain.parity["mean_cosine"]
    (fp32,) = convert(str(models["outlier"]), "x86-vnni", tmp_path / "fp32", formats=["onnx"], recipes=["fp32"],
                      log=lambda _: None)  # fmt: skip
    bundle = open_bundle(fp32.bundle)
    dtypes = {spec.name: np.dtype(spec.dtype) for spec in bundle.manifest.inputs}
    feeds = [make_feeds(ids[:n], types[:n], dtypes, n) for ids, types, n in zip(*(bundle.golden()[k] for k in (
        "input_ids", "token_type_ids", "lengths")), strict=True)]  # fmt: skip
    nodes = smooth(bundle.model_path, tmp_path / "smoothed.onnx", feeds[:8], alpha=0.8)
    assert nodes >= 2 * 4  # attention (fused) and 3 projections in each of the 2 layers
    before, after = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in
                     (bundle.model_path, tmp_path / "smoothed.onnx"))  # fmt: skip
    for feed in feeds[8:16]:
        expected, got = before.run(None, feed)[0], after.run(None, feed)[0]
        np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())


def test_static_int8_rescue(models, tmp_path: Path) -> None:
    """QDQ also quantizes the activation x activation MatMuls: attention-times-V reads the outlier
    channel too, so more nodes stay float, the broken projection first."""
    texts = [t for t, _ in sst2_dev(limit=40)]
    (outcome,) = convert(
        str(models["outlier"]),
        with_static_int8("x86-vnni", tmp_path),
        tmp_path,
        recipes=["static-int8"],
        texts=texts,
        log=lambda _: None,
    )
    assert outcome.passed, outcome.error
    kept = outcome.rescue["kept_float"]
    assert kept[0] == "/model/encoder/layer.1/attention/output/dense/MatMul"
    assert "/model/encoder/layer.1/attention/self/MatMul_1" in kept  # probabilities x V
    assert outcome.rescue["bytes"]["rescued"] < outcome.rescue["bytes"]["fp16_estimate"]


def test_rescue_that_cannot_pass_gives_up_cleanly(models, tmp_path: Path) -> None:
    """An unreachable gate: every retry fails, nothing is written, and the outcome describes the plain
    int8 model that was refused (not the last retry's larger file)."""
    impossible = tmp_path / "impossible.toml"
    text = (ROOT / "targets" / "x86-vnni.toml").read_text()
    impossible.write_text(text.replace("max_rel_error = 0.25", "max_rel_error = 0.0", 1))  # int8 never meets it
    texts = [t for t, _ in sst2_dev(limit=40)]
    logs: list[str] = []
    options = {"formats": ["onnx"], "recipes": ["dynamic-int8"], "texts": texts}
    (outcome,) = convert(str(models["outlier"]), impossible, tmp_path / "out", log=logs.append, **options)
    assert not outcome.passed and outcome.rescue is None and "failed its parity gate" in outcome.error
    assert sum("still fails" in line for line in logs) >= 2
    assert not any((tmp_path / "out").iterdir())
    (plain,) = convert(str(models["outlier"]), impossible, tmp_path / "plain", allow_rescue=False, log=print, **options)
    assert outcome.model_bytes == plain.model_bytes and outcome.parity == plain.parity


def test_openvino_static_int8_rescue_keeps_the_broken_projection_float(models, tmp_path: Path) -> None:
    """NNCF static int8 with its SmoothQuant off (with it on, NNCF flattens this outlier itself and plain int8
    passes): the int8 input of the projection crushes every channel but the outlier. The rescue ranks the IR's
    MatMuls by the error each adds, keeps the projection float through NNCF's ignored_scope, and records the cost;
    the written bundle, a .xml and its .bin, passes validate on load."""
    if importlib.util.find_spec("nncf") is None:
        pytest.skip("the openvino-convert extra is not installed")
    profile = tmp_path / "x86-vnni-nosmooth.toml"
    text = (ROOT / "targets" / "x86-vnni.toml").read_text().replace('name = "x86-vnni"', 'name = "nosmooth"')
    profile.write_text(text + "\n[openvino.recipe.static-int8]\nsmooth_alpha = -1.0\n")
    texts = [t for t, _ in sst2_dev(limit=40)]

    def run(model: Path, out: str, rescue: bool):
        (outcome,) = convert(
            str(model), profile, tmp_path / out, formats=["openvino"], recipes=["static-int8"], texts=texts,
            allow_rescue=rescue, log=lambda _: None,
        )  # fmt: skip
        return outcome

    clean = run(models["clean"], "clean", rescue=True)
    assert clean.passed and clean.rescue is None
    failing = run(models["outlier"], "plain", rescue=False)
    assert not failing.passed and "failed its parity gate" in failing.error
    assert failing.parity["worst_cosine"] < 0.9
    rescued = run(models["outlier"], "rescued", rescue=True)
    assert rescued.passed, rescued.error
    info = rescued.rescue
    assert info["kept_float"] == [f"__module.model.encoder.layer.{LAYER}.attention.output.dense/aten::linear/MatMul"]
    assert info["kept_float_labels"] == [f"model.encoder.layer.{LAYER}.attention.output.dense"]
    ranking = info["ranking"]
    assert ranking[0]["node"] == info["kept_float"][0]
    assert ranking[0]["error_introduced"] > 2 * ranking[1]["error_introduced"]  # one clear culprit
    assert ranking[0]["float_bytes"] == 3 * 64 * 64  # its 64x64 weights as fp32 instead of int8
    sizes = info["bytes"]  # .xml + .bin
    assert sizes["plain"] < sizes["rescued"] < sizes["fp16_estimate"]
    assert rescued.model_bytes == sizes["rescued"]
    assert all(ms > 0 for ms in info["host_p50_ms"].values())
    bundle = open_bundle(rescued.bundle)
    assert bundle.manifest.recipe.settings["keep_float"] == info["kept_float"]
    assert bundle.manifest.rescue["method"].startswith("OpenVINO intermediate outputs")
    result = validate(rescued.bundle)
    assert result["passed"] and result["parity"]["worst_cosine"] > 0.97
