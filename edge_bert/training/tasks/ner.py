"""Token classification (CoNLL token/tag files, as named-entity recognition uses): a sentence is its words
joined by single spaces and tokenized as the runner does (edge_bert/ner.py ``encode_words``: the same
words, the same cut); the first sub-token of each word carries the word's tag and every other token is
``IGNORE`` (BERT's NER recipe, and the runner's first-sub-token decoding). Evaluation is the runner's
entity-level micro F1."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_bert import ner as runner_ner
from edge_bert.errors import InputError
from edge_bert.evaldata import LabelledData
from edge_bert.training.losses import soft_kl
from edge_bert.training.tasks import IGNORE, Features, TaskTrainer, register, run_all, runner_tokenizer


def is_tagged(data: LabelledData) -> bool:
    """One tag per word on every row (a CoNLL file), with more than one word somewhere."""
    if data.labels is None or data.contexts is not None:
        return False
    counts = [(len(t.split()), len(lab.split())) for t, lab in zip(data.texts, data.labels, strict=True)]
    return all(words == tags for words, tags in counts) and any(words > 1 for words, _ in counts)


def tag_names(train: LabelledData, eval_data: LabelledData | None) -> list[str]:
    """The training data's tags, ``O`` first then sorted; a tag only the evaluation data has is an error."""
    seen = Counter(tag for label in train.labels or [] for tag in label.split())
    names = sorted(seen, key=lambda tag: (tag != runner_ner.OUTSIDE, tag))
    unseen = Counter(
        tag for label in (eval_data.labels or [] if eval_data else []) for tag in label.split() if tag not in seen
    )
    if unseen:
        listed = ", ".join(f"{tag!r} ({n} words)" for tag, n in unseen.most_common(5))
        raise InputError(f"tags in the evaluation data never occur in the training data: {listed}")
    return names


def token_labels(word_ids: list[int | None], word_tags: list[int]) -> list[int]:
    """Each token's label: its word's tag on the word's first token, ``IGNORE`` elsewhere."""
    first = runner_ner.word_starts(word_ids)
    return [word_tags[w] if w is not None and first[w] == i else IGNORE for i, w in enumerate(word_ids)]


def features(tokenizer: Any, data: LabelledData, tags: list[str] | None, max_length: int) -> Features:
    index = {tag: i for i, tag in enumerate(tags or [])}
    backend = runner_tokenizer(tokenizer)
    out = Features([], [], [], [])
    for row, (text, label) in enumerate(zip(data.texts, data.labels or [], strict=True)):
        words = runner_ner.encode_words(backend, text, max_length, whitespace=True)
        out.ids.append(torch.tensor(words.ids))
        out.types.append(torch.tensor(words.type_ids))
        out.labels.append(torch.tensor(token_labels(words.word_ids, [index[t] for t in label.split()])))
        out.rows.append(row)
    return out


def supervised(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)


def soft(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL between teacher and student tag distributions, averaged over the real tokens, T^2-scaled."""
    keep = mask.bool()
    return soft_kl(student[keep], teacher.to(student.dtype)[keep], temperature)


def evaluate(model: Any, tokenizer: Any, data: LabelledData, tags: list[str] | None, max_length: int) -> dict:
    """Entity-level micro F1 of the model's tags, read per word as the device reads them."""
    backend = runner_tokenizer(tokenizer)
    names = tags or [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    encoded = [runner_ner.encode_words(backend, text, max_length, whitespace=True) for text in data.texts]
    logits = iter(run_all(model, NER, [w.ids for w in encoded], [w.type_ids for w in encoded]))
    rows = np.stack(
        [runner_ner.word_row(lambda _ids, _types: next(logits), backend, t, max_length)[0] for t in data.texts]
    )
    scores = runner_ner.ner_metrics(rows, None, data.labels, names)
    return {"rows": len(data), **{k: round(float(scores[k]), 5) for k in ("entity_f1", "precision", "recall")},
            "entities": int(scores["entities"])}  # fmt: skip


NER = register(
    TaskTrainer(
        name="token-classification",
        auto_class="AutoModelForTokenClassification",
        metric="entity_f1",
        detect=is_tagged,
        tags=tag_names,
        features=features,
        supervised=supervised,
        soft=soft,
        logits=lambda outputs: outputs.logits,
        collate=lambda labels: nn.utils.rnn.pad_sequence(labels, batch_first=True, padding_value=IGNORE),
        evaluate=evaluate,
    )
)
