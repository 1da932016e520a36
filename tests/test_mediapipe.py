"""MediaPipe Tasks (the client Android apps use) loads the android bundles' ``model.mediapipe.tflite``:
tokenizer, labels and output meaning come from the model's metadata, and what MediaPipe answers agrees
with edge-bert's runner on real SST-2 and CLINC150 dev texts. Tiny random models (a BERT classifier, a
DistilBERT embedder without segment ids) and the real MiniLM; MediaPipe's own Python Tasks, no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, minilm_dir, require_module, requires, save_tiny_model, sst2_dev

require_module("litert_torch", "the tflite extra is not installed")
require_module("mediapipe", "the mediapipe extra is not installed")

from ai_edge_litert.interpreter import Interpreter

from edge_bert.bundle import open_bundle, sha256_file
from edge_bert.convert.pipeline import convert
from edge_bert.evaldata import read_labelled
from edge_bert.formats.tflite.mediapipe import (
    MEDIAPIPE_FILE,
    accented,
    mediapipe_outputs,
    single_signature,
    strip_accents,
    unsupported_tokenizer,
)
from edge_bert.session import BundleSession

pytestmark = requires(SHARED_DATA.is_dir(), f"labelled data not found at {SHARED_DATA}")
PROFILES = Path(__file__).parent / "profiles"
ROOT = Path(__file__).resolve().parent.parent
#: fp32 top-1 probability lead that makes a text's answer clear (metrics.TOP1_MARGIN)
MARGIN = 0.05


def dev_texts(count: int = 120) -> list[str]:
    """Real dev texts: SST-2 sentences and CLINC150 requests evenly spread, and every accented SST-2 one."""
    clinc = read_labelled(SHARED_DATA / "clinc150" / "data_full.json", split="test").texts
    sst2 = [text for text, _ in sst2_dev()]
    spread = [t for texts in (sst2, clinc) for t in texts[:: max(1, len(texts) // count)][:count]]
    return list(dict.fromkeys(spread + [t for t in sst2 if accented(t)]))


def android_tiny(tmp_path: Path) -> Path:
    """The tiny-model gates (untrained logits sit close), the android profile's app extras, two signatures."""
    text = (PROFILES / "tiny-random-tflite.toml").read_text()
    text = text.replace("seq_lengths = [16, 32, 64]", "seq_lengths = [16, 64]\napp_extras = true")
    path = tmp_path / "tiny-android.toml"
    path.write_text(text.replace('name = "tiny-random-tflite"', 'name = "tiny-android"'))
    return path


def android_short(tmp_path: Path) -> Path:
    """The shipped android profile and gates, with two signatures (conversion time)."""
    path = tmp_path / "android-short.toml"
    text = (ROOT / "targets" / "android.toml").read_text()
    path.write_text(text.replace("seq_lengths = [16, 32, 64, 128]", "seq_lengths = [32, 128]"))
    return path


def runner_outputs(bundle: Path, texts: list[str]) -> np.ndarray:
    """What edge-bert's runner answers: class probabilities or the embedding."""
    session = BundleSession(open_bundle(bundle))
    return np.stack([session.answer(text).vector for text in texts])


def check_listed_and_gated(bundle: Path) -> dict:
    manifest = json.loads((bundle / "manifest.json").read_text())
    record = manifest["conversion_check"]["mediapipe"]
    assert record["file"] == MEDIAPIPE_FILE and record["passed"], record
    assert manifest["files"][MEDIAPIPE_FILE]["sha256"] == sha256_file(bundle / MEDIAPIPE_FILE)
    assert all(v["pass"] for v in record["gates"].values())
    guide = (bundle / "ANDROID.md").read_text()
    assert "com.google.mediapipe:tasks-text" in guide and record["task"] in guide and "runSignature" in guide
    return record


def check_refused_without_metadata(bundle: Path, tmp_path: Path, task: str, length: int) -> None:
    """The same graph without the metadata, and the runner's model.tflite, are refused by MediaPipe."""
    output = "logits" if task == "text-classification" else "sentence_embedding"
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(single_signature((bundle / "model.tflite").read_bytes(), length, output, output == "logits"))
    for model in (bare, bundle / "model.tflite"):
        with pytest.raises((RuntimeError, ValueError)):
            mediapipe_outputs(model, ["a text"], task)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mediapipe-tiny")
    golden = [text for text, _ in sst2_dev(limit=32)]
    models = {
        "classifier": save_tiny_model("bert", root / "bert"),
        "embedder": save_tiny_model("distilbert", root / "distilbert", task="feature-extraction"),
    }
    out = {}
    for kind, model in models.items():
        (outcome,) = convert(
            str(model), android_tiny(root), root / "bundles", texts=golden, recipes=["fp32"], log=lambda _: None
        )
        assert outcome.passed, outcome.error
        out[kind] = outcome.bundle
    return out


def test_tiny_classifier_top1_equals_runner_on_clear_texts(tiny, tmp_path):
    bundle = tiny["classifier"]
    record = check_listed_and_gated(bundle)
    assert record["task"] == "TextClassifier" and record["seq_length"] == 64
    texts = dev_texts()
    ours = runner_outputs(bundle, texts)
    # what ANDROID.md's Kotlin does: strip accents as the model's tokenizer does, then call MediaPipe
    theirs = mediapipe_outputs(bundle / MEDIAPIPE_FILE, [strip_accents(t) for t in texts], "text-classification")
    np.testing.assert_allclose(theirs.sum(axis=1), 1.0, atol=1e-5)  # probabilities, not logits
    top2 = np.sort(ours, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) >= MARGIN
    assert clear.sum() >= 50 and sum(map(accented, texts)) >= 3
    assert (theirs.argmax(axis=1) == ours.argmax(axis=1))[clear].all()
    # fp32 at one padded length against the runner's smallest fitting signature: the same numbers
    assert np.abs(theirs - ours).max() < 1e-4
    check_refused_without_metadata(bundle, tmp_path, "text-classification", 64)


def test_tiny_embedder_without_segment_ids_gets_a_third_input(tiny, tmp_path):
    bundle = tiny["embedder"]
    record = check_listed_and_gated(bundle)
    assert record["task"] == "TextEmbedder"
    interpreter = Interpreter(model_path=str(bundle / MEDIAPIPE_FILE))
    names = [d["name"] for d in interpreter.get_input_details()]
    assert names == ["input_ids", "attention_mask", "token_type_ids"]  # the order MediaPipe's BERT graph takes
    texts = dev_texts(60)
    theirs = mediapipe_outputs(bundle / MEDIAPIPE_FILE, [strip_accents(t) for t in texts], "feature-extraction")
    cosine = cosines(runner_outputs(bundle, texts), theirs)
    assert cosine.min() >= 0.999999, cosine.min()
    check_refused_without_metadata(bundle, tmp_path, "feature-extraction", 64)


def test_metadata_names_the_bert_tokenizer_and_its_parser_version(tiny):
    from mediapipe.tasks.python.metadata import metadata  # importable once the writer has been set up

    shown = json.loads(
        metadata.MetadataDisplayer.with_model_file(str(tiny["classifier"] / MEDIAPIPE_FILE)).get_metadata_json()
    )
    graph = shown["subgraph_metadata"][0]
    assert shown["min_parser_version"] == "1.1.0"  # BertTokenizerOptions and a vocabulary file
    assert [t["name"] for t in graph["input_tensor_metadata"]] == ["ids", "mask", "segment_ids"]
    assert graph["input_process_units"][0]["options_type"] == "BertTokenizerOptions"
    assert graph["output_tensor_metadata"][0]["associated_files"][0]["name"] == "labels.txt"


def test_cased_or_non_wordpiece_tokenizers_get_no_mediapipe_model():
    from transformers import AutoTokenizer

    assert unsupported_tokenizer(AutoTokenizer.from_pretrained(minilm_dir())) is None
    cased = AutoTokenizer.from_pretrained(minilm_dir(), do_lower_case=False)
    assert "cased" in unsupported_tokenizer(cased)


def test_minilm_android_int8_and_fp32_embeddings_match_the_runner(tmp_path):
    """Real weights, the shipped android gates: MediaPipe's TextEmbedder against the runner on dev texts."""
    golden = [text for text, _ in sst2_dev(limit=32, offset=400)]
    outcomes = convert(
        None, android_short(tmp_path), tmp_path, texts=golden, formats=["tflite"], recipes=["dynamic-int8", "fp32"],
        log=lambda _: None,
    )  # fmt: skip
    texts = dev_texts()
    for outcome in outcomes:
        assert outcome.passed, outcome.error
        record = check_listed_and_gated(outcome.bundle)
        assert record["seq_length"] == 128
        model, ours = outcome.bundle / MEDIAPIPE_FILE, runner_outputs(outcome.bundle, texts)
        theirs = mediapipe_outputs(model, [strip_accents(t) for t in texts], "feature-extraction")
        cosine = cosines(ours, theirs)
        assert cosine.min() >= 0.999, (outcome.recipe, cosine.min())
        np.testing.assert_allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-3)  # normalised in the model
        # why the app strips accents: MediaPipe's tokenizer keeps them, the model's vocabulary has none
        marked = np.array([accented(t) for t in texts])
        raw = mediapipe_outputs(model, [t for t in texts if accented(t)], "feature-extraction")
        assert cosines(ours[marked], raw).min() < 0.99
    check_refused_without_metadata(outcomes[0].bundle, tmp_path, "feature-extraction", 128)
