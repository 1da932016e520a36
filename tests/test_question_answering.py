"""Extractive question answering: the span decoding (windows with a stride, the best span across windows,
maximum answer length, character offsets, never a no-answer) on hand-made logits through the real tokenizer,
SQuAD v1.1 EM/F1 against hand-worked cases, SQuAD JSON as labelled data, and tiny ``…ForQuestionAnswering``
models of every family converted, validated on SQuAD dev and answering through the session and the CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, minilm_dir, require_module, requires, tiny_config
from tokenizers import Tokenizer

from edge_bert.bundle import open_bundle
from edge_bert.convert.architectures import REGISTRY
from edge_bert.convert.pipeline import convert
from edge_bert.errors import InputError
from edge_bert.evaldata import read_labelled
from edge_bert.qa import best_span, exact_match, f1, normalize_answer, squad_scores, windows
from edge_bert.session import BundleSession
from edge_bert.validate import validate

TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"
TFLITE_PROFILE = Path(__file__).parent / "profiles" / "tiny-random-tflite.toml"
SQUAD = SHARED_DATA / "squad" / "dev-v1.1.json"
needs_squad = requires(SQUAD.is_file(), "the shared SQuAD dev file is not here")
CONTEXT = ("The quick brown fox jumps over the lazy dog in the early morning light while birds sing loudly "
           "overhead and the farmer walks to the old mill by the riverbank.")  # fmt: skip


def _tokenizer() -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _pointing(tokenizer: Tokenizer, start: dict[str, float], end: dict[str, float]):
    """A stand-in for the model that puts the given start/end logits on tokens by their text (0 elsewhere,
    and a large no-answer logit on [CLS], which must never be answered)."""
    vocab = tokenizer.get_vocab()
    start_ids = {vocab[t]: v for t, v in start.items()}
    end_ids = {vocab[t]: v for t, v in end.items()}

    def run(ids, type_ids):
        logits = np.zeros((len(ids), 2))
        logits[:, 0] = [start_ids.get(i, 0.0) if t == 1 else 0.0 for i, t in zip(ids, type_ids, strict=True)]
        logits[:, 1] = [end_ids.get(i, 0.0) if t == 1 else 0.0 for i, t in zip(ids, type_ids, strict=True)]
        logits[0] = [50.0, 50.0]  # [CLS]: the "no answer" of SQuAD 2 models
        return logits

    return run


def test_windows_overlap_by_the_stride():
    parts = windows(_tokenizer(), "who sings?", CONTEXT, max_length=20, stride=4)
    assert len(parts) > 2 and all(len(p.ids) <= 20 for p in parts)
    for before, after in itertools.pairwise(parts):
        context_before = [o for o, s in zip(before.offsets, before.sequence_ids, strict=True) if s == 1]
        context_after = [o for o, s in zip(after.offsets, after.sequence_ids, strict=True) if s == 1]
        assert context_before[-4:] == context_after[:4]  # the stride: 4 tokens in both windows


def test_best_span_across_windows_with_a_multi_piece_word():
    """'riverbank' is river + ##bank and lies in a later window than 'fox'; it scores higher, so it wins,
    with the character offsets of the whole word; [CLS]'s large logits are never an answer."""
    tokenizer = _tokenizer()
    run = _pointing(tokenizer, {"fox": 3.0, "river": 6.0}, {"fox": 3.0, "##bank": 6.0})
    span = best_span(tokenizer, run, "where?", CONTEXT, max_length=20, stride=4)
    where = CONTEXT.index("riverbank")
    assert (span.text, span.start, span.end) == ("riverbank", where, where + 9)
    assert span.window == span.windows - 1 and span.windows > 2
    # alone in its window, p(start) = e^6 / (e^6 + n - 1) for the n context tokens of that window
    assert 0.5 < span.score < 1.0
    weaker = _pointing(tokenizer, {"fox": 3.0, "river": 1.0}, {"fox": 3.0, "##bank": 1.0})
    assert best_span(tokenizer, weaker, "where?", CONTEXT, max_length=20, stride=4).text == "fox"


def test_answer_across_a_window_boundary_is_found_whole():
    """An answer that a window cuts in two is whole in the next window (the stride): 'early morning light'."""
    tokenizer = _tokenizer()
    parts = windows(tokenizer, "when?", CONTEXT, max_length=17, stride=6)
    cut = [p for p in parts if "early" in p.tokens and "light" not in p.tokens]
    assert cut, "the test needs a window ending between 'early' and 'light'"
    run = _pointing(tokenizer, {"early": 5.0}, {"light": 5.0})
    span = best_span(tokenizer, run, "when?", CONTEXT, max_length=17, stride=6)
    assert span.text == "early morning light" and CONTEXT[span.start : span.end] == span.text


def test_max_answer_length_and_no_invented_no_answer():
    tokenizer = _tokenizer()
    run = _pointing(tokenizer, {"quick": 9.0, "lazy": 2.0}, {"dog": 9.0})  # quick..dog is 8 tokens
    assert (
        best_span(tokenizer, run, "what?", CONTEXT, 128, max_answer=8).text == "quick brown fox jumps over the lazy dog"
    )
    assert best_span(tokenizer, run, "what?", CONTEXT, 128, max_answer=7).text == "lazy dog"
    with pytest.raises(InputError):
        best_span(tokenizer, run, "what?", "   ", 128)


def test_squad_normalisation_and_scores_by_hand():
    assert normalize_answer("The  Cat's, hat!") == "cats hat"
    assert normalize_answer("an apple a day") == "apple day"
    assert exact_match("the Denver Broncos.", "Denver Broncos") == 1.0
    assert f1("the cat sat", "a cat sat down") == pytest.approx(0.8)  # P = 2/2, R = 2/3
    assert f1("cat", "dog") == 0.0 and f1("the", "a") == 0.0  # nothing left after normalisation
    scores = squad_scores(["Denver", "in 1990"], [["Denver Broncos", "Denver"], ["1991"]])
    assert scores == {"exact_match": 50.0, "f1": pytest.approx(50.0)}  # max over golds, mean over questions


@needs_squad
def test_squad_json_reads_as_question_context_pairs():
    data = read_labelled(SQUAD)
    assert len(data) == 10570 and sum(len(a) for a in data.answers) == 34726  # the README's counts
    assert data.contexts[0].startswith("Super Bowl 50") and data.references()[0][1][0] == "Denver Broncos"
    assert len(read_labelled(SQUAD, limit=5).items()) == 5


def save_qa_model(model_type: str, out: Path) -> Path:
    """A tiny random ``…ForQuestionAnswering`` (two logits per token) with the real MiniLM tokenizer."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = tiny_config(model_type, num_labels=2, id2label={0: "LABEL_0", 1: "LABEL_1"},
                         label2id={"LABEL_0": 0, "LABEL_1": 1})  # fmt: skip
    transformers.AutoModelForQuestionAnswering.from_config(config).save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return out


@needs_squad
@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_every_family_converts_validates_and_answers(arch, tmp_path):
    """fp32 and int8 ONNX bundles: parity on start/end positions, EM/F1 on SQuAD dev questions as % of the
    fp32 model's (stored at convert with the same decoding), and answers through the session."""
    source = save_qa_model(arch, tmp_path / "model")
    data = read_labelled(SQUAD, limit=12)
    outcomes = convert(str(source), TINY_PROFILE, tmp_path / "out", recipes=["fp32", "dynamic-int8"],
                       eval_data=data, log=lambda _: None)  # fmt: skip
    for outcome in outcomes:
        assert outcome.passed, (arch, outcome.recipe, outcome.error)
        bundle = open_bundle(outcome.bundle)
        assert bundle.task == "question-answering" and bundle.manifest.eval.fp32.keys() == {"exact_match", "f1"}
        golden = bundle.golden()
        assert outcome.parity["samples"] == 2 * len(golden["texts"])  # a start and an end per text
        result = validate(outcome.bundle, data=data)
        metrics = result["accuracy"]["metrics"]
        assert metrics["rows"] == 12 and {"exact_match", "f1", "fp32_f1", "agreement"} <= metrics.keys()
        assert result["passed"], (arch, outcome.recipe, result["gates"])
    fp32 = validate(outcomes[0].bundle, data=data)["accuracy"]["metrics"]
    assert fp32["agreement"] == 1.0 and fp32["f1"] == pytest.approx(fp32["fp32_f1"])
    session = BundleSession(open_bundle(outcomes[0].bundle))
    question, context = data.items()[0]
    span = session.answer_question(question, context)
    assert context[span.start : span.end] == span.text and span.text.strip() and 0 < span.score <= 1
    with pytest.raises(InputError, match="question-answering, not token-classification"):
        session.entities(context)


@needs_squad
def test_run_text_answers_a_question_as_json(tmp_path):
    from typer.testing import CliRunner

    from edge_bert.cli.main import app

    source = save_qa_model("bert", tmp_path / "model")
    (outcome,) = convert(str(source), TINY_PROFILE, tmp_path / "out", recipes=["fp32"], log=lambda _: None)
    question, context = read_labelled(SQUAD, limit=1).items()[0]
    args = ["run-text", str(outcome.bundle), "--question", question, "--context", context, "--json", "-"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)["answer"]
    expected = BundleSession(open_bundle(outcome.bundle)).answer_question(question, context)
    assert (answer["text"], answer["start"], answer["end"]) == (expected.text, expected.start, expected.end)
    bad = CliRunner().invoke(app, ["run-text", str(outcome.bundle), "just a text"])
    assert bad.exit_code == 2 and "--question and --context" in bad.output


def test_litert_export_passes_parity_and_answers(tmp_path):
    require_module("litert_torch", "the tflite extra is not installed")
    source = save_qa_model("bert", tmp_path / "model")
    (outcome,) = convert(str(source), TFLITE_PROFILE, tmp_path / "out", recipes=["fp32"], log=lambda _: None)
    assert outcome.passed, outcome.error
    result = validate(outcome.bundle)
    assert result["passed"], result["gates"]
    span = BundleSession(open_bundle(outcome.bundle)).answer_question("what jumps?", CONTEXT * 3)
    assert span.windows > 1 and (CONTEXT * 3)[span.start : span.end] == span.text
