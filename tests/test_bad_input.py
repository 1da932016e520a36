"""Bad input: each case gets a specific message, and nothing half-written is left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model

from edge_bert.bundle import SCHEMA_VERSION, open_bundle, write_bundle
from edge_bert.convert.pipeline import convert
from edge_bert.errors import BundleError, ConversionError, InputError
from edge_bert.session import BundleSession
from edge_bert.validate import validate

TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"


@pytest.fixture(scope="module")
def good_bundle(tiny_models, sst2_texts, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good")
    (outcome,) = convert(
        str(tiny_models["bert"]), TINY_PROFILE, out, texts=sst2_texts, recipes=["fp32"], log=lambda _: None
    )
    return outcome.bundle


@pytest.fixture
def bundle_copy(good_bundle, tmp_path) -> Path:
    return Path(shutil.copytree(good_bundle, tmp_path / good_bundle.name))


def test_truncated_model_file_is_named(bundle_copy):
    model = bundle_copy / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(BundleError, match=r"model\.onnx: size 1000 bytes, manifest says \d+; the file is truncated"):
        validate(bundle_copy)


def test_corrupt_model_file_same_size_fails_checksum(bundle_copy):
    model = bundle_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.onnx: sha256 does not match the manifest"):
        open_bundle(bundle_copy)


def test_golden_checksum_mismatch(bundle_copy):
    golden = bundle_copy / "golden.npz"
    data = bytearray(golden.read_bytes())
    data[-1] ^= 0xFF
    golden.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"golden\.npz: sha256 does not match"):
        open_bundle(bundle_copy)


def test_unknown_schema_version(bundle_copy):
    manifest_path = bundle_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["schema_version"] = SCHEMA_VERSION + 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"schema_version: {SCHEMA_VERSION + 1} is not supported"):
        open_bundle(bundle_copy)


def test_missing_tokenizer(bundle_copy):
    (bundle_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"tokenizer\.json: listed in the manifest but missing"):
        open_bundle(bundle_copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match=r"no manifest\.json \(a regular file\); this is not an edge-bert bundle"):
        open_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        open_bundle(tmp_path)


def test_unsupported_architecture_writes_nothing(tmp_path):
    import transformers

    model_dir = tmp_path / "gpt2"
    transformers.GPT2Model(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2)).save_pretrained(model_dir)
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match=r"unsupported architecture 'gpt2'; supported: albert, bert, distilbert"):
        convert(str(model_dir), "x86", out, log=lambda _: None)
    assert list(out.iterdir()) == []


def test_unknown_task_and_target(tiny_models, tmp_path):
    with pytest.raises(ConversionError, match="unsupported task 'ner'; supported: text-classification"):
        convert(str(tiny_models["bert"]), "x86", tmp_path, task="ner", log=lambda _: None)
    with pytest.raises(Exception, match="unknown target 'pi9'; built-in targets: android, rpi4, rpi5"):
        convert(str(tiny_models["bert"]), "pi9", tmp_path, log=lambda _: None)


def test_empty_text_list(tiny_models, tmp_path):
    with pytest.raises(InputError, match="the text list is empty"):
        convert(str(tiny_models["bert"]), TINY_PROFILE, tmp_path, texts=[], recipes=["fp32"], log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_empty_text_at_run_time(good_bundle):
    with pytest.raises(InputError, match="empty text"):
        BundleSession(open_bundle(good_bundle)).run_text("   ")


def test_long_text_is_truncated_and_reported(good_bundle, tiny_models, sst2_texts, tmp_path):
    session = BundleSession(open_bundle(good_bundle))
    long_text = " ".join(sst2_texts)
    outputs, encoded = session.run_text(long_text)
    assert encoded.truncated and len(encoded.ids) == 128 and encoded.original_length > 128  # a prefix was read
    assert np.isfinite(outputs["logits"]).all()
    # at conversion the truncation is reported in the manifest and the log, and the ids agree with HF
    messages: list[str] = []
    (outcome,) = convert(
        str(tiny_models["bert"]),
        TINY_PROFILE,
        tmp_path,
        texts=[*sst2_texts[:4], long_text],
        recipes=["fp32"],
        log=messages.append,
    )
    assert any("1 golden text(s) longer than 128 tokens were truncated" in m for m in messages)
    assert open_bundle(outcome.bundle).manifest.golden.truncated_texts == 1
    assert validate(outcome.bundle)["checks"]["tokenizer"]["pass"]


def test_output_dir_not_writable(tiny_models, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(InputError, match=r"output directory .* is not writable: it exists and is not a directory"):
        convert(str(tiny_models["bert"]), TINY_PROFILE, blocker, log=lambda _: None)
    with pytest.raises(InputError, match="is not writable"):
        convert(str(tiny_models["bert"]), TINY_PROFILE, "/proc/edge-bert-out", log=lambda _: None)


def test_interrupted_write_leaves_nothing(tmp_path):
    def populate(staging: Path) -> dict:
        (staging / "model.onnx").write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_bundle(tmp_path / "b", populate)
    assert list(tmp_path.iterdir()) == []


def test_existing_bundle_needs_overwrite(good_bundle, tiny_models, sst2_texts):
    with pytest.raises(InputError, match="already exists; pass --overwrite"):
        convert(
            str(tiny_models["bert"]),
            TINY_PROFILE,
            good_bundle.parent,
            texts=sst2_texts,
            recipes=["fp32"],
            log=lambda _: None,
        )


def test_pickle_only_checkpoint_is_refused(tmp_path):
    model_dir = save_tiny_model("distilbert", tmp_path / "pickled")
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(model_dir / "model.safetensors"), model_dir / "pytorch_model.bin")
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ConversionError, match=r"never unpickles \.bin checkpoints"):
        convert(str(model_dir), TINY_PROFILE, tmp_path / "out", log=lambda _: None)
