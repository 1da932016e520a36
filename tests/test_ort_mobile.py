"""The android profile also ships model.ort (ONNX Runtime Mobile), converted by onnxruntime's own tool."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from conftest import save_tiny_model

from edge_bert.bundle import open_bundle
from edge_bert.convert.pipeline import convert
from edge_bert.session import BundleSession


def test_android_onnx_bundle_carries_an_ort_model_matching_the_onnx_one(tmp_path, sst2_texts):
    source = save_tiny_model("distilbert", tmp_path / "src")
    outcomes = convert(
        str(source), "android", tmp_path / "out", texts=sst2_texts[:16], formats=["onnx"], log=lambda _: None
    )
    assert {o.recipe for o in outcomes} == {"dynamic-int8", "fp32"}
    for outcome in outcomes:
        assert outcome.passed, outcome.error
        bundle = open_bundle(outcome.bundle)
        assert "model.ort" in bundle.manifest.files  # checksummed like every other file
        mobile = ort.InferenceSession(str(bundle.path / "model.ort"), providers=["CPUExecutionProvider"])
        session = BundleSession(bundle)
        for text in sst2_texts[16:24]:
            encoded = session.encoder.encode(text)
            feeds = session.feeds(encoded.ids, encoded.type_ids)
            expected = session.run_ids(encoded.ids, encoded.type_ids)["logits"]
            np.testing.assert_allclose(mobile.run(["logits"], feeds)[0], expected, atol=1e-5)
