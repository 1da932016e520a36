"""Extractive question answering on the runner: question + context -> the answer's text, character offsets
and score, and SQuAD v1.1's exact match and F1. numpy and tokenizers only (no torch).

Long contexts are cut into windows by tokenizers itself (pair truncation of the context only, with a
stride of overlapping tokens), each window is run, and the best span across windows wins: highest start
logit + end logit, as the original BERT ``run_squad.py`` compares windows. Only context tokens are
candidates, so a no-answer is never invented: SQuAD v1.1 always has an answer, and a context with at least
one token always yields a non-empty span (a context with none is bad input). ``score`` is the span's
probability within its window: softmax(start) x softmax(end) over that window's context tokens.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from edge_bert.errors import InputError
from edge_bert.metrics import pct_of_fp32

#: the longest answer considered, in tokens (Hugging Face's question-answering pipeline default)
MAX_ANSWER_TOKENS = 15
#: a window overlaps the previous one by this fraction of the model's length (128 -> 32 tokens)
STRIDE_FRACTION = 4

#: one window through the model: (ids, type ids) -> [tokens, 2] start and end logits
RunSpan = Callable[[Sequence[int], Sequence[int]], np.ndarray]


@dataclass(frozen=True)
class Span:
    """An answer: its text, its character offsets in the context (``context[start:end] == text``), its
    score, and which window it came from (of how many)."""

    text: str
    start: int
    end: int
    score: float
    window: int
    windows: int

    def as_dict(self) -> dict[str, object]:
        return {"text": self.text, "start": self.start, "end": self.end, "score": self.score,
                "window": self.window, "windows": self.windows}  # fmt: skip


def windows(
    tokenizer: Tokenizer, question: str, context: str, max_length: int, stride: int | None = None
) -> list[Encoding]:
    """The pair encodings of ``question`` with successive windows of ``context`` (tokenizers' own overflow,
    ``stride`` tokens shared by neighbouring windows). ``tokenizer`` must not pad."""
    if not question.strip() or not context.strip():
        raise InputError("question answering needs a non-empty question and context")
    stride = max_length // STRIDE_FRACTION if stride is None else stride
    tokenizer.enable_truncation(max_length, stride=stride, strategy="only_second")
    try:
        first = tokenizer.encode(question, context)
    except Exception as exc:  # tokenizers: the question leaves no room for the context
        raise InputError(f"the question is too long for {max_length} tokens with its context: {exc}") from exc
    finally:
        tokenizer.no_truncation()  # the runner's tokenizer is shared and never truncates otherwise
    return [first, *first.overflowing]


def best_span(
    tokenizer: Tokenizer, run: RunSpan, question: str, context: str, max_length: int,
    stride: int | None = None, max_answer: int = MAX_ANSWER_TOKENS,
) -> Span:  # fmt: skip
    """The best answer span across the context's windows (see the module docstring)."""
    found: tuple[float, int, int, int, float] | None = None
    parts = windows(tokenizer, question, context, max_length, stride)
    for number, encoding in enumerate(parts):
        logits = np.asarray(run(encoding.ids, encoding.type_ids), np.float64)[: len(encoding.ids)]
        candidate = _window_best(logits, encoding.sequence_ids, max_answer)
        if candidate is not None and (found is None or candidate[0] > found[0]):
            start, end = encoding.offsets[candidate[1]][0], encoding.offsets[candidate[2]][1]
            found = (candidate[0], start, end, number, candidate[3])
    if found is None:
        raise InputError("the context has no tokens to answer from")
    _, start, end, number, score = found
    return Span(context[start:end], start, end, score, number, len(parts))


def _window_best(logits: np.ndarray, sequence_ids: list[int | None], max_answer: int):
    """(start logit + end logit, start token, end token, probability) of the window's best context span."""
    context = np.asarray([s == 1 for s in sequence_ids], bool)
    if not context.any():
        return None
    start_logits = np.where(context, logits[:, 0], -np.inf)
    end_logits = np.where(context, logits[:, 1], -np.inf)
    pairs = start_logits[:, None] + end_logits[None, :]
    size = len(context)
    allowed = np.triu(np.ones((size, size), bool)) & ~np.triu(np.ones((size, size), bool), max_answer)
    pairs = np.where(allowed, pairs, -np.inf)
    start, end = np.unravel_index(int(np.argmax(pairs)), pairs.shape)
    probability = _softmax_at(start_logits, start) * _softmax_at(end_logits, end)
    return float(pairs[start, end]), int(start), int(end), probability


def _softmax_at(logits: np.ndarray, index: int) -> float:
    finite = logits[np.isfinite(logits)]
    return float(np.exp(logits[index] - finite.max()) / np.exp(finite - finite.max()).sum())


# SQuAD v1.1's official evaluation (evaluate-v1.1.py), re-stated: normalise, then exact match and token F1,
# each the best over the question's gold answers


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace (the official order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCTUATION = frozenset(string.punctuation)


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1(prediction: str, truth: str) -> float:
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """SQuAD v1.1 exact match and F1 in % (max over each question's gold answers, mean over questions)."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} questions")
    em = [max(exact_match(p, a) for a in gold) for p, gold in zip(predictions, answers, strict=True)]
    f = [max(f1(p, a) for a in gold) for p, gold in zip(predictions, answers, strict=True)]
    return {"exact_match": 100.0 * float(np.mean(em)), "f1": 100.0 * float(np.mean(f))}


def squad_metrics(
    outputs: np.ndarray, fp32: np.ndarray | None, references: Sequence[tuple[str, Sequence[str]]] | None
) -> dict[str, Any]:
    """EM/F1 of the answers (rows: start, end, score in the context), fp32's, % of fp32 (the lower of the
    two), and the share of questions answered with fp32's exact span."""
    result: dict[str, Any] = {"rows": len(outputs)}
    if references is not None:
        contexts = [context for context, _ in references]
        answers = [list(gold) for _, gold in references]
        scores = squad_scores(_texts(outputs, contexts), answers)
        result |= scores
        if fp32 is not None:
            reference = squad_scores(_texts(fp32, contexts), answers)
            result |= {"fp32_exact_match": reference["exact_match"], "fp32_f1": reference["f1"]}
            shares = [pct_of_fp32(scores[key], reference[key]) for key in ("exact_match", "f1")]
            result["accuracy_pct_of_fp32"] = None if None in shares else min(s for s in shares if s is not None)
    if fp32 is not None:
        result["agreement"] = float(np.mean(np.all(outputs[:, :2] == fp32[:, :2], axis=1)))
    return result


def _texts(rows: np.ndarray, contexts: Sequence[str]) -> list[str]:
    return [context[int(row[0]) : int(row[1])] for row, context in zip(rows, contexts, strict=True)]


def read_squad(path: Path, split: str | None = None) -> SquadRows | None:
    """Questions, contexts, gold answers and their character starts of a SQuAD-format JSON file (None if the
    file is not one). ``split`` ``articles:A:B`` keeps articles A..B-1 (Python slice, file order), so one file
    gives a training and a held-out set of whole articles (``articles:0:38`` / ``articles:38:``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError):
        return None  # the generic JSON reader says what is wrong
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list) or not all(isinstance(a, dict) and "paragraphs" in a for a in articles):
        return None
    rows = SquadRows([], [], [], [])
    for article in articles[article_slice(split, len(articles), path)]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph.get("qas", []):
                gold = [answer for answer in qa.get("answers", []) if answer.get("text", "").strip()]
                if not gold:
                    raise InputError(f"{path}: question {qa.get('id')!r} has no answer (SQuAD v1.1 has one for each)")
                rows.questions.append(qa["question"])
                rows.contexts.append(paragraph["context"])
                rows.answers.append([answer["text"] for answer in gold])
                rows.starts.append([int(answer.get("answer_start", -1)) for answer in gold])
    return rows


@dataclass(frozen=True)
class SquadRows:
    """One row per question; ``starts`` are the gold answers' character offsets (-1: not given)."""

    questions: list[str]
    contexts: list[str]
    answers: list[list[str]]
    starts: list[list[int]]


def article_slice(split: str | None, count: int, path: Path) -> slice:
    """``articles:A:B`` (either bound may be empty) -> a slice of the file's articles; None: all of them."""
    if split is None:
        return slice(None)
    match = re.fullmatch(r"articles:(-?\d*):(-?\d*)", split)
    if match is None:
        raise InputError(f"{path}: a SQuAD file's --split is articles:A:B (e.g. articles:0:38), got {split!r}")
    bounds = slice(*(int(b) if b else None for b in match.groups()))
    if not range(count)[bounds]:
        raise InputError(f"{path}: --split {split} selects none of its {count} articles")
    return bounds
