"""What the distillation recipes compare, student against teacher: soft targets, masked hidden-state
MSE, and TinyBERT's pre-softmax attention scores (read from forward hooks, so the model's own attention
implementation runs unchanged)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) at temperature T, times T^2 (Hinton; DistilBERT's alpha_ce term)."""
    return (
        nn.functional.kl_div(
            nn.functional.log_softmax(student / temperature, -1),
            nn.functional.softmax(teacher / temperature, -1),
            reduction="batchmean",
        )
        * temperature**2
    )


def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """TinyBERT's prediction-layer loss: cross-entropy of the student against the teacher's soft labels."""
    targets = nn.functional.softmax(teacher / temperature, -1)
    return -(targets * nn.functional.log_softmax(student / temperature, -1)).sum(-1).mean()


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    keep = mask.bool()
    return nn.functional.mse_loss(student[keep], teacher[keep])


class QueryKeyTap:
    """Forward hooks on each BERT layer's query and key projections: the pre-softmax attention scores
    Q K^T / sqrt(d) that TinyBERT distils, without a second attention implementation."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = list(model.base_model.encoder.layer)
        self.outputs: dict[tuple[int, str], torch.Tensor] = {}
        self.handles = []
        for index, layer in enumerate(self.layers):
            for kind in ("query", "key"):
                hook = self._hook(index, kind)
                self.handles.append(getattr(layer.attention.self, kind).register_forward_hook(hook))

    def _hook(self, index: int, kind: str):
        def store(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            self.outputs[(index, kind)] = output

        return store

    def scores(self, index: int, mask: torch.Tensor) -> torch.Tensor:
        """[batch, heads, length, length] raw scores of layer ``index``; padded rows/columns zeroed
        (TinyBERT zeroes the masked positions so that they do not count)."""
        attn = self.layers[index].attention.self
        batch, length, _ = self.outputs[(index, "query")].shape
        q, k = (
            self.outputs[(index, kind)].view(batch, length, attn.num_attention_heads, -1).transpose(1, 2)
            for kind in ("query", "key")
        )
        keep = (mask[:, None, :, None] * mask[:, None, None, :]).to(q.dtype)
        return (q @ k.transpose(-1, -2)) * attn.scaling * keep

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
