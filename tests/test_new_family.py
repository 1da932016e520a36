"""The worked example of adding a family (docs/architecture.md): ELECTRA needs one ArchitectureConfig entry in
edge_bert/convert/architectures.py's REGISTRY - nothing else in edge_bert/. The test adds that entry (as the
registry would hold it) and a tiny randomly initialised ELECTRA discriminator (built as transformers' own tests
build them, with the real MiniLM vocabulary size) converts to ONNX fp32 and dynamic-int8, passes the parity
gates at convert, and validates. Shipping the family means committing the entry and a tiny config in
tests/conftest.py, so that every family-parametrized test covers it too (ONNX, LiteRT, OpenVINO, tasks)."""

from __future__ import annotations

from pathlib import Path

import transformers
from conftest import LABELS, minilm_dir
from typer.testing import CliRunner

from edge_bert.cli import app
from edge_bert.convert.architectures import _BERT_INPUTS, REGISTRY, ArchitectureConfig
from edge_bert.convert.pipeline import convert

TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"


#: the whole change a new family needs in edge_bert/
ELECTRA = ArchitectureConfig("electra", _BERT_INPUTS, notes="ELECTRA discriminators: embeddings projected to hidden")


def test_electra_is_one_registry_entry_and_converts(tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "electra", ELECTRA)
    config = transformers.ElectraConfig(
        vocab_size=30522,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        initializer_range=0.2,
    )
    source = tmp_path / "electra"
    transformers.ElectraForSequenceClassification(config).save_pretrained(source)
    transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(source)
    assert REGISTRY["electra"].dims(config) == (2, 32, 4, 64)
    recipes = ["fp32", "dynamic-int8"]
    outcomes = convert(str(source), TINY_PROFILE, tmp_path / "out", recipes=recipes, log=lambda _: None)
    assert [(o.recipe, o.passed) for o in outcomes] == [(r, True) for r in recipes], [o.error for o in outcomes]
    for outcome in outcomes:
        result = CliRunner().invoke(app, ["validate", str(outcome.bundle), "--report-dir", str(tmp_path / "r")])
        assert result.exit_code == 0, result.output
