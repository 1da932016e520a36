"""Recipe kinds are described once (edge_bert/recipes.py: KINDS): every descriptor's options class, format and
producer import and agree with each other, and what the descriptor says is what the code using it does."""

from __future__ import annotations

import importlib.util
from dataclasses import fields

import pytest
from conftest import requires

from edge_bert.bench.roofline import PROBE_FILES, precision_of
from edge_bert.errors import ProfileError
from edge_bert.formats.base import ModelFormat, format_class
from edge_bert.profiles import profile_from_dict
from edge_bert.recipes import FORMATS, KINDS, RecipeOptions
from edge_bert.schema import parse

LITERT = requires(importlib.util.find_spec("litert_quantizer") is not None, "the tflite extra is not installed")
OPENVINO = requires(importlib.util.find_spec("nncf") is not None, "the openvino-convert extra is not installed")
MARKS = {"tflite": [LITERT], "openvino": [OPENVINO]}


KIND_PARAMS = [pytest.param(kind, id=f"{kind.format}:{kind.name}", marks=MARKS.get(kind.format, [])) for kind in KINDS]


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_every_recipe_kind_has_one_consistent_descriptor(kind):
    assert FORMATS[kind.format].recipes[kind.name] is kind  # registered once, under its own format
    assert [k for k in KINDS if (k.format, k.name) == (kind.format, kind.name)] == [kind]
    assert issubclass(kind.options, RecipeOptions)
    assert isinstance(parse(kind.options, {}, "recipe"), kind.options)  # a profile may list the kind bare
    producer = kind.load_producer()
    assert callable(producer) and producer.__module__.startswith(f"edge_bert.formats.{kind.format}.")
    names = {f.name for f in fields(kind.options)}
    if kind.rescuable:  # rescue keeps nodes float through the options and asks the format which ones
        assert {"rescue", "keep_float"} <= names
        assert format_class(kind.format).sensitivity is not ModelFormat.sensitivity
    else:
        assert not {"rescue", "keep_float"} & names
    if kind.full_integer:  # a float node would break the integer graph: never rescued, integer peak
        assert not kind.rescuable and kind.precision == "int8"
    assert kind.precision in PROBE_FILES[FORMATS[kind.format].runtime]
    assert precision_of(kind.format, kind.name) == kind.precision


def test_kinds_that_are_rescuable_integer_or_int8_compared():
    """The sets the formats and the roofline used to list by name, now read from the descriptors."""
    by = {attr: {(k.format, k.name) for k in KINDS if getattr(k, attr)} for attr in ("rescuable", "full_integer")}
    assert by["rescuable"] == {
        ("onnx", "dynamic-int8"),
        ("onnx", "static-int8"),
        ("tflite", "dynamic-int8"),
        ("tflite", "weight-only-int8"),
        ("openvino", "static-int8"),
    }
    assert by["full_integer"] == {("tflite", "full-int8"), ("tflite", "full-int16x8")}
    # full-int16x8 multiplies int8 weights with int16 activations: an integer peak (INT8_KINDS missed it)
    assert precision_of("tflite", "full-int16x8") == "int8"
    # weights widened to fp32 at load on a CPU: the fp32 peak
    assert precision_of("tflite", "weight-only-int8") == precision_of("onnx", "fp16") == "fp32"
    assert precision_of("onnx", "int4") == "fp32"  # a kind this edge-bert lacks
    # OpenVINO: bf16 is compared with the bf16 probe, NNCF's weight-only int8 with fp32 like LiteRT's
    assert precision_of("openvino", "bf16") == "bf16" and precision_of("openvino", "weight-int8") == "fp32"
    assert precision_of("openvino", "static-int8") == "int8"


def test_onnx_attention_fusion_follows_the_options_class():
    """QDQ static-int8 has no fuse_attention option (no Attention operator in QDQ form): never fused."""
    from edge_bert.formats.onnx.format import OnnxFormat

    profile = profile_from_dict(
        {
            "name": "fusion",
            "formats": ["onnx"],
            "onnx": {
                "recipes": ["fp32", "dynamic-int8", "static-int8", "unfused"],
                "recipe": {"unfused": {"kind": "dynamic-int8", "fuse_attention": False}},
            },
        }
    )
    recipes = profile.formats["onnx"].recipes
    assert [r.kind for r in recipes] == ["fp32", "dynamic-int8", "static-int8", "dynamic-int8"]
    assert [OnnxFormat._fuses_attention(r) for r in recipes] == [True, True, False, False]
    with pytest.raises(ProfileError, match=r"static-int8\.fuse_attention: unknown key"):
        profile_from_dict(
            {
                "name": "fusion",
                "formats": ["onnx"],
                "onnx": {"recipes": ["static-int8"], "recipe": {"static-int8": {"fuse_attention": True}}},
            }
        )
