"""A loaded bundle ready to run text: tokenizer + backend + the shape policy from the manifest."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tokenizers import Encoding, Tokenizer

from edge_bert.backends import backend_class
from edge_bert.bundle import Bundle
from edge_bert.errors import BundleError, InputError


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
            self._tokenizer = Tokenizer.from_str(bundle.read(bundle.manifest.tokenizer_file).decode("utf-8"))
        except BundleError:
            raise
        except Exception as exc:  # tokenizers raises a bare Exception for malformed files
            raise BundleError(f"{where}: cannot load the tokenizer: {str(exc)[:200]}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.max_length = bundle.max_length

    def encode(self, text: str, max_length: int | None = None) -> Encoded:
        limit = max_length or self.max_length
        encoding = self._encode_prefix(text, limit)
        ids, type_ids = encoding.ids, encoding.type_ids
        if len(ids) > limit:
            # keep the final special token ([SEP]) as Hugging Face truncation does
            ids = ids[: limit - 1] + ids[-1:]
            type_ids = type_ids[: limit - 1] + type_ids[-1:]
        return Encoded(np.asarray(ids, np.int64), np.asarray(type_ids, np.int64), len(encoding.ids))

    def _encode_prefix(self, text: str, limit: int) -> Encoding:
        """Encode only as much of ``text`` as ``limit`` tokens can need: a prefix cut at whitespace, grown
        until it yields more tokens than the limit. Words before the cut tokenize exactly as in the whole
        text (BERT pre-tokenizes on whitespace), so the truncated ids are identical; the reported original
        length is then a lower bound (still > limit, so "truncated" stays true)."""
        size = max(limit, 8) * CHARS_PER_TOKEN
        while size < len(text):
            cut = text.rfind(" ", 0, size)
            prefix = text[: cut if cut > size // 2 else size]
            encoding = self._tokenizer.encode(prefix)
            words = [w for w in encoding.word_ids if w is not None]
            # tokens of words that surely ended before the cut (the last word may be cut short)
            if words and sum(1 for w in words if w != words[-1]) >= limit - 1:
                return encoding
            size *= 2
        return self._tokenizer.encode(text)


def make_feeds(
    ids: np.ndarray, type_ids: np.ndarray | None, inputs: dict[str, np.dtype], padded: int
) -> dict[str, np.ndarray]:
    """Batch-1 feeds for the named inputs; positions past the text are padding (mask 0)."""
    length = len(ids)
    arrays = {
        "input_ids": ids,
        "attention_mask": np.ones(length, np.int64),
        "token_type_ids": type_ids if type_ids is not None else np.zeros(length, np.int64),
    }
    feeds = {}
    for name, dtype in inputs.items():
        row = np.zeros(padded, dtype)
        row[:length] = arrays[name]
        feeds[name] = row[None, :]
    return feeds


class BundleSession:
    """Runs one text (batch 1) through a verified bundle, padding only where the model is static."""

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        self.bundle = bundle
        self.encoder = TextEncoder(bundle)
        backend = backend_class(bundle.format)
        model = bundle.read(bundle.manifest.model_file)
        start = time.perf_counter()
        self.backend = backend(model, threads=threads, where=str(bundle.model_path))
        self.load_seconds = time.perf_counter() - start
        del model
        self._dtypes = {spec.name: np.dtype(spec.dtype) for spec in bundle.manifest.inputs}
        missing = set(self._dtypes) - set(self.backend.input_names)
        if missing:
            raise BundleError(f"{bundle.model_path}: model lacks inputs the manifest names: {sorted(missing)}")

    def feeds(self, ids: np.ndarray, type_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Model inputs for one unpadded token sequence, padded to a static length if the model needs one."""
        return make_feeds(ids, type_ids, self._dtypes, self.padded_length(len(ids)))

    def padded_length(self, length: int) -> int:
        static = self.bundle.seq_lengths
        if not static:
            return length
        fitting = [n for n in static if n >= length]
        if not fitting:
            raise InputError(f"{length} tokens do not fit the bundle's static lengths {list(static)}")
        return min(fitting)

    def run_ids(self, ids: np.ndarray, type_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        return self.backend.run(self.feeds(ids, type_ids))

    def run_text(self, text: str) -> tuple[dict[str, np.ndarray], Encoded]:
        if not text.strip():
            raise InputError("empty text: nothing to run")
        encoded = self.encoder.encode(text)
        return self.run_ids(encoded.ids, encoded.type_ids), encoded
