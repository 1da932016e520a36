"""Target profiles are data: every shipped file parses, errors name what is wrong."""

from __future__ import annotations

import pytest

from edge_bert.errors import ProfileError
from edge_bert.profiles import Gates, list_profiles, load_profile


def test_shipped_profiles():
    profiles = {p.name: p for p in list_profiles()}
    assert {"x86", "x86-vnni", "rpi4", "rpi5", "android"} <= set(profiles)
    for profile in profiles.values():
        assert profile.formats, profile.name
        assert profile.bench.threads >= 1
        for spec in profile.formats.values():
            assert spec.default_recipe is spec.recipes[0]
    # the ISA difference is data: reduce_range where the CPU lacks int8 dot products
    assert profiles["x86"].formats["onnx"].recipe("dynamic-int8").options["reduce_range"] is True
    assert profiles["x86-vnni"].formats["onnx"].recipe("dynamic-int8").options["reduce_range"] is False
    assert profiles["x86"].formats["onnx"].recipe("fp32").gates.max_rel_error == 0.001


def test_recipe_gates_override_profile_gates():
    profile = load_profile("x86")
    assert profile.formats["onnx"].recipe("dynamic-int8").gates == profile.gates
    assert profile.formats["onnx"].recipe("fp32").gates.min_top1_agreement == 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "a"\nformats = ["onnx"]\n', r"\[onnx\] needs a 'recipes' list"),
        ('name = "a"\nformats = ["coreml"]\n', r"unknown format\(s\) \['coreml'\]"),
        ('formats = ["onnx"]\n[onnx]\nrecipes = ["fp32"]\n', "missing required key 'name'"),
        ('name = "a"\nformats = ["onnx"]\n[onnx]\nrecipes = ["int4"]\n', "unknown kind 'int4'"),
        ('name = "a"\nformats = ["onnx"]\n[gates]\nmin_f1 = 1\n[onnx]\nrecipes = ["fp32"]\n', r"unknown gate\(s\)"),
        (
            'name = "a"\nformats = ["onnx"]\n[shapes]\npolicy = "static"\n[onnx]\nrecipes = ["fp32"]\n',
            "needs shapes.seq_lengths",
        ),
        ("name = ", "not valid TOML"),
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
    assert (recipe.name, recipe.kind, recipe.options) == ("int8-u8", "dynamic-int8", {"weight_type": "uint8"})
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
