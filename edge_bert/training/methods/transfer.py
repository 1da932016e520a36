"""What the ALBERT and MobileBERT methods compare, layer by layer, across model families.

Attention is read from forward hooks on the query and key projections, recorded in call order, so a
layer whose weights are shared (ALBERT runs one layer N times) gives N entries and the models' own
attention implementation runs unchanged. ``truncated`` runs only the bottom layers of a model, for the
progressive stages that need nothing above the layer they train.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

#: (query, key) projection names per family; the head count's config attribute
_PROJECTIONS = {"query": "key", "q_lin": "k_lin"}
_HEADS = ("num_attention_heads", "n_heads")


def heads_of(config: Any) -> int:
    return next(getattr(config, name) for name in _HEADS if hasattr(config, name))


def layer_list(model: nn.Module) -> tuple[nn.Module, str]:
    """(owner, attribute) of the ModuleList of encoder layers (BERT, MobileBERT: encoder.layer; DistilBERT:
    transformer.layer)."""
    base = model.base_model
    owner = getattr(base, "encoder", None) or base.transformer
    return owner, "layer"


@contextmanager
def truncated(model: nn.Module, layers: int) -> Iterator[None]:
    """Run only the bottom ``layers`` encoder layers inside the block (weights untouched)."""
    owner, name = layer_list(model)
    full = getattr(owner, name)
    setattr(owner, name, full[:layers])
    try:
        yield
    finally:
        setattr(owner, name, full)


class AttentionTap:
    """Query/key projection outputs of every attention call, in call order (reset before each forward)."""

    def __init__(self, model: nn.Module) -> None:
        self.heads = heads_of(model.config)
        self.calls: dict[str, list[torch.Tensor]] = {"q": [], "k": []}
        self.handles = []
        for name, module in model.named_modules():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in _PROJECTIONS:
                key = model.get_submodule(f"{name[: -len(leaf)]}{_PROJECTIONS[leaf]}")
                self.handles.append(module.register_forward_hook(self._hook("q")))
                self.handles.append(key.register_forward_hook(self._hook("k")))

    def _hook(self, kind: str):
        def store(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            self.calls[kind].append(output)

        return store

    def reset(self) -> None:
        self.calls = {"q": [], "k": []}

    def scores(self, index: int, mask: torch.Tensor) -> torch.Tensor:
        """[batch, heads, length, length] pre-softmax scores Q K^T / sqrt(d) of call ``index``; padded rows
        and columns zeroed (TinyBERT's convention, so that they do not count)."""
        q, k = (self.calls[kind][index] for kind in ("q", "k"))
        batch, length, width = q.shape
        q, k = (x.view(batch, length, self.heads, -1).transpose(1, 2) for x in (q, k))
        keep = (mask[:, None, :, None] * mask[:, None, None, :]).to(q.dtype)
        return (q @ k.transpose(-1, -2)) * (width // self.heads) ** -0.5 * keep

    def log_probs(self, index: int, mask: torch.Tensor) -> torch.Tensor:
        """[batch, heads, length, length] log attention distributions of call ``index`` (padded keys excluded)."""
        scores = self.scores(index, mask)
        blocked = (1 - mask[:, None, None, :].to(scores.dtype)) * torch.finfo(scores.dtype).min
        return nn.functional.log_softmax(scores + blocked, -1)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def attention_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) between attention distributions (log-probabilities in), averaged over heads and
    real query rows. Different head counts compare the head-averaged distributions."""
    if student.shape[1] != teacher.shape[1]:
        student = torch.logsumexp(student, 1, keepdim=True) - torch.log(torch.tensor(float(student.shape[1])))
        teacher = torch.logsumexp(teacher, 1, keepdim=True) - torch.log(torch.tensor(float(teacher.shape[1])))
    keys = mask[:, None, None, :].bool()
    per_row = (teacher.exp() * (teacher - student)).masked_fill(~keys, 0.0).sum(-1)  # [batch, heads, length]
    rows = mask[:, None, :].to(per_row.dtype).expand_as(per_row)
    return (per_row * rows).sum() / rows.sum()
