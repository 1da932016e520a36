"""A fast path for the commonest tokenizer - BERT WordPiece - on plain ASCII text, in pure Python.

Why: ``tokenizers``' encode costs ~20 µs at 16 tokens and ~150 µs at 128 on a 2-core x86 box: about
5 % of a 3 ms int8 model at 128 tokens, most of it spent tracking character offsets through
normalisation and pre-tokenisation, which the runner never reads. On ASCII text without control
characters, BertNormalizer is at most lower-casing, BertPreTokenizer splits runs of letters and
digits from single punctuation marks, and WordPiece is a greedy longest match in the vocabulary: a
regex and dict lookups, ~8x faster. Only a tokenizer.json of exactly that shape gets the fast path;
it is checked against ``tokenizers`` on sample texts when loaded (and validate checks the golden ids
of every bundle); any other text - non-ASCII, control characters, a special-token string - returns
None and goes through ``tokenizers`` as before.
"""

from __future__ import annotations

import re
from typing import Any

from tokenizers import Tokenizer

#: ASCII control characters BertNormalizer removes (tab, newline and carriage return are whitespace)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: BertPreTokenizer on ASCII: runs of letters/digits, and every punctuation mark on its own
_WORD = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9 \t\n\r]")
#: checked against tokenizers when a fast path is built: punctuation, digits, sub-words, a too-long word
_SELF_CHECK = (
    "Hello, World! It's 3.14 o'clock; unaffable pre-processing (e.g. [x] {y} <z>).",
    'tabs\tand\nnew lines\r\n  spaces  ~`!@#$%^&*_+=|\\/?"',
    "supercalifragilisticexpialidocious " + "x" * 120 + " antidisestablishmentarianism",
    "",
)


class FastWordPiece:
    """ids of one text as ``tokenizers`` would give them, for the texts it can prove that for."""

    def __init__(self, vocab: dict[str, int], config: dict[str, Any], prefix: list[int], suffix: list[int]) -> None:
        model = config["model"]
        self._vocab = vocab
        self._unk = vocab[model["unk_token"]]
        self._continuing = model.get("continuing_subword_prefix", "##")
        self._max_chars = model.get("max_input_chars_per_word", 100)
        normalizer = config.get("normalizer") or {}
        self._lowercase = bool(normalizer.get("lowercase", False))
        self._prefix, self._suffix = prefix, suffix
        added = [t["content"] for t in config.get("added_tokens") or [] if t.get("content")]
        # a text holding an added token (e.g. "[MASK]") is split around it by tokenizers: leave it to them
        self._added = re.compile("|".join(map(re.escape, added)), re.IGNORECASE) if added else None

    @classmethod
    def build(cls, tokenizer: Tokenizer, config: dict[str, Any]) -> FastWordPiece | None:
        """The fast path for this tokenizer, or None if it is not plain BERT WordPiece or disagrees."""
        try:
            fast = cls._build(config)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):  # an odd tokenizer.json: no fast path
            return None
        if fast is None or any(fast.ids(text) != tokenizer.encode(text).ids for text in _SELF_CHECK):
            return None
        return fast

    @classmethod
    def _build(cls, config: dict[str, Any]) -> FastWordPiece | None:
        model, normalizer = config.get("model") or {}, config.get("normalizer")
        if model.get("type") != "WordPiece" or (config.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer":
            return None
        if normalizer is not None and normalizer.get("type") != "BertNormalizer":
            return None
        specials = _special_tokens(config.get("post_processor"))
        vocab = model.get("vocab")
        if specials is None or not isinstance(vocab, dict) or model.get("unk_token") not in vocab:
            return None
        return cls(vocab, config, *specials)

    def ids(self, text: str) -> list[int] | None:
        """Token ids with the special tokens (type ids are all 0), or None: use tokenizers for this text."""
        if not text.isascii() or _CONTROL.search(text) or (self._added and self._added.search(text)):
            return None
        vocab, ids = self._vocab, list(self._prefix)
        for word in _WORD.findall(text.lower() if self._lowercase else text):
            token = vocab.get(word)
            if token is not None:
                ids.append(token)
            else:
                ids.extend(self._pieces(word))
        ids.extend(self._suffix)
        return ids

    def _pieces(self, word: str) -> list[int]:
        """WordPiece's greedy longest match; a word with any unmatched rest is one [UNK]."""
        if len(word) > self._max_chars:
            return [self._unk]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                token = self._vocab.get(word[start:end] if start == 0 else self._continuing + word[start:end])
                if token is not None:
                    break
                end -= 1
            else:
                return [self._unk]
            pieces.append(token)
            start = end
        return pieces


def _special_tokens(post: dict[str, Any] | None) -> tuple[list[int], list[int]] | None:
    """(ids before, ids after) the text for a single sequence with type id 0 throughout, or None."""
    if not post:
        return None
    if post.get("type") == "BertProcessing":
        return [post["cls"][1]], [post["sep"][1]]
    if post.get("type") != "TemplateProcessing":
        return None
    before: list[int] = []
    after: list[int] = []
    seen_sequence = False
    for piece in post.get("single") or []:
        if "Sequence" in piece:
            if seen_sequence or piece["Sequence"].get("type_id", 0) != 0:
                return None
            seen_sequence = True
        elif "SpecialToken" in piece:
            special = piece["SpecialToken"]
            token = (post.get("special_tokens") or {}).get(special.get("id"))
            if token is None or special.get("type_id", 0) != 0:
                return None
            (after if seen_sequence else before).extend(token["ids"])
        else:
            return None
    return (before, after) if seen_sequence else None
