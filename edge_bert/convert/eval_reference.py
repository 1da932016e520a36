"""The fp32 PyTorch model's outputs on the user's evaluation data, stored in the bundle.

The device has no torch, so "accuracy as % of fp32" needs fp32's answers computed here, once. The
bundle keeps a hash per text and the fp32 output (logits or embedding), never the texts themselves:
the data stays the user's, and validate matches rows by hash when given the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from edge_bert.accuracy import REFERENCE_FILE, text_key
from edge_bert.convert.architectures import ArchitectureConfig
from edge_bert.convert.golden import tokenize
from edge_bert.errors import InputError
from edge_bert.evaldata import LabelledData
from edge_bert.tasks import Task

BATCH = 32


@dataclass
class EvalReference:
    data: LabelledData
    keys: list[str]
    output: np.ndarray  # [rows, ...] fp32 primary output
    fp32: dict[str, Any]  # the fp32 model's own accuracy on the data

    def save(self, bundle_dir: Path) -> None:
        np.savez(bundle_dir / REFERENCE_FILE, keys=np.asarray(self.keys, dtype=np.str_), output=self.output)

    def manifest(self) -> dict[str, Any]:
        return {"file": REFERENCE_FILE, "source": self.data.source, "rows": len(self.keys), "fp32": self.fp32}


def check_labels(data: LabelledData, task: Task, labels: list[str] | None) -> None:
    """Fail before any export if the data's labels are not the model's (raises InputError)."""
    if task.own_rows is False and data.contexts is not None:
        raise InputError(f"question/context pairs are data for question answering, not for {task.name}")
    task.check_labels(data.references(), labels)


def make_eval_reference(
    graph: nn.Module,
    tokenizer: Any,
    data: LabelledData,
    arch: ArchitectureConfig,
    max_length: int,
    task: Task,
    labels: list[str] | None,
) -> EvalReference:
    """fp32 outputs in length-sorted, masked batches (identical to batch 1 up to float rounding)."""
    if task.own_rows:
        output = _own_rows(graph, tokenizer, data, arch, max_length, task)
        return EvalReference(data, [text_key(t) for t in data.key_texts()], output,
                             _fp32_metrics(output, data, task, labels))  # fmt: skip
    ids, types, _ = tokenize(tokenizer, data.texts, max_length)
    order = np.argsort([len(seq) for seq in ids], kind="stable")
    outputs: list[np.ndarray] = [np.empty(0)] * len(ids)
    with torch.inference_mode():
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            width = max(len(ids[i]) for i in batch)
            result = graph(*arch.feeds([(ids[i], types[i]) for i in batch], width))
            primary = (result[0] if isinstance(result, tuple) else result).float().numpy()
            for row, i in enumerate(batch):
                outputs[i] = task.row(primary[row], len(ids[i]), max_length)
    output = np.stack(outputs).astype(np.float32)
    return EvalReference(data, [text_key(t) for t in data.texts], output, _fp32_metrics(output, data, task, labels))


def _own_rows(
    graph: nn.Module, tokenizer: Any, data: LabelledData, arch: ArchitectureConfig, max_length: int, task: Task
) -> np.ndarray:
    """Rows of a task that computes its own (Task.data_row), batch 1: the runner's code on fp32 PyTorch."""
    plain = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    plain.no_padding()
    plain.no_truncation()

    def run(ids, types) -> np.ndarray:
        return graph(*arch.feeds([(list(ids), list(types))], len(ids)))[0].float().numpy()

    with torch.inference_mode():
        return np.stack([task.data_row(run, plain, item, max_length)[0] for item in data.items()]).astype(np.float32)


def _fp32_metrics(output: np.ndarray, data: LabelledData, task: Task, labels: list[str] | None) -> dict[str, Any]:
    """The fp32 model's own task metrics on the labelled data (Task.evaluate, no reference to compare with)."""
    if data.references() is None:
        return {}
    metrics = task.evaluate(output, None, data.references(), labels)
    return {key: metrics.get(key) for key in task.fp32_summary if key in metrics}
