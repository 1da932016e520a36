"""The contract of a distillation method that builds a student of another family than the teacher's
(ALBERT, MobileBERT): how it builds the student from the teacher, how it trains it, and its defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from torch import nn

from edge_bert.training.data import Encoded, mean_pool, pad
from edge_bert.training.loop import LoopSettings, Progress, train_loop
from edge_bert.training.losses import soft_cross_entropy
from edge_bert.training.student import teacher_family


@dataclass(frozen=True)
class MethodRun:
    """Everything a method's training needs: the models, the encoded data, the cached teacher outputs
    (logits, or pooled embeddings for an embedding teacher) and where the loop checkpoints."""

    teacher: nn.Module
    student: nn.Module
    mapping: list[int]  # g(m): teacher hidden-state index (1-based layer) student layer m learns
    data: Encoded
    cache: dict[str, list]
    settings: Any  # DistillSettings, defaults resolved
    stage: Path
    key: str
    progress: Progress | None
    embedding: bool  # feature-extraction teacher: the last stage matches pooled embeddings, not logits

    def loop(self, epochs: int, seed_offset: int = 0) -> LoopSettings:
        return LoopSettings(epochs, self.settings.batch_size, self.settings.seed + seed_offset)

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.data.ids]


@dataclass(frozen=True)
class Method:
    """One distillation method: ``build(teacher, settings, auto_class) -> (student, layer map)`` and
    ``train(run) -> {stage: per-epoch loss terms}``; defaults used where the user gave none."""

    name: str
    build: Callable[[nn.Module, Any, str], tuple[nn.Module, list[int]]]
    train: Callable[[MethodRun], dict[str, list]]
    lr: float
    temperature: float
    epochs: int
    pred_epochs: int
    tasks: tuple[str, ...] = ("text-classification", "feature-extraction")


@dataclass(frozen=True)
class TeacherFacts:
    """The teacher config's fields a student config copies, read through the family's attribute names."""

    layers: int
    hidden: int
    heads: int
    ffn: int
    common: dict[str, Any]

    @classmethod
    def of(cls, config: Any) -> TeacherFacts:
        layers, hidden, heads, ffn = teacher_family(config).dims(config)
        common = {
            "vocab_size": config.vocab_size,
            "max_position_embeddings": config.max_position_embeddings,
            "type_vocab_size": getattr(config, "type_vocab_size", 2),
            "pad_token_id": config.pad_token_id,
            "layer_norm_eps": getattr(config, "layer_norm_eps", 1e-12),
            "hidden_dropout_prob": getattr(config, "hidden_dropout_prob", getattr(config, "dropout", 0.1)),
            "attention_probs_dropout_prob": getattr(
                config, "attention_probs_dropout_prob", getattr(config, "attention_dropout", 0.1)
            ),
            "num_labels": config.num_labels,
            "id2label": dict(config.id2label),
            "label2id": dict(config.label2id),
        }
        return cls(layers, hidden, heads, ffn, common)


def new_student(config: Any, auto_class: str) -> nn.Module:
    """A randomly initialised model of ``config`` with the teacher's head (``AutoModelFor...``)."""
    return getattr(transformers, auto_class).from_config(config)


def word_svd(teacher: nn.Module, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated SVD of the teacher's word embeddings W (vocab x H): (W V_E [vocab x E], V_E^T [E x H]),
    whose product is the best rank-E approximation of W (Eckart-Young)."""
    weights = teacher.get_input_embeddings().weight.detach().float()
    _, _, vh = torch.linalg.svd(weights, full_matrices=False)
    basis = vh[:rank]
    return weights @ basis.T, basis.contiguous()


def head_weights(teacher: nn.Module) -> dict[str, torch.Tensor]:
    """The teacher's pooler dense (BERT) or pre-classifier (DistilBERT) and classifier, by role."""
    state = teacher.state_dict()
    found = {}
    for role, names in (
        ("pooler", ("bert.pooler.dense", "distilbert.pre_classifier", "pre_classifier", "pooler.dense")),
        ("classifier", ("classifier",)),
    ):
        for name in names:
            if f"{name}.weight" in state:
                found[f"{role}.weight"], found[f"{role}.bias"] = state[f"{name}.weight"], state[f"{name}.bias"]
                break
    return found


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def final_stage(run: MethodRun, name: str = "prediction") -> list[dict[str, float]]:
    """Prediction-layer distillation (TinyBERT's soft cross-entropy at T against the cached logits), or for
    an embedding teacher (1 - cosine) + MSE between pooled sentence embeddings; every weight trains."""
    s, student, cache = run.settings, run.student, run.cache
    student.requires_grad_(True)
    student.get_input_embeddings().weight.requires_grad_(not s.freeze_word_embeddings)

    def step(batch: np.ndarray) -> dict[str, torch.Tensor]:
        tokens, mask = pad([run.data.ids[i] for i in batch])
        if run.embedding:
            pooled = mean_pool(student(input_ids=tokens, attention_mask=mask).last_hidden_state, mask, False)
            target = torch.stack([cache["pooled"][i] for i in batch])
            terms = {"cos": 1 - nn.functional.cosine_similarity(pooled, target).mean()}
            terms["mse"] = nn.functional.mse_loss(pooled, target)
            terms["loss"] = terms["cos"] + terms["mse"]
            return terms
        logits = student(input_ids=tokens, attention_mask=mask).logits
        pred = soft_cross_entropy(logits, torch.stack([cache["logits"][i] for i in batch]), s.temperature)
        return {"loss": pred, "pred": pred}

    groups = [{"params": trainable(student), "lr": s.lr}]
    loop = run.loop(s.pred_epochs, 1)
    return train_loop(name, {"student": student}, groups, step, run.lengths, loop, run.stage, run.key, run.progress)
