"""Every weight stored once and quantized: ALBERT's layers share one set of weights, and its ONNX files must
keep that through export, onnxruntime's fusions and int8 (fused and unfused graphs, dynamic and static);
every family's int8 file is about a quarter of its fp32 parameters.

Random sentence-embedding models, hidden 256 with the real MiniLM vocabulary (30522 rows), so weights
dominate the files. Both ONNX paths: onnxruntime's optimizer on (the x86 recipes of tiny-random.toml,
static int8 included) and off (the shipped android profile).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import minilm_dir

from edge_bert.convert.architectures import REGISTRY
from edge_bert.convert.pipeline import RecipeOutcome, convert

#: issue #10's goal: an int8 file is at most 26 % of its model's fp32 parameter bytes (25 % is int8 itself)
INT8_SHARE = 0.26
#: an fp32 file is its parameters plus a graph, minus the pooler an embedding graph does not use (1.4 % of
#: these models): within 3 % (ALBERT unshared by onnxruntime's fusions was 2.8x)
FP32_SLACK = 0.03
FUSED = Path(__file__).parent / "profiles" / "tiny-random.toml"
#: (target, recipes) converted for every family, ONNX only
TARGETS = [(FUSED, ["fp32", "dynamic-int8", "static-int8"]), ("android", ["fp32", "dynamic-int8"])]


def size_config(model_type: str):
    """Hidden 256, intermediate 1024; ALBERT with 4 layers so an unshared copy would show 4x."""
    import transformers

    vocab = {"vocab_size": 30522}  # the MiniLM tokenizer's ids
    return {
        "bert": lambda: transformers.BertConfig(
            hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=1024, **vocab
        ),
        "distilbert": lambda: transformers.DistilBertConfig(dim=256, n_layers=2, n_heads=4, hidden_dim=1024, **vocab),
        "albert": lambda: transformers.AlbertConfig(
            embedding_size=128,
            hidden_size=256,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=1024,
            **vocab,
        ),
        "mobilebert": lambda: transformers.MobileBertConfig(
            hidden_size=256,
            embedding_size=128,
            true_hidden_size=128,
            intra_bottleneck_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=512,
            **vocab,
        ),
    }[model_type]()


def save_embedding_model(config, out: Path) -> int:
    """save_pretrained a random sentence-embedding model with the MiniLM tokenizer; returns its fp32
    parameter bytes: unique tensors x 4, a tensor shared by several layers counted once (``parameters()``
    yields it once)."""
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(config)
    model.save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return 4 * sum(p.numel() for p in model.parameters())


def convert_for_sizes(source: Path, out: Path, texts: list[str]) -> dict[tuple[str, str], RecipeOutcome]:
    outcomes = {}
    for target, recipes in TARGETS:
        name = Path(target).stem
        for outcome in convert(
            str(source),
            target,
            out / name,
            texts=texts,
            formats=["onnx"],
            recipes=recipes,
            allow_rescue=False,
            log=lambda _: None,
        ):
            outcomes[name, outcome.recipe] = outcome
    return outcomes


@pytest.fixture(scope="module")
def sized(tmp_path_factory, sst2_texts) -> dict[str, tuple[int, dict[tuple[str, str], RecipeOutcome]]]:
    root = tmp_path_factory.mktemp("sized")
    result = {}
    for arch in sorted(REGISTRY):
        parameters = save_embedding_model(size_config(arch), root / arch)
        result[arch] = (parameters, convert_for_sizes(root / arch, root / f"{arch}-out", sst2_texts[:12]))
    return result


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_fp32_holds_each_parameter_once_and_int8_a_quarter(arch, sized):
    parameters, outcomes = sized[arch]
    too_big = {}
    for (target, recipe), outcome in outcomes.items():
        assert outcome.passed, f"{arch} {target} {recipe}: {outcome.error}"
        share = outcome.model_bytes / parameters
        if share > (1 + FP32_SLACK if recipe == "fp32" else INT8_SHARE):
            too_big[f"{target} {recipe}"] = round(share, 4)
    assert not too_big, f"{arch}: file bytes / fp32 parameter bytes {too_big}"


def test_albert_fp32_stores_its_shared_weights_once(sized):
    parameters, outcomes = sized["albert"]
    for target in ("tiny-random", "android"):
        size = outcomes[target, "fp32"].model_bytes
        assert abs(size / parameters - 1) <= FP32_SLACK, f"{target}: {size} bytes for {parameters} parameter bytes"


def test_albert_layers_are_all_fused(sized):
    """Sharing must not cost fusions: every one of ALBERT's 4 layers has its Attention fused."""
    import json

    _, outcomes = sized["albert"]
    manifest = json.loads((outcomes["tiny-random", "fp32"].bundle / "manifest.json").read_text())
    ops = manifest["export"]["fusions"]["ops"]
    assert ops["Attention"] == 4 and ops["SkipLayerNormalization"] == 8 and manifest["export"]["fusions"]["kept"]


@pytest.mark.slow
def test_albert_base_is_47_mb_fp32_and_under_14_mb_int8(tmp_path, sst2_texts):
    """albert-base-v2's geometry (vocabulary 30522 for the MiniLM tokenizer): 47.0 MB of parameters, of
    which the embedding graph leaves the pooler (2.4 MB) out. Measured before the weights were shared: x86
    fp32 122.4 MB, dynamic int8 31.0 MB; android dynamic int8 39.8 MB."""
    import transformers

    config = transformers.AlbertConfig(
        hidden_size=768, num_attention_heads=12, intermediate_size=3072, embedding_size=128, vocab_size=30522
    )
    parameters = save_embedding_model(config, tmp_path / "albert-base")
    outcomes = convert_for_sizes(tmp_path / "albert-base", tmp_path / "out", sst2_texts[:24])
    for (target, recipe), outcome in outcomes.items():
        assert outcome.passed, f"{target} {recipe}: {outcome.error}"
        share = outcome.model_bytes / parameters
        print(f"{target} {recipe}: {outcome.model_bytes / 1e6:.1f} MB, {share:.3f} of {parameters / 1e6:.1f} MB")
        if recipe == "fp32":
            assert 0.93 <= share <= 1 + FP32_SLACK, (target, outcome.model_bytes, parameters)
        else:
            assert outcome.model_bytes <= 14e6 and share <= INT8_SHARE, (target, recipe, outcome.model_bytes)
