"""Extractive question answering (SQuAD-format JSON): features are the runner's own windows of each
context (edge_bert/qa.py ``windows``: the same stride, the same truncation), labelled with the start and
end token of the first gold answer; a window that does not hold the whole answer is labelled with the
[CLS] position 0 for both, as Hugging Face's ``run_qa.py`` does. Evaluation decodes with the runner's
``best_span`` and scores with SQuAD v1.1's exact match and F1."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edge_bert import qa as runner_qa
from edge_bert.errors import InputError
from edge_bert.evaldata import LabelledData
from edge_bert.training.losses import soft_kl
from edge_bert.training.tasks import Features, TaskTrainer, register, run_all, runner_tokenizer


def answer_tokens(encoding: Any, start: int, end: int) -> tuple[int, int]:
    """(first, last) token of the character span [start, end) in this window's context; (0, 0) when the
    window does not hold all of it."""
    context = [i for i, s in enumerate(encoding.sequence_ids) if s == 1]
    if not context:
        return 0, 0
    offsets = encoding.offsets
    first, last = context[0], context[-1]
    if not (offsets[first][0] <= start and offsets[last][1] >= end):
        return 0, 0
    token = first
    while token <= last and offsets[token][0] <= start:
        token += 1
    end_token = last
    while end_token >= first and offsets[end_token][1] >= end:
        end_token -= 1
    return token - 1, end_token + 1


def gold_span(context: str, answer: str, start: int) -> tuple[int, int]:
    """The first gold answer's character span (found in the context when the file gives no offset)."""
    if start < 0 or context[start : start + len(answer)] != answer:
        start = context.find(answer)
    if start < 0:
        raise InputError(f"the answer {answer[:40]!r} is not in its context")
    return start, start + len(answer)


def features(tokenizer: Any, data: LabelledData, _tags: list[str] | None, max_length: int) -> Features:
    if data.contexts is None or data.answers is None:
        raise InputError("question answering needs SQuAD-format data (questions, contexts and answers)")
    backend = runner_tokenizer(tokenizer)
    starts = data.answer_starts or [[-1] * len(a) for a in data.answers]
    out = Features([], [], [], [])
    for row, (question, context) in enumerate(zip(data.texts, data.contexts, strict=True)):
        span = gold_span(context, data.answers[row][0], starts[row][0])
        for encoding in runner_qa.windows(backend, question, context, max_length):
            out.ids.append(torch.tensor(encoding.ids))
            out.types.append(torch.tensor(encoding.type_ids))
            out.labels.append(torch.tensor(answer_tokens(encoding, *span)))
            out.rows.append(row)
    return out


def supervised(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of the start and end cross-entropies over token positions ([batch, tokens, 2] vs [batch, 2])."""
    return (nn.functional.cross_entropy(logits[..., 0], labels[:, 0])
            + nn.functional.cross_entropy(logits[..., 1], labels[:, 1])) / 2  # fmt: skip


def soft(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL between teacher and student start (and end) distributions over the real tokens, T^2-scaled."""
    pad = ~mask.bool()[..., None]
    flat = lambda x: x.masked_fill(pad, -1e4).transpose(1, 2).reshape(-1, x.shape[1])  # noqa: E731
    return soft_kl(flat(student), flat(teacher.to(student.dtype)), temperature)


def evaluate(model: Any, tokenizer: Any, data: LabelledData, _tags: list[str] | None, max_length: int) -> dict:
    """EM/F1 (%) of the model's answers, decoded as the device decodes them (all windows, best span)."""
    backend = runner_tokenizer(tokenizer)
    pairs = list(zip(data.texts, data.contexts or [], strict=True))
    parts = [runner_qa.windows(backend, q, c, max_length) for q, c in pairs]
    flat = [e for windows in parts for e in windows]
    logits = iter(run_all(model, QA, [e.ids for e in flat], [e.type_ids for e in flat]))
    answers = [runner_qa.best_span(backend, lambda _ids, _types: next(logits), q, c, max_length).text for q, c in pairs]
    scores = runner_qa.squad_scores(answers, data.answers or [])
    return {"rows": len(pairs), "windows": len(flat), **{k: round(v, 3) for k, v in scores.items()}}


QA = register(
    TaskTrainer(
        name="question-answering",
        auto_class="AutoModelForQuestionAnswering",
        metric="f1",
        detect=lambda data: data.contexts is not None and data.answers is not None,
        tags=lambda _train, _eval: None,
        features=features,
        supervised=supervised,
        soft=soft,
        logits=lambda outputs: torch.stack((outputs.start_logits, outputs.end_logits), dim=-1),
        collate=lambda labels: torch.stack(labels),
        evaluate=evaluate,
        scale=100.0,
        outputs=2,
    )
)
