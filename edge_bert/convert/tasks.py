"""Tasks: which Hugging Face head to load and what graph to export around it.

The wrappers give the exported graph explicit, stable input and output names, and for
feature-extraction put sentence-transformers' pooling (mean over the attention mask, then optional
L2 normalisation) inside the graph so the device needs no post-processing code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edge_bert.errors import ConversionError
from edge_bert.tasks import TASKS as RUNNER_TASKS


class ClassificationGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


class SentenceEmbeddingGraph(nn.Module):
    """Encoder + pooling; returns (sentence_embedding, last_hidden_state)."""

    def __init__(self, model: nn.Module, pooling: str = "mean", normalize: bool = True) -> None:
        super().__init__()
        self.model = model
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        return pooled, hidden


@dataclass(frozen=True)
class TaskConfig:
    """The host side of a task: which head to load. Its outputs are the runner's (edge_bert/tasks.py), so
    what convert writes and what validate reads are named in one place."""

    name: str
    auto_class: str

    @property
    def outputs(self) -> tuple[str, ...]:
        return RUNNER_TASKS[self.name].outputs

    @property
    def primary_output(self) -> str:
        """The output that golden references store and parity gates measure."""
        return RUNNER_TASKS[self.name].primary_output


TASKS: dict[str, TaskConfig] = {
    "text-classification": TaskConfig("text-classification", "AutoModelForSequenceClassification"),
    "feature-extraction": TaskConfig("feature-extraction", "AutoModel"),
}


def task_config(name: str) -> TaskConfig:
    try:
        return TASKS[name]
    except KeyError:
        raise ConversionError(f"unsupported task {name!r}; supported: {', '.join(TASKS)}") from None


def infer_task(architectures: list[str] | None) -> str:
    """A checkpoint saved with a classification head converts as classification; else embeddings."""
    if any(a.endswith("ForSequenceClassification") for a in architectures or []):
        return "text-classification"
    return "feature-extraction"


def build_graph(task: str, model: nn.Module, pooling: str = "mean", normalize: bool = True) -> nn.Module:
    graph = (
        ClassificationGraph(model)
        if task == "text-classification"
        else SentenceEmbeddingGraph(model, pooling, normalize)
    )
    # eval() on the wrapper itself: exporters restore the wrapper's mode afterwards, and a wrapper
    # left in training mode would switch dropout back on in the reference model.
    return graph.eval()
