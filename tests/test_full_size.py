"""Full-size geometries (slow): DistilBERT-base, ALBERT-base, MobileBERT and BERT-base shapes,
randomly initialised, converted under the shipped x86 profile as sentence-embedding models."""

from __future__ import annotations

import pytest

from edge_bert.convert.pipeline import convert
from edge_bert.validate import validate

pytestmark = pytest.mark.slow


def full_size(model_type: str):
    import transformers

    return {
        "distilbert": transformers.DistilBertConfig(),
        "albert": transformers.AlbertConfig(hidden_size=768, num_attention_heads=12, intermediate_size=3072),
        "mobilebert": transformers.MobileBertConfig(),
        "bert": transformers.BertConfig(num_hidden_layers=4),
    }[model_type]


@pytest.mark.parametrize("arch", ["distilbert", "albert", "mobilebert", "bert"])
def test_full_size_converts_under_shipped_gates(arch, tmp_path, sst2_texts):
    import torch
    import transformers
    from conftest import minilm_dir

    torch.manual_seed(0)
    source = tmp_path / arch
    transformers.AutoModel.from_config(full_size(arch)).save_pretrained(source)
    transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(source)
    outcomes = convert(
        str(source),
        "x86",
        tmp_path / "out",
        texts=sst2_texts[:24],
        formats=["onnx"],
        recipes=["fp32", "dynamic-int8"],
        log=lambda _: None,
    )
    by_recipe = {o.recipe: o for o in outcomes}
    assert by_recipe["fp32"].passed, by_recipe["fp32"].error
    assert by_recipe["dynamic-int8"].passed, by_recipe["dynamic-int8"].error
    assert by_recipe["dynamic-int8"].model_bytes <= 0.3 * by_recipe["fp32"].model_bytes
    assert validate(by_recipe["dynamic-int8"].bundle)["passed"]
