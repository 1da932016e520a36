"""The host side of each task (edge_bert/tasks.py): which Hugging Face head to load and what graph to
export around it. Outputs, parity and gates are the runner's task's; nothing here re-states them.

The wrappers give the exported graph explicit, stable input and output names, and for
feature-extraction put sentence-transformers' pooling (mean over the attention mask, then optional
L2 normalisation) inside the graph so the device needs no post-processing code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edge_bert.errors import ConversionError
from edge_bert.tasks import (
    TASKS,
    ClassificationTask,
    EmbeddingTask,
    QuestionAnsweringTask,
    Task,
    TokenClassificationTask,
)


class LogitsGraph(nn.Module):
    """The model's ``logits``: one row per text (sequence classification) or per token (token classification)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


class SpanLogitsGraph(nn.Module):
    """A question-answering head's start and end logits as one output [batch, tokens, 2] (``span_logits``):
    the golden and fp32 references then keep both, and the device reads one tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        result = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return torch.stack((result.start_logits, result.end_logits), dim=-1)


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
class HostTask:
    """What only the host knows about a task: the transformers auto class of its head, the graph exported
    around the model (given the model, its pooling and whether to normalise), and the distillation
    recipes a teacher of this task takes (edge_bert/training/distill.py)."""

    auto_class: str
    graph: Callable[[nn.Module, str, bool], nn.Module]
    distill_recipes: tuple[str, ...] = ()


HOST: dict[str, HostTask] = {
    ClassificationTask.name: HostTask(
        "AutoModelForSequenceClassification", lambda model, _p, _n: LogitsGraph(model), ("distilbert", "tinybert")
    ),
    EmbeddingTask.name: HostTask("AutoModel", SentenceEmbeddingGraph, ("embedding",)),
    TokenClassificationTask.name: HostTask(
        "AutoModelForTokenClassification", lambda model, _p, _n: LogitsGraph(model), ("distilbert",)
    ),
    QuestionAnsweringTask.name: HostTask(
        "AutoModelForQuestionAnswering", lambda model, _p, _n: SpanLogitsGraph(model), ("distilbert",)
    ),
}


def host_task(task: Task | str) -> HostTask:
    """The host extension of a task (by object or name); an unknown name is a conversion error."""
    name = task if isinstance(task, str) else task.name
    if name not in HOST or name not in TASKS:
        raise ConversionError(f"unsupported task {name!r}; supported: {', '.join(HOST)}")
    return HOST[name]


def build_graph(task: Task | str, model: nn.Module, pooling: str = "mean", normalize: bool = True) -> nn.Module:
    graph = host_task(task).graph(model, pooling, normalize)
    # eval() on the wrapper itself: exporters restore the wrapper's mode afterwards, and a wrapper
    # left in training mode would switch dropout back on in the reference model.
    return graph.eval()
