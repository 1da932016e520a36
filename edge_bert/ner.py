"""Named-entity recognition on the runner: per-token tag logits -> entities (text, type, character offsets,
score), entity-level micro F1, and CoNLL token/tag files. numpy and the standard library only.

Word-piece aggregation is "first sub-token": a word's tag is its first token's top tag, as BERT's NER
recipe trains it (the other pieces are ignored). Words come from the tokenizer's offsets: for a raw text the
pre-tokenizer's words (``Encoding.word_ids``), for a CoNLL sentence (words joined by single spaces) the
whitespace-separated words, so every CoNLL token gets exactly one tag.

Entity F1 is seqeval's default (conlleval) definition, re-stated here because seqeval is not in the
runner's footprint (tests check it against seqeval on the host): chunks are read from the tag sequence
with conlleval's start/end rules (an ``I-`` after ``O`` or after another type starts an entity), an
entity counts when type, first and last word all match, and precision/recall/F1 are micro-averaged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from edge_bert.errors import InputError
from edge_bert.metrics import pct_of_fp32

OUTSIDE = "O"


@dataclass(frozen=True)
class Entity:
    """One entity: ``text[start:end]``, its type, and the mean top-tag probability of its words."""

    text: str
    type: str
    start: int
    end: int
    score: float

    def as_dict(self) -> dict[str, object]:
        return {"text": self.text, "type": self.type, "start": self.start, "end": self.end, "score": self.score}


def word_starts(word_ids: Sequence[int | None]) -> dict[int, int]:
    """word -> index of its first token (special tokens have no word)."""
    first: dict[int, int] = {}
    for index, word in enumerate(word_ids):
        if word is not None and word not in first:
            first[word] = index
    return first


def whitespace_word_ids(text: str, offsets: Sequence[tuple[int, int]], special: Sequence[int]) -> list[int | None]:
    """The whitespace-separated word of ``text`` each token starts in (None for special tokens)."""
    bounds = np.cumsum([0] + [len(part) + 1 for part in text.split(" ")])  # start of each word
    return [None if flag else int(np.searchsorted(bounds, start, "right") - 1)
            for (start, _), flag in zip(offsets, special, strict=True)]  # fmt: skip


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word) of every entity in one sentence's tags, by conlleval's rules."""
    found = []
    prev_tag, prev_type, begin = OUTSIDE, "", 0
    for index, tag in enumerate([*tags, OUTSIDE]):
        kind, name = tag[0], tag[1:].split("-", maxsplit=1)[-1] or "_"
        if _ends(prev_tag, kind, prev_type, name):
            found.append((prev_type, begin, index - 1))
        if _starts(prev_tag, kind, prev_type, name):
            begin = index
        prev_tag, prev_type = kind, name
    return found


def _ends(prev: str, tag: str, prev_type: str, kind: str) -> bool:
    return prev in "ES" or (prev in "BI" and tag in "BSO") or (prev not in "O." and prev_type != kind)


def _starts(prev: str, tag: str, prev_type: str, kind: str) -> bool:
    return tag in "BS" or (prev in "ESO" and tag in "EI") or (tag not in "O." and prev_type != kind)


def entity_f1(truth: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision, recall and F1 (0 when undefined, as seqeval's default) over sentences' tags."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(predicted)} predicted sentences for {len(truth)} true ones")
    gold = {(row, *chunk) for row, tags in enumerate(truth) for chunk in chunks(tags)}
    guess = {(row, *chunk) for row, tags in enumerate(predicted) for chunk in chunks(tags)}
    correct = len(gold & guess)
    precision = correct / len(guess) if guess else 0.0
    recall = correct / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "entities": float(len(gold))}


def word_tags(rows: np.ndarray, words: int, label_names: Sequence[str]) -> list[str]:
    """Each word's top tag from its first token's row ([words, tags], NaN past what the model saw: O)."""
    tags = [OUTSIDE] * words
    for index, row in enumerate(rows[:words]):
        if np.isfinite(row).all():
            top = int(np.argmax(row))
            tags[index] = label_names[top] if top < len(label_names) else OUTSIDE
    return tags


def entities(
    text: str, probabilities: np.ndarray, word_ids: Sequence[int | None], offsets: Sequence[tuple[int, int]],
    label_names: Sequence[str],
) -> list[Entity]:  # fmt: skip
    """Entities of ``text`` from per-token tag probabilities ([tokens, tags], tokens as ``word_ids``)."""
    first = word_starts(word_ids[: len(probabilities)])
    spans: dict[int, list[int]] = {}
    for index, word in enumerate(word_ids):
        if word is not None:
            spans.setdefault(word, [offsets[index][0], offsets[index][1]])[1] = offsets[index][1]
    words = sorted(first)
    tags = [label_names[int(np.argmax(probabilities[first[w]]))] for w in words]
    scores = [float(np.max(probabilities[first[w]])) for w in words]
    found = []
    for kind, begin, last in chunks(tags):
        start, end = spans[words[begin]][0], spans[words[last]][1]
        found.append(Entity(text[start:end], kind, start, end, float(np.mean(scores[begin : last + 1]))))
    return found


def read_conll(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences of a CoNLL file (``token<TAB>tag`` lines, an empty line after each sentence): words, tags."""
    words: list[list[str]] = []
    tags: list[list[str]] = []
    current: tuple[list[str], list[str]] = ([], [])
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate([*lines, ""], 1):
        if not line.strip():
            if current[0]:
                words.append(current[0])
                tags.append(current[1])
            current = ([], [])
            continue
        fields = line.split()
        if len(fields) < 2:
            raise InputError(f"{path}:{number}: expected 'token<TAB>tag', got {line[:60]!r}")
        current[0].append(fields[0])
        current[1].append(fields[-1])
    if not words:
        raise InputError(f"{path}: contains no sentences")
    return words, tags


@dataclass(frozen=True)
class Words:
    """A text's token ids as the model gets them (cut to the length, keeping the final special token), the
    word each token starts in (None: special) and each token's character offsets."""

    ids: list[int]
    type_ids: list[int]
    word_ids: list[int | None]
    offsets: list[tuple[int, int]]
    cut: bool


def encode_words(tokenizer: Tokenizer, text: str, max_length: int, whitespace: bool) -> Words:
    """Tokenize ``text``; words are whitespace-separated (CoNLL) or the pre-tokenizer's (raw text)."""
    encoding = tokenizer.encode(text)
    ids, types, offsets = list(encoding.ids), list(encoding.type_ids), list(encoding.offsets)
    words = whitespace_word_ids(text, offsets, encoding.special_tokens_mask) if whitespace else list(encoding.word_ids)
    cut = len(ids) > max_length
    if cut:
        keep = slice(None, max_length - 1)
        ids, types, offsets = ids[keep] + ids[-1:], types[keep] + types[-1:], offsets[keep] + offsets[-1:]
        words = words[keep] + [None]
    return Words(ids, types, words, offsets, cut)


def word_row(run: Callable, tokenizer: Tokenizer, text: str, max_length: int) -> tuple[np.ndarray, bool]:
    """Each whitespace-separated word's first-token logits ([max_length, tags], NaN past the words the model
    saw) and whether the text was cut to ``max_length`` tokens."""
    words = encode_words(tokenizer, text, max_length, whitespace=True)
    logits = np.asarray(run(words.ids, words.type_ids), np.float32)[: len(words.ids)]
    row = np.full((max_length, logits.shape[-1]), np.nan, np.float32)
    for word, token in word_starts(words.word_ids).items():
        row[word] = logits[token]
    return row, words.cut


def check_tags(labels: Sequence[str] | None, label_names: Sequence[str] | None) -> None:
    """Each row's label is one tag per word, every tag one of the model's (InputError naming the row)."""
    names = set(label_names or [])
    for number, label in enumerate(labels or [], 1):
        unknown = [tag for tag in str(label).split() if tag not in names]
        if unknown:
            known = ", ".join(sorted(names)[:8])
            raise InputError(
                f"row {number}: tag {unknown[0]!r} is not a tag of the model ({known}); token classification "
                "data gives one tag per word (CoNLL token<TAB>tag files)"
            )


def ner_metrics(
    outputs: np.ndarray, fp32: np.ndarray | None, labels: Sequence[str] | None, label_names: Sequence[str]
) -> dict[str, Any]:
    """Entity F1 (and fp32's, and % of it) on per-word rows, and word-tag agreement with fp32. The words
    are the rows fp32 has (NaN past them), or else the bundle's."""
    real = np.isfinite(outputs if fp32 is None else fp32).all(axis=-1)
    result: dict[str, Any] = {"rows": len(outputs), "words": int(real.sum())}
    if labels is not None:
        truth = [str(label).split() for label in labels]
        for row, tags in enumerate(truth):
            if len(tags) < int(real[row].sum()):
                raise InputError(f"row {row + 1}: {len(tags)} tags for {int(real[row].sum())} words")
        scores = entity_f1(truth, [word_tags(o, len(t), label_names) for o, t in zip(outputs, truth, strict=True)])
        result |= {"entity_f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"],
                   "entities": int(scores["entities"])}  # fmt: skip
        if fp32 is not None:
            reference = entity_f1(truth, [word_tags(o, len(t), label_names) for o, t in zip(fp32, truth, strict=True)])
            result["fp32_entity_f1"] = reference["f1"]
            result["accuracy_pct_of_fp32"] = pct_of_fp32(scores["f1"], reference["f1"])
    if fp32 is not None:
        result["agreement"] = float(np.mean(outputs[real].argmax(-1) == fp32[real].argmax(-1))) if real.any() else None
    return result
