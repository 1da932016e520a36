"""Named-entity recognition: entities from BIO tags (first sub-token, the tokenizer's offsets), entity F1 as
seqeval counts it (checked against seqeval itself), CoNLL data, and tiny taggers of every family converted,
validated on WNUT-17 and answering entities. Also: heads edge-bert does not support are refused."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, minilm_dir, requires, tiny_config
from tokenizers import Tokenizer

from edge_bert.bundle import open_bundle
from edge_bert.convert.architectures import REGISTRY
from edge_bert.convert.pipeline import convert
from edge_bert.errors import InputError
from edge_bert.evaldata import read_labelled
from edge_bert.ner import chunks, entities, entity_f1, read_conll
from edge_bert.session import BundleSession
from edge_bert.tasks import infer_task
from edge_bert.validate import validate

TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"
NER = SHARED_DATA / "ner"
TAGS = ["O"] + [f"{p}-{t}" for t in ("corporation", "creative-work", "group", "location", "person", "product")
                for p in "BI"]  # fmt: skip
needs_data = requires(NER.is_dir(), "the shared WNUT-17 data is not here")


def _tokenizer() -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def save_ner_model(model_type: str, out: Path) -> Path:
    """A tiny random ``…ForTokenClassification`` with WNUT-17's 13 tags and the real MiniLM tokenizer."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = tiny_config(model_type, num_labels=len(TAGS), id2label=dict(enumerate(TAGS)),
                         label2id={t: i for i, t in enumerate(TAGS)})  # fmt: skip
    transformers.AutoModelForTokenClassification.from_config(config).save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return out


def test_unsupported_heads_are_refused_with_one_line():
    heads = ("BertForMaskedLM", "DistilBertForMultipleChoice", "BertForPreTraining", "AlbertForNextSentencePrediction")
    for head in heads:
        with pytest.raises(InputError) as caught:
            infer_task([head])
        message = str(caught.value)
        assert head in message and "--task feature-extraction" in message and "question-answering" in message
        assert "\n" not in message
    assert infer_task(["BertModel"]).name == "feature-extraction"
    assert infer_task(["MobileBertForQuestionAnswering"]).name == "question-answering"


def test_masked_lm_checkpoint_is_refused_unless_told(tmp_path):
    import torch
    import transformers

    torch.manual_seed(0)
    transformers.AutoModelForMaskedLM.from_config(tiny_config("bert")).save_pretrained(tmp_path / "mlm")
    transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(tmp_path / "mlm")
    with pytest.raises(InputError, match="BertForMaskedLM"):
        convert(str(tmp_path / "mlm"), TINY_PROFILE, tmp_path / "out", recipes=["fp32"], log=lambda _: None)
    (outcome,) = convert(str(tmp_path / "mlm"), TINY_PROFILE, tmp_path / "out", task="feature-extraction",
                         recipes=["fp32"], log=lambda _: None)  # fmt: skip
    assert outcome.passed and open_bundle(outcome.bundle).task == "feature-extraction"


def test_chunks_and_f1_match_seqeval():
    """Random BIO sequences (also ill-formed: I- after O, type switches): the same entities and scores."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities

    rng = random.Random(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    truth = [[rng.choice(tags) for _ in range(rng.randint(1, 9))] for _ in range(300)]
    guess = [[t if rng.random() < 0.7 else rng.choice(tags) for t in row] for row in truth]
    for row in truth + guess:
        assert chunks(row) == get_entities(row)
    ours = entity_f1(truth, guess)
    assert ours["f1"] == pytest.approx(f1_score(truth, guess))
    assert ours["precision"] == pytest.approx(precision_score(truth, guess))
    assert ours["recall"] == pytest.approx(recall_score(truth, guess))
    assert 0.2 < ours["f1"] < 0.9  # a case where the definitions could disagree, not a trivial 0 or 1


@needs_data
def test_f1_on_wnut_matches_seqeval():
    from seqeval.metrics import f1_score

    _, truth = read_conll(NER / "dev.conll")
    rng = random.Random(1)
    guess = [[t if rng.random() < 0.9 else rng.choice(TAGS) for t in row] for row in truth]
    assert entity_f1(truth, truth)["f1"] == 1.0 and entity_f1(truth, truth)["entities"] == 836  # README's count
    assert entity_f1(truth, guess)["f1"] == pytest.approx(f1_score(truth, guess))


def test_entities_use_first_sub_token_and_offsets():
    """'Gardena' is garden+##a, 'Redondo' red+##ond+##o: the first piece's tag decides, the others are ignored
    (even when they say something else); offsets cover the whole words."""
    text = "Alice flew to Gardena and Redondo Beach with @jlopez"
    encoding = _tokenizer().encode(text)
    names = ["O", "B-person", "I-person", "B-location", "I-location"]
    chosen = {"alice": 1, "garden": 3, "##a": 1, "red": 3, "##ond": 0, "##o": 2, "beach": 4}
    probabilities = np.full((len(encoding.ids), len(names)), 0.05)
    for row, token in enumerate(encoding.tokens):
        probabilities[row, chosen.get(token, 0)] = 0.8
    probabilities[1, 1] = 0.6  # alice: a lower score
    found = entities(text, probabilities, encoding.word_ids, encoding.offsets, names)
    assert [(e.text, e.type, e.start, e.end) for e in found] == [
        ("Alice", "person", 0, 5), ("Gardena", "location", 14, 21), ("Redondo Beach", "location", 26, 39)
    ]  # fmt: skip
    assert [e.score for e in found] == pytest.approx([0.6, 0.8, 0.8])
    assert all(text[e.start : e.end] == e.text for e in found)


@needs_data
def test_conll_files_read_as_labelled_data():
    data = read_labelled(NER / "dev.conll")
    assert len(data) == 1009 and sum(len(t.split()) for t in data.texts) == 15733  # README's counts
    assert all(len(t.split()) == len(label.split()) for t, label in zip(data.texts, data.labels, strict=True))
    assert len(read_labelled(NER / "test.conll", limit=7)) == 7


@needs_data
@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_every_family_gates_entity_f1_and_answers_entities(arch, tmp_path):
    """fp32 and int8 bundles of a tiny tagger: fp32 entity F1 stored at convert, validate --data measures the
    bundle's own on the same sentences (per word, first sub-token), and the session answers entities."""
    source = save_ner_model(arch, tmp_path / "model")
    data = read_labelled(NER / "test.conll", limit=30)
    outcomes = convert(str(source), TINY_PROFILE, tmp_path / "out", recipes=["fp32", "dynamic-int8"],
                       eval_data=data, log=lambda _: None)  # fmt: skip
    for outcome in outcomes:
        assert outcome.passed, (arch, outcome.recipe, outcome.error)
        result = validate(outcome.bundle, data=data)
        metrics = result["accuracy"]["metrics"]
        assert metrics["rows"] == 30 and metrics["words"] == sum(len(t.split()) for t in data.texts)
        assert metrics["entities"] == sum(label.count("B-") for label in data.labels)
        assert "fp32_entity_f1" in metrics and 0.0 <= metrics["entity_f1"] <= 1.0
        assert result["gates"]["min_prediction_agreement"]["decides"] and result["passed"], result["gates"]
    fp32 = validate(outcomes[0].bundle, data=data)["accuracy"]["metrics"]
    assert fp32["agreement"] == 1.0 and fp32["entity_f1"] == fp32["fp32_entity_f1"]
    session = BundleSession(open_bundle(outcomes[0].bundle))
    text = data.texts[0]
    for entity in session.entities(text):
        assert text[entity.start : entity.end] == entity.text and entity.type in {t[2:] for t in TAGS[1:]}
    with pytest.raises(InputError, match="token-classification, not question-answering"):
        session.answer_question("who?", text)


@needs_data
def test_tags_the_model_does_not_have_are_refused(tmp_path):
    source = save_ner_model("bert", tmp_path / "model")
    path = tmp_path / "bad.conll"
    path.write_text("Paris\tB-city\nis\tO\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="'B-city' is not a tag of the model"):
        convert(str(source), TINY_PROFILE, tmp_path / "out", recipes=["fp32"], eval_data=read_labelled(path),
                log=lambda _: None)  # fmt: skip


def test_run_text_prints_entities_as_json(tmp_path):
    from typer.testing import CliRunner

    from edge_bert.cli.main import app

    source = save_ner_model("bert", tmp_path / "model")
    (outcome,) = convert(str(source), TINY_PROFILE, tmp_path / "out", recipes=["fp32"], log=lambda _: None)
    text = "Alice flew to Gardena"
    result = CliRunner().invoke(app, ["run-text", str(outcome.bundle), text, "--json", "-"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    expected = [e.as_dict() for e in BundleSession(open_bundle(outcome.bundle)).entities(text)]
    assert document["task"] == "token-classification" and len(document["entities"]) == len(expected)
    for got, want in zip(document["entities"], expected, strict=True):
        assert got == {**want, "score": pytest.approx(want["score"])}
    bad = CliRunner().invoke(app, ["run-text", str(outcome.bundle), "--question", "who?", "--context", text])
    assert bad.exit_code == 2 and "takes one TEXT" in bad.output
