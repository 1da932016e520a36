"""`finetune` and `distill` for question answering (SQuAD JSON) and token classification (CoNLL): labels
aligned as the runner reads them (hand-checked windows and word pieces), the loss falls on tiny models of
every family, the saved directory has the task's head, and the DistilBERT method distils a QA/NER teacher.

Real tokenizer (MiniLM's), real SQuAD v1.1 dev and WNUT-17 rows, tiny randomly initialised models.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from conftest import SHARED_DATA, minilm_dir, requires, tiny_config
from typer.testing import CliRunner

from edge_bert.cli import app
from edge_bert.errors import InputError
from edge_bert.evaldata import LabelledData, read_labelled
from edge_bert.training.distill import DistillSettings, distill
from edge_bert.training.finetune import FinetuneSettings, finetune
from edge_bert.training.setup import Job
from edge_bert.training.tasks import IGNORE, trainer_for
from edge_bert.training.tasks import ner as ner_task
from edge_bert.training.tasks import qa as qa_task

needs_data = requires(SHARED_DATA.is_dir(), f"labelled data not found at {SHARED_DATA}")
SQUAD = SHARED_DATA / "squad" / "dev-v1.1.json"
WNUT = SHARED_DATA / "ner"


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(minilm_dir())


def save_base(out: Path, family: str) -> Path:
    """A tiny encoder of ``family`` (no head) with the MiniLM tokenizer, as a user's base."""
    torch.manual_seed(0)
    transformers.AutoModel.from_config(tiny_config(family)).save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return out


def qa_rows(questions: list[str], contexts: list[str], answers: list[str]) -> LabelledData:
    starts = [[context.find(answer)] for context, answer in zip(contexts, answers, strict=True)]
    return LabelledData(questions, None, {}, contexts, [[a] for a in answers], starts)


def test_qa_labels_across_a_window_boundary(tokenizer) -> None:
    """Hand-checked: at 24 tokens the answer is in the second window only; the first is labelled [CLS]
    (0, 0) as run_qa.py does, the second with the tokens whose offsets spell the answer exactly."""
    context = "The river flows north through the old town. Many bridges cross it there. " * 2
    context += "The tallest bridge was built by Gustave Eiffelberger in 1889."
    data = qa_rows(["Who built the tallest bridge?"], [context], ["Gustave Eiffelberger"])
    feats = qa_task.features(tokenizer, data, None, 24)
    assert len(feats) > 2 and set(feats.rows) == {0}
    labels = [tuple(int(v) for v in label) for label in feats.labels]
    assert labels[0] == (0, 0)
    answered = [i for i, label in enumerate(labels) if label != (0, 0)]
    assert answered and answered[-1] == len(labels) - 1
    for i in answered:
        start, end = labels[i]
        window = qa_task.runner_qa.windows(qa_task.runner_tokenizer(tokenizer), data.texts[0], context, 24)[i]
        assert context[window.offsets[start][0] : window.offsets[end][1]] == "Gustave Eiffelberger"
        assert window.sequence_ids[start] == window.sequence_ids[end] == 1
    # the piece "eiffelberger" is several word pieces: the label ends on its last piece, not its first
    pieces = tokenizer.tokenize("Eiffelberger")
    assert len(pieces) > 1
    start, end = labels[answered[0]]
    assert end - start + 1 == len(tokenizer.tokenize("Gustave Eiffelberger"))


def test_qa_answer_found_when_the_file_gives_no_offset(tokenizer) -> None:
    data = LabelledData(["Where?"], None, {}, ["It is in Paris."], [["Paris"]], [[-1]])
    feats = qa_task.features(tokenizer, data, None, 64)
    window = qa_task.runner_qa.windows(qa_task.runner_tokenizer(tokenizer), "Where?", "It is in Paris.", 64)[0]
    start, end = (int(v) for v in feats.labels[0])
    assert "It is in Paris."[window.offsets[start][0] : window.offsets[end][1]] == "Paris"
    bad = LabelledData(["Where?"], None, {}, ["It is in Paris."], [["Rome"]], [[-1]])
    with pytest.raises(InputError, match="not in its context"):
        qa_task.features(tokenizer, bad, None, 64)


def test_ner_first_piece_labelled_others_ignored(tokenizer) -> None:
    """Hand-checked: "Ouagadougou" is five pieces (ou ##aga ##dou ##go ##u); only its first carries
    B-location, specials and the other pieces are IGNORE, and every word gets exactly one label."""
    text, tags = "I flew to Ouagadougou today", "O O O B-location O"
    names = ["O", "B-location", "I-location"]
    feats = ner_task.features(tokenizer, LabelledData([text], [tags]), names, 64)
    pieces = tokenizer.convert_ids_to_tokens(feats.ids[0].tolist())
    labels = feats.labels[0].tolist()
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]" and labels[0] == labels[-1] == IGNORE
    assert pieces[4:9] == ["ou", "##aga", "##dou", "##go", "##u"]
    assert labels[4] == 1 and labels[5:9] == [IGNORE] * 4
    assert [label for label in labels if label != IGNORE] == [0, 0, 0, 1, 0]


def test_ner_labels_stop_at_the_cut(tokenizer) -> None:
    """A sentence longer than the length keeps the runner's cut: words past it carry no label."""
    words = [f"word{i}" for i in range(40)]
    data = LabelledData([" ".join(words)], [" ".join(["O"] * 39 + ["B-person"])])
    feats = ner_task.features(tokenizer, data, ["O", "B-person"], 16)
    assert len(feats.ids[0]) == 16 and 1 not in feats.labels[0].tolist()


@needs_data
def test_squad_article_split_is_whole_articles() -> None:
    train = read_labelled(SQUAD, split="articles:0:38")
    held_out = read_labelled(SQUAD, split="articles:38:")
    everything = read_labelled(SQUAD)
    assert len(train) + len(held_out) == len(everything) == 10570
    assert not set(train.contexts) & set(held_out.contexts)
    assert train.answer_starts is not None
    assert all(
        c[s[0] : s[0] + len(a[0])] == a[0]
        for c, s, a in zip(train.contexts, train.answer_starts, train.answers, strict=True)
    )
    for bad in ("articles:60:", "first38", "articles:x:y"):
        with pytest.raises(InputError, match="articles"):
            read_labelled(SQUAD, split=bad)


@needs_data
def test_task_is_picked_from_the_data() -> None:
    squad = read_labelled(SQUAD, split="articles:0:1")
    conll = read_labelled(WNUT / "dev.conll", limit=50)
    assert trainer_for(squad, None).name == "question-answering"
    assert trainer_for(conll, None).name == "token-classification"
    assert trainer_for(LabelledData(["good film", "bad"], ["1", "0"]), None) is None
    with pytest.raises(InputError, match="not question-answering data"):
        trainer_for(conll, "question-answering")
    with pytest.raises(InputError, match="token-classification data"):
        trainer_for(conll, "text-classification")


def _loss_fell(summary: dict) -> bool:
    losses = summary["train_loss_per_epoch"]
    return losses[-1] < 0.8 * losses[0]


@needs_data
@pytest.mark.parametrize("family", ["bert", "distilbert", "albert", "mobilebert"])
def test_finetune_question_answering_learns(family: str, tmp_path: Path) -> None:
    base = save_base(tmp_path / "base", family)
    train = read_labelled(SQUAD, split="articles:0:1", limit=24)
    held_out = read_labelled(SQUAD, split="articles:47:", limit=8)
    settings = FinetuneSettings(epochs=4, lr=1e-3, head_lr=1e-2, batch_size=8, max_length=96)
    summary = finetune(Job(str(base), tmp_path / "qa"), train, settings, held_out)
    assert summary["task"] == "question-answering" and summary["train_features"] >= 24
    assert _loss_fell(summary), summary["train_loss_per_epoch"]
    assert summary["eval"]["rows"] == 8 and 0 <= summary["eval"]["f1"] <= 100
    config = json.loads((tmp_path / "qa" / "config.json").read_text())
    assert config["architectures"][0].endswith("ForQuestionAnswering")


@needs_data
@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_finetune_token_classification_learns(family: str, tmp_path: Path) -> None:
    base = save_base(tmp_path / "base", family)
    train = read_labelled(WNUT / "train.conll", limit=64)
    evaluation = read_labelled(WNUT / "dev.conll", limit=16)
    evaluation = evaluation.subset([i for i, tags in enumerate(evaluation.labels) if set(tags.split()) <= set(
        " ".join(train.labels).split())])  # fmt: skip
    settings = FinetuneSettings(epochs=4, lr=1e-3, head_lr=1e-2, batch_size=8, max_length=64, min_accuracy=0.0)
    summary = finetune(Job(str(base), tmp_path / "ner"), train, settings, evaluation)
    assert summary["task"] == "token-classification" and _loss_fell(summary), summary["train_loss_per_epoch"]
    assert summary["gate"]["metric"] == "entity_f1" and summary["passed"]
    config = json.loads((tmp_path / "ner" / "config.json").read_text())
    assert config["architectures"][0].endswith("ForTokenClassification")
    tags = set(" ".join(train.labels).split())
    assert set(config["id2label"].values()) == tags and config["id2label"]["0"] == "O"


@needs_data
def test_distill_question_answering_teacher(tmp_path: Path) -> None:
    """DistilBERT method on a QA teacher: KD on start/end + CE on the labels + hidden cosine; the
    student keeps the QA head with fewer layers, and is gated on F1 as % of the teacher's."""
    torch.manual_seed(0)
    config = tiny_config("bert", num_hidden_layers=4, num_labels=2)
    transformers.BertForQuestionAnswering(config).save_pretrained(tmp_path / "teacher")
    transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(tmp_path / "teacher")
    train = read_labelled(SQUAD, split="articles:0:1", limit=24)
    held_out = read_labelled(SQUAD, split="articles:47:", limit=8)
    settings = DistillSettings(layers=2, epochs=2, batch_size=8, max_length=96, min_pct_of_teacher=0.0)
    summary = distill(Job(str(tmp_path / "teacher"), tmp_path / "student"), train, settings, held_out)
    assert summary["task"] == "question-answering" and summary["recipe"] == "distilbert"
    terms = summary["loss_per_epoch"]["distill"][0]
    assert {"kd", "ce", "cos", "loss"} <= set(terms) and all(v >= 0 for v in terms.values())
    assert summary["gate"]["metric"] == "f1_pct_of_teacher"
    student = transformers.AutoModelForQuestionAnswering.from_pretrained(tmp_path / "student")
    assert student.config.num_hidden_layers == 2


@needs_data
def test_distill_token_classification_teacher(tmp_path: Path) -> None:
    torch.manual_seed(0)
    train = read_labelled(WNUT / "train.conll", limit=48)
    tags = sorted(set(" ".join(train.labels).split()), key=lambda t: (t != "O", t))
    config = tiny_config("bert", num_hidden_layers=4)
    config.id2label, config.label2id = dict(enumerate(tags)), {t: i for i, t in enumerate(tags)}
    config.num_labels = len(tags)
    transformers.BertForTokenClassification(config).save_pretrained(tmp_path / "teacher")
    transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(tmp_path / "teacher")
    settings = DistillSettings(layers=1, epochs=3, batch_size=8, lr=1e-3, min_pct_of_teacher=0.0)
    summary = distill(Job(str(tmp_path / "teacher"), tmp_path / "student"), train, settings, train)
    losses = [row["loss"] for row in summary["loss_per_epoch"]["distill"]]
    assert summary["task"] == "token-classification" and losses[-1] < losses[0]
    assert set(summary["eval"]["teacher"]) >= {"entity_f1", "precision", "recall"}
    saved = json.loads((tmp_path / "student" / "config.json").read_text())
    assert saved["id2label"] == {str(i): t for i, t in enumerate(tags)} and saved["num_hidden_layers"] == 1


@needs_data
def test_finetune_cli_wrong_task_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["finetune", "--data", str(WNUT / "dev.conll"), "--out", str(tmp_path / "x"), "--task", "question-answering"],
    )
    assert result.exit_code == 2
    assert "not question-answering data" in result.output and "Traceback" not in result.output
