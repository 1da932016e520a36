"""Golden references: real sentences, their token ids, and the fp32 PyTorch outputs.

Stored in every bundle as ``golden.npz`` (plain arrays, loadable without pickle) so the device can
check parity with no torch. Each text runs alone (batch 1, its own length), as on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_bert.convert.architectures import ArchitectureConfig
from edge_bert.errors import InputError
from edge_bert.tasks import Task


@dataclass
class Golden:
    texts: list[str]
    input_ids: np.ndarray  # [N, longest] int64, zero-padded
    token_type_ids: np.ndarray
    lengths: np.ndarray  # [N] tokens per text
    output: np.ndarray  # [N, ...] fp32 primary output of the PyTorch model
    truncated: list[int] = field(default_factory=list)  # indices of texts cut to max_length

    def samples(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(ids[:n], tt[:n]) for ids, tt, n in zip(self.input_ids, self.token_type_ids, self.lengths, strict=True)]

    def save(self, path: Path) -> None:
        np.savez(
            path,
            texts=np.asarray(self.texts, dtype=np.str_),
            input_ids=self.input_ids,
            token_type_ids=self.token_type_ids,
            lengths=self.lengths,
            output=self.output,
        )

    def info(self, output_name: str) -> dict[str, Any]:
        return {
            "count": len(self.texts),
            "output": output_name,
            "reference": "PyTorch fp32 eager, batch 1, unpadded",
            "truncated_texts": len(self.truncated),
            "max_tokens": int(self.lengths.max()),
        }


def tokenize(tokenizer: Any, texts: list[str], max_length: int) -> tuple[list[list[int]], list[list[int]], list[int]]:
    """Token ids with the reference (transformers) tokenizer; returns ids, type ids, truncated indices."""
    if not texts:
        raise InputError("the text list is empty: golden references need at least one text")
    ids, types, truncated = [], [], []
    for index, text in enumerate(texts):
        if not text.strip():
            raise InputError(f"text {index + 1} is empty")
        full = tokenizer(text, truncation=False)["input_ids"]
        enc = tokenizer(text, truncation=True, max_length=max_length, return_token_type_ids=True)
        if len(full) > max_length:
            truncated.append(index)
        ids.append(enc["input_ids"])
        types.append(enc.get("token_type_ids") or [0] * len(enc["input_ids"]))
    return ids, types, truncated


def make_golden(
    graph: nn.Module, tokenizer: Any, texts: list[str], arch: ArchitectureConfig, task: Task, max_length: int
) -> Golden:
    ids, types, truncated = tokenize(tokenizer, texts, max_length)
    lengths = np.asarray([len(i) for i in ids], np.int64)
    padded_ids = np.zeros((len(ids), lengths.max()), np.int64)
    padded_types = np.zeros_like(padded_ids)
    outputs = []
    with torch.inference_mode():
        for row, (seq, seq_types) in enumerate(zip(ids, types, strict=True)):
            padded_ids[row, : len(seq)] = seq
            padded_types[row, : len(seq)] = seq_types
            result = graph(*arch.feeds([(seq, seq_types)], len(seq)))
            primary = result[0] if isinstance(result, tuple) else result
            outputs.append(task.row(primary[0].float().numpy(), len(seq), int(lengths.max())))
    return Golden(list(texts), padded_ids, padded_types, lengths, np.stack(outputs), truncated)
