"""Target profiles are data: every shipped file parses, errors name what is wrong."""

from __future__ import annotations

import pytest

from edge_bert.errors import ProfileError
from edge_bert.profiles import Gates, list_profiles, load_profile
from edge_bert.recipes import TfliteFullInt16x8Options


def test_shipped_profiles():
    profiles = {p.name: p for p in list_profiles()}
    assert {"x86", "x86-vnni", "rpi4", "rpi5", "android"} <= set(profiles)
    for profile in profiles.values():
        assert profile.formats, profile.name
        assert profile.bench.threads >= 1
        for spec in profile.formats.values():
            assert spec.default_recipe is spec.recipes[0]
    # the ISA difference is data: reduce_range where the CPU lacks int8 dot products
    assert profiles["x86"].formats["onnx"].recipe("dynamic-int8").options.reduce_range is True
    assert profiles["x86-vnni"].formats["onnx"].recipe("dynamic-int8").options.reduce_range is False
    # an attempt, not a requirement: integer activations for NPU delegates are refused for many models
    assert profiles["android"].formats["tflite"].recipe("dynamic-int8").required is True
    # int16 activations, int8 weights: its own typed options
    a16w8 = profiles["android"].formats["tflite"].recipe("full-int16x8")
    assert isinstance(a16w8.options, TfliteFullInt16x8Options) and a16w8.required is False
    assert a16w8.options.calibration_samples == 64
    assert profiles["x86"].formats["onnx"].recipe("fp32").gates.max_rel_error == 0.001


def test_recipe_gates_override_profile_gates():
    profile = load_profile("x86")
    assert profile.formats["onnx"].recipe("dynamic-int8").gates == profile.gates
    assert profile.formats["onnx"].recipe("fp32").gates.min_top1_agreement == 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "a"\nformats = ["onnx"]\n', r"onnx.recipes: missing"),
        ('name = "a"\nformats = ["coreml"]\n', r"unknown format\(s\) \['coreml'\]"),
        ('formats = ["onnx"]\n[onnx]\nrecipes = ["fp32"]\n', "name: missing"),
        ('name = "a"\nformats = ["onnx"]\n[onnx]\nrecipes = ["int4"]\n', "unknown kind 'int4'"),
        (
            'name = "a"\nformats = ["onnx"]\n[gates]\nmin_f1 = 1\n[onnx]\nrecipes = ["fp32"]\n',
            r"gates.min_f1: unknown key",
        ),
        (
            'name = "a"\nformats = ["onnx"]\n[shapes]\npolicy = "static"\n[onnx]\nrecipes = ["fp32"]\n',
            "shapes.seq_lengths: a static shape policy needs them",
        ),
        ("name = ", "not valid TOML"),
        # typed recipe options: a typo is an error naming the key and the keys the recipe kind takes
        (
            'name = "a"\nformats = ["onnx"]\n[onnx]\nrecipes = ["dynamic-int8"]\n'
            "[onnx.recipe.dynamic-int8]\nfuse_atention = false\n",
            r"onnx.recipe.dynamic-int8.fuse_atention: unknown key; known keys here: .*fuse_attention",
        ),
        (
            'name = "a"\nformats = ["onnx"]\n[onnx]\nrecipes = ["fp32"]\nnodes_to_exclude = ["x"]\n',
            r"onnx.nodes_to_exclude: unknown key",
        ),
        (
            'name = "a"\nformats = ["onnx"]\n[onnx]\nrecipes = ["static-int8"]\n'
            '[onnx.recipe.static-int8]\ncalibration_samples = "many"\n',
            r"calibration_samples: expected an integer, got 'many'",
        ),
        (
            'name = "a"\nformats = ["onnx"]\n[onnx]\nrecipes = ["dynamic-int8"]\n'
            '[onnx.recipe.dynamic-int8]\nweight_type = "int4"\n',
            r"weight_type: must be one of 'int8', 'uint8', got 'int4'",
        ),
        (
            'name = "a"\nformats = ["onnx"]\n[gates]\nmin_cosine = "high"\n[onnx]\nrecipes = ["fp32"]\n',
            r"gates.min_cosine: expected a number, got 'high'",
        ),
        ('name = "a"\nformats = ["onnx"]\n[bench]\nruns = 0\n[onnx]\nrecipes = ["fp32"]\n', r"bench.runs: must be ≥ 1"),
        (
            'name = "a"\nformats = ["onnx"]\ndetect = "no"\n[onnx]\nrecipes = ["fp32"]\n',
            r"detect: expected true or false",
        ),
        (
            'name = "a"\nformats = ["onnx"]\n[onnx]\nrecipes = ["fp32"]\n[onnx.recipe.fp33]\n',
            r"onnx.recipe.fp33: this recipe",
        ),
        (
            'name = "a"\nformats = ["tflite"]\n[tflite]\nrecipes = ["full-int8"]\n'
            "[tflite.recipe.full-int8]\nrescue = true\n",
            r"tflite.recipe.full-int8.rescue: unknown key",
        ),
        (
            'name = "a"\nformats = ["tflite"]\n[tflite]\nrecipes = ["full-int16x8"]\n'
            "[tflite.recipe.full-int16x8]\nkeep_float = []\n",
            r"tflite.recipe.full-int16x8.keep_float: unknown key; known keys here: required, calibration_samples",
        ),
        (
            'name = "a"\nformats = ["tflite"]\n[tflite]\nrecipes = ["full-int16x8"]\n'
            "[tflite.recipe.full-int16x8]\ncalibration_samples = 0\n",
            r"tflite.recipe.full-int16x8.calibration_samples: must be ≥ 1",
        ),
    ],
)
def test_malformed_profiles(tmp_path, text, message):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message):
        load_profile(path)


def test_custom_recipe_kind(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        'name = "a"\nformats = ["onnx"]\n[onnx]\nrecipes = ["int8-u8"]\n'
        '[onnx.recipe.int8-u8]\nkind = "dynamic-int8"\nweight_type = "uint8"\n'
    )
    recipe = load_profile(path).formats["onnx"].default_recipe
    assert (recipe.name, recipe.kind, recipe.options.weight_type) == ("int8-u8", "dynamic-int8", "uint8")
    assert recipe.options.per_channel is True  # the kind's default for what the table does not say
    assert recipe.gates == Gates()


@pytest.mark.parametrize(
    ("machine", "flags", "expected"),
    [
        ("x86_64", ["avx2", "fma"], "x86"),
        ("x86_64", ["avx2", "avx512_vnni", "avx512f"], "x86-vnni"),
        ("aarch64", ["asimd"], "rpi4"),
        ("aarch64", ["asimd", "asimddp"], "rpi5"),
    ],
)
def test_detect_profile_from_isa(machine, flags, expected):
    from edge_bert.profiles import detect_profile

    assert detect_profile(machine, flags).name == expected


def test_auto_matches_this_machine():
    from edge_bert.fingerprint import fingerprint

    profile = load_profile("auto")
    assert profile.arch == fingerprint()["machine"]
    assert set(profile.isa) <= set(fingerprint()["isa_flags"])
