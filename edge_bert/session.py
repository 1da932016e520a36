"""A loaded bundle ready to run text: tokenizer + backend + the shape policy from the manifest."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Encoding, Tokenizer

from edge_bert.backends import backend_class
from edge_bert.bundle import Bundle
from edge_bert.errors import BundleError, InputError
from edge_bert.ner import Entity, encode_words, entities
from edge_bert.qa import MAX_ANSWER_TOKENS, Span, best_span
from edge_bert.recipes import FORMATS
from edge_bert.tasks import TASKS, Answer
from edge_bert.wordpiece import FastWordPiece


@dataclass(frozen=True)
class Encoded:
    """Token ids of one text (no padding) and how long the text was before truncation."""

    ids: np.ndarray
    type_ids: np.ndarray
    original_length: int

    @property
    def truncated(self) -> bool:
        return self.original_length > len(self.ids)


#: characters read per allowed token before tokenizing (doubled while that is not enough): a 50 MB
#: single-line text must not be tokenized whole (it took 65 s and 7 GB) to keep its first 128 tokens
CHARS_PER_TOKEN = 8


class TextEncoder:
    """The bundle's own tokenizer.json with the manifest's max length; no torch, no transformers."""

    def __init__(self, bundle: Bundle) -> None:
        where = bundle.path / bundle.manifest.tokenizer_file
        try:
            source = bundle.read(bundle.manifest.tokenizer_file).decode("utf-8")
            self._tokenizer = Tokenizer.from_str(source)
            config = json.loads(source)
        except BundleError:
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a bare Exception for malformed files; a Rust panic is a BaseException
            raise BundleError(f"{where}: cannot load the tokenizer: {_first_line(exc)}") from exc
        self._where = where
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.max_length = bundle.max_length
        #: pure-Python WordPiece for plain ASCII text (edge_bert/wordpiece.py), None for other tokenizers
        self.fast = FastWordPiece.build(self._tokenizer, config) if isinstance(config, dict) else None

    @property
    def tokenizer(self) -> Tokenizer:
        """The bundle's tokenizer (no padding, no truncation), for tasks that read its offsets."""
        return self._tokenizer

    def encode(self, text: str, max_length: int | None = None) -> Encoded:
        ids, type_ids, original = self.tokens(text, max_length)
        types = np.zeros(len(ids), np.int64) if type_ids is None else np.asarray(type_ids, np.int64)
        return Encoded(np.asarray(ids, np.int64), types, original)

    def tokens(self, text: str, max_length: int | None = None) -> tuple[list[int], list[int] | None, int]:
        """Token ids and type ids (None: all 0) truncated to the limit, and the length before truncation."""
        limit = max_length or self.max_length
        ids = self.fast.ids(text) if self.fast is not None and len(text) <= _prefix_chars(limit) else None
        type_ids = None
        if ids is None:
            encoding = self._encode_prefix(text, limit)
            ids, type_ids = encoding.ids, encoding.type_ids
        original = len(ids)
        if original > limit:
            # keep the final special token ([SEP]) as Hugging Face truncation does
            ids = ids[: limit - 1] + ids[-1:]
            type_ids = None if type_ids is None else type_ids[: limit - 1] + type_ids[-1:]
        return ids, type_ids, original

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character span of every token of ``text`` but the special ones, from tokenizers itself."""
        encoding = self._encode(text)
        return [
            span for span, special in zip(encoding.offsets, encoding.special_tokens_mask, strict=True) if not special
        ]

    def _encode_prefix(self, text: str, limit: int) -> Encoding:
        """Encode only as much of ``text`` as ``limit`` tokens can need: a prefix cut at whitespace, grown
        until it yields more tokens than the limit. Words before the cut tokenize exactly as in the whole
        text (BERT pre-tokenizes on whitespace), so the truncated ids are identical; the reported original
        length is then a lower bound (still > limit, so "truncated" stays true)."""
        size = _prefix_chars(limit)
        while size < len(text):
            cut = text.rfind(" ", 0, size)
            prefix = text[: cut if cut > size // 2 else size]
            encoding = self._encode(prefix)
            words = [w for w in encoding.word_ids if w is not None]
            # tokens of words that surely ended before the cut (the last word may be cut short)
            if words and sum(1 for w in words if w != words[-1]) >= limit - 1:
                return encoding
            size *= 2
        return self._encode(text)

    def _encode(self, text: str) -> Encoding:
        """Every call into the Rust tokenizer: its failures are the bundle's tokenizer.json at fault."""
        try:
            return self._tokenizer.encode(text)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a panicking pre-tokenizer regex is a BaseException; no [UNK] an Exception
            raise BundleError(f"{self._where}: the tokenizer failed on a text: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _prefix_chars(limit: int) -> int:
    """Texts up to this many characters are tokenized whole; longer ones by growing prefixes."""
    return max(limit, 8) * CHARS_PER_TOKEN


def make_feeds(
    ids: Sequence, type_ids: Sequence | None, inputs: dict[str, np.dtype], padded: int
) -> dict[str, np.ndarray]:
    """Batch-1 feeds for the named inputs, built directly in each input's dtype (LiteRT: int32); positions
    past the text are padding (mask 0). ``type_ids`` None: all 0 (one text)."""
    return batch_feeds([(ids, type_ids)], inputs, padded)


def batch_feeds(
    texts: Sequence[tuple[Sequence, Sequence | None]], inputs: dict[str, np.dtype], padded: int
) -> dict[str, np.ndarray]:
    """Feeds for a batch of token sequences (ids, type ids or None), each padded to ``padded``: the one
    place a model's input names become arrays, on the device and on the host (golden, export, FLOPs)."""
    feeds = {}
    for name, dtype in inputs.items():
        rows = np.zeros((len(texts), padded), dtype)
        for row, (ids, type_ids) in enumerate(texts):
            length = len(ids)
            if name == "input_ids":
                rows[row, :length] = ids
            elif name == "attention_mask":
                rows[row, :length] = 1
            elif type_ids is not None:
                rows[row, :length] = type_ids
        feeds[name] = rows
    return feeds


class BundleSession:
    """Runs one text (batch 1) through a verified bundle, padding only where the model is static."""

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        self.bundle = bundle
        self.encoder = TextEncoder(bundle)
        backend = backend_class(bundle.format)
        model = bundle.read(bundle.manifest.model_file)
        weights_file = FORMATS[bundle.format].weights_file  # OpenVINO IR: the .bin beside the .xml
        extra = {"weights": bundle.read(weights_file)} if weights_file else {}
        start = time.perf_counter()
        self.backend = backend(model, threads=threads, where=str(bundle.model_path), **extra)
        self.load_seconds = time.perf_counter() - start
        del model, extra
        self._dtypes = {spec.name: np.dtype(spec.dtype) for spec in bundle.manifest.inputs}
        missing = set(self._dtypes) - set(self.backend.input_names)
        if missing:
            raise BundleError(f"{bundle.model_path}: model lacks inputs the manifest names: {sorted(missing)}")
        self._static = bundle.seq_lengths
        self._task = TASKS[bundle.task]
        self._labels = bundle.labels

    def feeds(self, ids: Sequence, type_ids: Sequence | None = None) -> dict[str, np.ndarray]:
        """Model inputs for one unpadded token sequence, padded to a static length if the model needs one."""
        return make_feeds(ids, type_ids, self._dtypes, self.padded_length(len(ids)))

    def padded_length(self, length: int) -> int:
        if not self._static:
            return length
        fitting = [n for n in self._static if n >= length]
        if not fitting:
            raise InputError(f"{length} tokens do not fit the bundle's static lengths {list(self._static)}")
        return min(fitting)

    def run_ids(self, ids: Sequence, type_ids: Sequence | None = None) -> dict[str, np.ndarray]:
        return self.backend.run(self.feeds(ids, type_ids))

    def run_text(self, text: str) -> tuple[dict[str, np.ndarray], Encoded]:
        if not text.strip():
            raise InputError("empty text: nothing to run")
        encoded = self.encoder.encode(text)
        return self.run_ids(encoded.ids, encoded.type_ids), encoded

    # text in -> answer out, in three steps that bench times one by one (edge_bert/bench/protocol.py)

    def prepare(self, text: str) -> dict[str, np.ndarray]:
        """Tokenize (truncating to the bundle's max length) and build the model's feeds."""
        ids, type_ids, _ = self.encoder.tokens(text)
        return self.feeds(ids, type_ids)

    def post_process(self, outputs: dict[str, np.ndarray]) -> Answer:
        """The task's answer from the model outputs (tasks.Task.answer)."""
        return self._task.answer(outputs, self._labels)

    def answer(self, text: str) -> Answer:
        """What an app gets for one text: a classifier's probabilities and top label, or the embedding."""
        if not text.strip():
            raise InputError("empty text: nothing to run")
        return self.post_process(self.backend.run(self.prepare(text)))

    def entities(self, text: str) -> list[Entity]:
        """Named entities in ``text`` (a token-classification bundle): BIO tags of each word's first token."""
        self._require("token-classification")
        if not text.strip():
            raise InputError("empty text: nothing to run")
        words = encode_words(self.encoder.tokenizer, text, self.bundle.max_length, whitespace=False)
        probabilities = self.post_process(self.run_ids(words.ids, words.type_ids)).vector[: len(words.ids)]
        return entities(text, probabilities, words.word_ids, words.offsets, self._labels or [])

    def answer_question(
        self, question: str, context: str, stride: int | None = None, max_answer: int = MAX_ANSWER_TOKENS
    ) -> Span:
        """The answer to ``question`` in ``context`` (a question-answering bundle; edge_bert/qa.py)."""
        self._require("question-answering")
        output = self.bundle.primary_output

        def run(ids: Sequence[int], type_ids: Sequence[int]) -> np.ndarray:
            return self.run_ids(ids, type_ids)[output][0]

        return best_span(self.encoder.tokenizer, run, question, context, self.bundle.max_length, stride, max_answer)

    def _require(self, task: str) -> None:
        if self.bundle.task != task:
            raise InputError(f"this bundle is {self.bundle.task}, not {task}")
