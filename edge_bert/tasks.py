"""Tasks on the device: what a task's outputs mean, how they are compared and which gates decide.

One class per task answers every question that differs between tasks - its outputs, the answer an app
gets, parity against fp32, accuracy on labelled data, the deciding gates - so no caller compares task
names. The host side (edge_bert/convert/tasks.py) extends a task with the head to load and the graph to
export around it; it never re-states what is here. A classifier and an embedding model fail in
different ways: the gates that do not decide are still measured and reported ("decides": false), so
nothing is hidden - but a rescue (which costs size and speed) only runs for a gate that matters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from tokenizers import Tokenizer

from edge_bert.accuracy import classification_metrics, embedding_metrics, neighbour_agreement
from edge_bert.errors import InputError
from edge_bert.evaldata import match_labels
from edge_bert.metrics import TOP1_MARGIN, parity, softmax
from edge_bert.ner import check_tags, ner_metrics, word_row
from edge_bert.profiles import Gates
from edge_bert.qa import best_span, squad_metrics

#: one text through the model, batch 1: (ids, type ids) -> the primary output without the batch axis
RunIds = Callable[[Sequence[int], Sequence[int]], np.ndarray]

#: golden parity gates: name -> (metric, direction)
_PARITY_GATES = {
    "min_top1_agreement": ("top1_agreement", "min"),
    "min_cosine": ("mean_cosine", "min"),
    "min_worst_cosine": ("worst_cosine", "min"),
    "max_rel_error": ("max_rel_error", "max"),
    # embeddings only (None for a classifier, so never checked): measured among the golden texts
    "min_neighbour_agreement": ("neighbour_agreement", "min"),
    "min_neighbour_recall": ("neighbour_recall", "min"),
}
#: measured among the golden texts but deciding only on labelled data (Task.deciding_gates says why)
_REPORTED_ON_GOLDEN = {"min_neighbour_agreement", "min_neighbour_recall"}
#: gates on labelled data: name -> metric; where a golden gate has the same name, the data's value
#: (more texts, the user's own domain) replaces the golden one
_DATA_GATES = {
    "min_accuracy_pct_of_fp32": "accuracy_pct_of_fp32",
    "min_prediction_agreement": "agreement",
    "min_neighbour_recall": "neighbour_recall",
    "min_neighbour_agreement": "same_nearest_neighbour",
}


@dataclass(frozen=True)
class Answer:
    """What a bundle answers for one text: a classifier's class probabilities and top class, a sentence
    embedding (normalised inside the graph when the model's ``normalize`` says so: nothing to do here),
    or per-token tag probabilities with each token's top tag."""

    vector: np.ndarray
    index: int | None = None
    label: str | None = None
    #: per token (token classification): the top tag's index and its label (None without labels)
    tags: tuple[int, ...] | None = None
    tag_labels: tuple[str | None, ...] | None = None


class Task:
    """What a task's outputs mean. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    #: the model's outputs, the first being the one golden references store and gates measure
    outputs: ClassVar[tuple[str, ...]]
    #: outputs with a sequence axis (axis 1), dynamic where the model's sequence axis is
    sequence_outputs: ClassVar[tuple[str, ...]] = ()
    #: the suffix of a checkpoint's ``architectures`` entry that says it was saved for this task
    checkpoint_suffix: ClassVar[str | None] = None
    #: whether the model names its classes (config id2label -> the bundle's labels.txt)
    labelled: ClassVar[bool] = False
    #: whether the graph pools a sentence embedding (the manifest records pooling and normalize)
    pools: ClassVar[bool] = False
    #: built-in text sets added to the built-in golden texts (edge_bert/data/)
    golden_extra: ClassVar[tuple[str, ...]] = ()
    #: whether a LiteRT recipe's ``embedding_float`` (attention projections kept float) applies
    keeps_attention_float: ClassVar[bool] = False
    #: the metrics of the fp32 model on labelled data that the bundle's manifest keeps
    fp32_summary: ClassVar[tuple[str, ...]] = ()
    #: whether labelled data is compared through ``data_row`` (words, answer spans) rather than ``row``
    own_rows: ClassVar[bool] = False

    @property
    def primary_output(self) -> str:
        return self.outputs[0]

    def row(self, output: np.ndarray, length: int, width: int) -> np.ndarray:
        """One text's primary output (batch axis removed) as stored and compared: as is, unless the task
        has a value per token (then cut to the text's ``length`` and padded to ``width`` rows)."""
        return output

    def answer(self, outputs: dict[str, np.ndarray], labels: list[str] | None = None) -> Answer:
        """The post-processing of one text's outputs (batch 1). One function for every caller, so bench's
        end-to-end latency times what an app gets."""
        return Answer(outputs[self.primary_output][0])

    def parity(self, outputs: np.ndarray, reference: np.ndarray, gates: Gates | None = None) -> dict[str, float | None]:
        return parity(outputs, reference, False, _margin(gates))

    def evaluate(
        self, outputs: np.ndarray, fp32: np.ndarray | None, labels: Sequence[Any] | None, label_names: list[str] | None
    ) -> dict[str, Any]:
        """Task metrics on labelled (or unlabelled) data, against fp32's outputs on the same texts."""
        raise NotImplementedError

    def check_labels(self, labels: Sequence[Any] | None, label_names: list[str] | None) -> None:
        """Refuse data whose labels the model cannot have produced, before anything runs (InputError)."""
        if self.labelled and labels is not None and label_names:
            match_labels(list(labels), label_names)

    def data_row(
        self, run: RunIds, tokenizer: Tokenizer, item: str | tuple[str, str], max_length: int
    ) -> tuple[np.ndarray, bool]:
        """One labelled item's row for ``evaluate`` and whether its input was cut (tasks with ``own_rows``):
        the same code on the host (fp32 PyTorch) and on the device, so both sides are compared alike."""
        raise NotImplementedError

    def predictions(self, outputs: np.ndarray, reference: np.ndarray) -> dict[str, Any] | None:
        """Per golden text, what the result document lists to compare devices text by text (None: nothing)."""
        return None

    def deciding_gates(self, accuracy: dict[str, Any] | None) -> set[str]:
        """Gates that decide, given the metrics on labelled data (None: golden texts only).

        Golden parity decides; the rank among other texts (``min_neighbour_agreement``,
        ``min_neighbour_recall``) decides on labelled data only - the user's own texts, enough of them to
        mean something - and is measured and reported among the golden texts, where one text of ~200 moves
        it by 0.005 (bundles at 0.953 there scored 0.89-0.91 on 300 SST-2 texts).
        """
        golden = set(_PARITY_GATES) - _REPORTED_ON_GOLDEN
        if accuracy is None:
            return golden
        return golden | {name for name, metric in _DATA_GATES.items() if accuracy.get(metric) is not None}

    def gate(
        self, golden: dict[str, float | None], accuracy: dict[str, Any] | None, gates: Gates
    ) -> dict[str, dict[str, Any]]:
        """Every gate these metrics can answer: threshold, value, pass, and whether it decides."""
        deciding = self.deciding_gates(accuracy)
        checks: dict[str, tuple[Any, str]] = {
            name: (golden.get(metric), direction) for name, (metric, direction) in _PARITY_GATES.items()
        }
        if "min_collapse_cosine" in deciding:
            checks["min_collapse_cosine"] = (golden.get("worst_cosine"), "min")
        for name, metric in _DATA_GATES.items():
            value = (accuracy or {}).get(metric)
            if value is not None or name not in checks:
                checks[name] = (value, "min")
        verdicts = {}
        for name, (value, direction) in checks.items():
            if value is None:
                continue
            threshold = getattr(gates, name)
            ok = value >= threshold if direction == "min" else value <= threshold  # NaN never passes
            verdicts[name] = {"threshold": threshold, "value": value, "pass": bool(ok), "decides": name in deciding}
        return verdicts


def _margin(gates: Gates | None) -> float:
    return TOP1_MARGIN if gates is None else gates.top1_margin


def _probabilities(logits: np.ndarray, labels: list[str] | None) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """Softmax over the last axis, the top index and its label (None past the labels) of each row."""
    probabilities = softmax(logits.reshape(-1, logits.shape[-1])).reshape(logits.shape)
    top = probabilities.argmax(axis=-1)
    names = [labels[i] if labels and i < len(labels) else None for i in np.ravel(top)]
    return probabilities, top, names


class ClassificationTask(Task):
    """A class per text (``…ForSequenceClassification``), compared on softmax probabilities."""

    name = "text-classification"
    outputs = ("logits",)
    checkpoint_suffix = "ForSequenceClassification"
    labelled = True
    fp32_summary = ("accuracy", "macro_f1")

    def answer(self, outputs: dict[str, np.ndarray], labels: list[str] | None = None) -> Answer:
        """Softmax and the top label."""
        probabilities, top, names = _probabilities(outputs[self.primary_output][0], labels)
        return Answer(probabilities, int(top), names[0])

    def parity(self, outputs: np.ndarray, reference: np.ndarray, gates: Gates | None = None) -> dict[str, float | None]:
        return parity(outputs, reference, True, _margin(gates))

    def evaluate(
        self, outputs: np.ndarray, fp32: np.ndarray | None, labels: Sequence[Any] | None, label_names: list[str] | None
    ) -> dict[str, Any]:
        """Accuracy against the labels (only when the model names its classes), agreement with fp32."""
        names = label_names or [str(i) for i in range(outputs.shape[1])]
        ids = match_labels(list(labels), names) if labels is not None and label_names else None
        return classification_metrics(outputs, fp32, ids, names)

    def predictions(self, outputs: np.ndarray, reference: np.ndarray) -> dict[str, Any] | None:
        """Per golden text: the bundle's top-1 class and the fp32 model's margin (top-1 minus top-2
        probability), so results from different devices can be compared text by text."""
        top2 = np.sort(softmax(np.asarray(reference, np.float64)), axis=-1)[:, -2:]
        return {
            "top1": [int(i) for i in np.argmax(outputs, axis=-1)],
            "fp32_top1": [int(i) for i in np.argmax(reference, axis=-1)],
            "fp32_margin": [round(float(m), 6) for m in top2[:, 1] - top2[:, 0]],
        }

    def deciding_gates(self, accuracy: dict[str, Any] | None) -> set[str]:
        """Measured against fp32 on labelled data, a classifier is judged by the task - accuracy as % of
        fp32 and prediction agreement - and its golden probability cosine only guards against a collapse
        (``min_collapse_cosine``): with many classes the worst per-text cosine is dominated by near-ties
        and refused int8 models that kept 99.8 % of fp32's accuracy."""
        if accuracy is not None and accuracy.get("agreement") is not None:
            return {name for name, metric in _DATA_GATES.items() if accuracy.get(metric) is not None} | {
                "min_collapse_cosine"
            }
        return super().deciding_gates(accuracy)


class EmbeddingTask(Task):
    """A sentence embedding (pooled inside the graph). The vector itself is the product, so cosine stays a
    gate, and search is judged by rank: does each text keep its nearest text?"""

    name = "feature-extraction"
    outputs = ("sentence_embedding", "last_hidden_state")
    sequence_outputs = ("last_hidden_state",)
    pools = True
    # a dense set of short texts on few topics, where int8 rounding can reorder neighbours: the 27
    # varied sentences alone are too far apart to show it (min_neighbour_agreement)
    golden_extra = ("neighbours",)
    keeps_attention_float = True
    fp32_summary = ("knn_accuracy",)

    def parity(self, outputs: np.ndarray, reference: np.ndarray, gates: Gates | None = None) -> dict[str, float | None]:
        result = parity(outputs, reference, False, _margin(gates))
        flat = np.asarray(outputs, np.float32).reshape(len(outputs), -1)
        return result | neighbour_agreement(flat, np.asarray(reference, np.float32).reshape(len(reference), -1))

    def evaluate(
        self, outputs: np.ndarray, fp32: np.ndarray | None, labels: Sequence[Any] | None, label_names: list[str] | None
    ) -> dict[str, Any]:
        """Retrieval: nearest neighbours as under fp32, and leave-one-out k-NN accuracy on the labels."""
        ids = np.unique(labels, return_inverse=True)[1] if labels is not None else None
        return embedding_metrics(outputs, fp32, ids)


class TokenClassificationTask(Task):
    """A tag per token (``…ForTokenClassification``, as NER uses), compared on each real token's softmax
    probabilities: per-token cosine and top-1 tag agreement. Rows are padded with NaN past each text's
    tokens, so padding is never compared; a text's answer has one tag per token it was given."""

    name = "token-classification"
    outputs = ("logits",)
    sequence_outputs = ("logits",)
    checkpoint_suffix = "ForTokenClassification"
    labelled = True
    fp32_summary = ("entity_f1",)
    own_rows = True

    def row(self, output: np.ndarray, length: int, width: int) -> np.ndarray:
        return _pad_row(output, length, width)

    def answer(self, outputs: dict[str, np.ndarray], labels: list[str] | None = None) -> Answer:
        """Softmax per token and each token's top tag (padding of a static-length model included)."""
        probabilities, top, names = _probabilities(outputs[self.primary_output][0], labels)
        return Answer(probabilities, tags=tuple(int(i) for i in top), tag_labels=tuple(names))

    def parity(self, outputs: np.ndarray, reference: np.ndarray, gates: Gates | None = None) -> dict[str, float | None]:
        return parity(*_real_tokens(outputs, reference), True, _margin(gates))

    def evaluate(
        self, outputs: np.ndarray, fp32: np.ndarray | None, labels: Sequence[Any] | None, label_names: list[str] | None
    ) -> dict[str, Any]:
        """Per word (``data_row``): entity F1 against the data's tags (one space-separated tag per word),
        fp32's F1 on the same sentences, and word-tag agreement with fp32."""
        return ner_metrics(outputs, fp32, labels, label_names or [])

    def check_labels(self, labels: Sequence[Any] | None, label_names: list[str] | None) -> None:
        check_tags(labels, label_names)

    def data_row(
        self, run: RunIds, tokenizer: Tokenizer, item: str | tuple[str, str], max_length: int
    ) -> tuple[np.ndarray, bool]:
        """The first sub-token's logits of each whitespace-separated word (NaN past the words)."""
        return word_row(run, tokenizer, str(item), max_length)


class QuestionAnsweringTask(Task):
    """An answer span in a context (``…ForQuestionAnswering``): one output ``span_logits`` [tokens, 2] holding
    the start and end logits, so golden and fp32 references keep both. Compared per text as two
    distributions over its real tokens (where the answer starts, where it ends); on labelled data by the
    answers themselves (edge_bert/qa.py: windows, best span, SQuAD exact match and F1)."""

    name = "question-answering"
    outputs = ("span_logits",)
    sequence_outputs = ("span_logits",)
    checkpoint_suffix = "ForQuestionAnswering"
    fp32_summary = ("exact_match", "f1")
    own_rows = True

    def row(self, output: np.ndarray, length: int, width: int) -> np.ndarray:
        return _pad_row(output, length, width)

    def parity(self, outputs: np.ndarray, reference: np.ndarray, gates: Gates | None = None) -> dict[str, float | None]:
        """Start and end position probabilities of every text (2 samples per text); top-1 is the position."""
        return parity(*_positions(outputs, reference), True, _margin(gates))

    def evaluate(
        self, outputs: np.ndarray, fp32: np.ndarray | None, labels: Sequence[Any] | None, label_names: list[str] | None
    ) -> dict[str, Any]:
        """SQuAD exact match and F1 of the answers (rows: start, end, score) and the share of fp32's spans kept;
        ``labels`` are (context, gold answers) per question."""
        return squad_metrics(outputs, fp32, labels)

    def data_row(
        self, run: RunIds, tokenizer: Tokenizer, item: str | tuple[str, str], max_length: int
    ) -> tuple[np.ndarray, bool]:
        """The best span's character offsets and score over every window of the context (never cut)."""
        if not isinstance(item, tuple):
            raise InputError("question answering needs question and context pairs (SQuAD-format JSON)")
        span = best_span(tokenizer, run, item[0], item[1], max_length)
        return np.asarray([span.start, span.end, span.score], np.float32), False


def _pad_row(output: np.ndarray, length: int, width: int) -> np.ndarray:
    """A value per token, cut to the text's ``length`` and padded with NaN to ``width`` rows."""
    padded = np.full((width, *output.shape[1:]), np.nan, np.float32)
    padded[:length] = output[:length]
    return padded


def _positions(outputs: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[2 x texts, width] start and end logits over positions, the reference's padding (NaN) set to -1e4 in
    both, so softmax gives padding no probability and it is never compared."""
    out = np.moveaxis(np.asarray(outputs, np.float64), -1, 1).reshape(-1, outputs.shape[1])
    ref = np.moveaxis(np.asarray(reference, np.float64), -1, 1).reshape(-1, reference.shape[1])
    padding = ~np.isfinite(ref)
    return np.where(padding, -1e4, out), np.where(padding, -1e4, ref)


def _real_tokens(outputs: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[tokens, tags] of both, keeping the tokens the reference has (its padding is NaN)."""
    tags = reference.shape[-1]
    out, ref = np.asarray(outputs).reshape(-1, tags), np.asarray(reference).reshape(-1, tags)
    real = np.isfinite(ref).all(axis=1)
    return out[real], ref[real]


TASKS: dict[str, Task] = {
    task.name: task
    for task in (ClassificationTask(), EmbeddingTask(), TokenClassificationTask(), QuestionAnsweringTask())
}


def task_named(name: str) -> Task:
    """The task called ``name``; an unknown one is bad input (exit 2)."""
    try:
        return TASKS[name]
    except KeyError:
        raise InputError(f"unsupported task {name!r}; supported: {', '.join(TASKS)}") from None


#: an ``architectures`` entry naming a head (``BertForMaskedLM``), as opposed to a bare encoder (``BertModel``)
_HEAD = re.compile(r"For[A-Z]\w*$")


def infer_task(architectures: list[str] | None) -> Task:
    """The task a checkpoint was saved for (its ``architectures`` suffix); a bare encoder is embeddings.

    A head no task supports (masked LM, multiple choice, pre-training...) is refused, never converted as an
    embedding model: that would drop the head and pass every gate with the wrong model."""
    for task in TASKS.values():
        if task.checkpoint_suffix and any(a.endswith(task.checkpoint_suffix) for a in architectures or []):
            return task
    heads = [a for a in architectures or [] if _HEAD.search(a)]
    if heads:
        raise InputError(
            f"the checkpoint's head {heads[0]} is not supported; supported tasks: {', '.join(TASKS)} "
            "(pass --task feature-extraction to convert its encoder alone on purpose)"
        )
    return TASKS[EmbeddingTask.name]


def passed(verdicts: dict[str, dict[str, Any]]) -> bool:
    return all(v["pass"] for v in verdicts.values() if v.get("decides", True))


def failed_gates(verdicts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in verdicts.items() if v.get("decides", True) and not v["pass"]}
