"""The android QA handoff: ``model.qa.tflite`` in the layout the TFLite Task Library's BertQuestionAnswerer
reads (tensorflow/tflite-support bert_question_answerer.cc): names, order, shapes and dtypes read back with
LiteRT, the metadata read back with MediaPipe's displayer, logits equal to the recipe's seq_384 signature.
A tiny random BERT QA model; no phone here, so the library itself is not run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import require_module
from test_question_answering import TFLITE_PROFILE, save_qa_model

from edge_bert.convert.pipeline import convert
from edge_bert.formats.tflite.qa_answerer import QA_FILE, QA_INPUTS, QA_LENGTH, QA_OUTPUTS


def android_like_profile(tmp_path: Path) -> Path:
    """The tiny LiteRT profile with the android profile's app extras (short signatures, fast)."""
    text = TFLITE_PROFILE.read_text().replace(
        "seq_lengths = [16, 32, 64]\n", "seq_lengths = [16, 64]\napp_extras = true\n"
    )
    assert "app_extras = true" in text
    path = tmp_path / "android-like.toml"
    path.write_text(text)
    return path


def test_qa_bundle_has_a_bert_question_answerer_model(tmp_path: Path) -> None:
    require_module("litert_torch", "the tflite extra is not installed")
    require_module("mediapipe", "the mediapipe extra is not installed")
    from ai_edge_litert.interpreter import Interpreter

    source = save_qa_model("bert", tmp_path / "model")
    (outcome,) = convert(str(source), android_like_profile(tmp_path), tmp_path / "out", recipes=["dynamic-int8"],
                         log=lambda _: None)  # fmt: skip
    assert outcome.passed, outcome.error
    manifest = json.loads((outcome.bundle / "manifest.json").read_text())
    record = manifest["conversion_check"]["qa_answerer"]
    assert record["file"] == QA_FILE and record["seq_length"] == QA_LENGTH == 384
    model = outcome.bundle / QA_FILE
    interpreter = Interpreter(model_path=str(model))
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    assert [d["name"] for d in inputs] == list(QA_INPUTS) == ["ids", "mask", "segment_ids"]
    assert [d["name"] for d in outputs] == list(QA_OUTPUTS) == ["end_logits", "start_logits"]
    assert all(list(d["shape"]) == [1, 384] and d["dtype"] == np.int32 for d in inputs)
    assert all(list(d["shape"]) == [1, 384] and d["dtype"] == np.float32 for d in outputs)
    assert interpreter.get_signature_list() == {} or len(interpreter.get_signature_list()) <= 1
    from mediapipe.tasks.python.metadata.metadata import MetadataDisplayer  # importable once the writer ran

    shown = MetadataDisplayer.with_model_file(str(model))
    metadata = json.loads(shown.get_metadata_json())
    graph = metadata["subgraph_metadata"][0]
    assert [t["name"] for t in graph["input_tensor_metadata"]] == ["ids", "mask", "segment_ids"]
    assert [t["name"] for t in graph["output_tensor_metadata"]] == ["end_logits", "start_logits"]
    unit = graph["input_process_units"][0]
    assert unit["options_type"] == "BertTokenizerOptions"
    assert shown.get_packed_associated_file_list() == ["vocab.txt"]
    assert shown.get_associated_file_buffer("vocab.txt") == (outcome.bundle / "vocab.txt").read_bytes()
    guide = (outcome.bundle / "ANDROID.md").read_text()
    assert "BertQuestionAnswerer" in guide and "Not verified" in guide
    # the bundle's own signatures are the profile's and 384; the runner's max_length stays the profile's
    assert set(manifest["shapes"]["signatures"]) == {"seq_16", "seq_64", "seq_384"}
    assert manifest["shapes"]["max_length"] == manifest["tokenizer"]["max_length"] == 64


def test_openvino_qa_export_keeps_the_span_logits_name(tmp_path: Path) -> None:
    """A saved IR kept the traced op's numeric name ("228") next to ``span_logits``; the runner reads the
    given one (before the fix convert died with KeyError 'span_logits')."""
    require_module("openvino", "the openvino extra is not installed")
    from edge_bert.bundle import open_bundle
    from edge_bert.session import BundleSession

    source = save_qa_model("bert", tmp_path / "model")
    profile = Path(__file__).parent / "profiles" / "tiny-random-openvino.toml"
    (outcome,) = convert(str(source), profile, tmp_path / "out", recipes=["fp32"], log=lambda _: None)
    assert outcome.passed, outcome.error
    context = "The quick brown fox jumps over the lazy dog near the river bank."
    span = BundleSession(open_bundle(outcome.bundle)).answer_question("what jumps?", context)
    assert context[span.start : span.end] == span.text and span.text


def test_qa_full_integer_recipe_calibrates_every_signature_including_384(tmp_path: Path) -> None:
    """The 384 signature exists for BertQuestionAnswerer only; a calibrated recipe must calibrate it too (it
    crashed the quantizer with MiniLM on the android profile: 'RESHAPE ... not found in tensor_name_to_qsv')."""
    require_module("litert_torch", "the tflite extra is not installed")
    require_module("mediapipe", "the mediapipe extra is not installed")
    source = save_qa_model("bert", tmp_path / "model")
    (outcome,) = convert(str(source), android_like_profile(tmp_path), tmp_path / "out", recipes=["full-int16x8"],
                         log=lambda _: None)  # fmt: skip
    assert outcome.settings is not None and outcome.settings["calibration_samples"] > 0, outcome.error
    assert outcome.passed or "failed its parity gate" in outcome.error, outcome.error
    if outcome.passed:
        assert (outcome.bundle / QA_FILE).is_file()
