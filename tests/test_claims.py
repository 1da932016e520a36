"""The papers' parameter claims, checked against counts computed from the shipped configs."""

from __future__ import annotations

import pytest

from edge_bert.compare.claims import CLAIMS, MODELS, parameter_claims, parameter_count


def test_meta_device_count_equals_a_built_model():
    import transformers

    # ALBERT-base is small enough to build for real: the meta-device count must be the same number
    real = transformers.AutoModel.from_config(MODELS["albert-base"].config())
    assert parameter_count("albert-base") == sum(p.numel() for p in real.parameters())


def test_each_parameter_claim_is_within_a_few_percent_of_its_config():
    checked = {c.claim.model: c for c in parameter_claims()}
    assert set(checked) == {"bert-base", "distilbert", "tinybert-4", "mobilebert", "albert-base"}
    for name, c in checked.items():
        # papers round (66M, 14.5M) and some count the pooler or the MLM head; 5 % covers both
        assert c.ratio == pytest.approx(1.0, abs=0.05), (name, c.computed, c.claim.value)
    # sharing: ALBERT-base has about a ninth of BERT-base's parameters
    assert checked["bert-base"].computed / checked["albert-base"].computed > 9


def test_every_claim_names_its_hardware_or_is_a_count():
    for claim in CLAIMS:
        if claim.quantity in ("speed-up", "latency-ms"):
            assert claim.hardware != "-", claim
        assert claim.model in MODELS
    albert_speed = [c for c in CLAIMS if c.model == "albert-base" and c.quantity == "speed-up"]
    assert "training" in albert_speed[0].hardware and "not inference" in albert_speed[0].note
