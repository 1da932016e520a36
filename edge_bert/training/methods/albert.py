"""The ALBERT method from the user's teacher (the ALBERT paper, 2020): cross-layer parameter sharing and a
factorised embedding, started from the teacher's weights, trained with TinyBERT's layer-wise losses and then
prediction distillation.

- Student: ``Albert...`` of the teacher's width, N layers of compute, one layer of weights
  (``num_hidden_groups=1``, ``inner_group_num=1``), embedding size E (default 128).
- Embedding: truncated SVD of the teacher's word embeddings W ~ (W V_E)(V_E^T): the first factor is the
  student's vocab x E table, the second ALBERT's ``embedding_hidden_mapping_in`` (E x H). Positions and token
  types go through the same basis. The teacher's embedding LayerNorm scale/shift move onto the mapping.
- Shared layer: the element-wise average of the teacher's layers (``SHARED_INIT``); measured against single
  layers on the CLINC150 teacher by scripts/albert_shared_init.py (docs/training.md).
- Training: stage 1, MSE between embedding outputs, between hidden states through the layer map g(m) = m L / N
  and between pre-softmax attention scores; stage 2, soft cross-entropy at T against the teacher's logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import transformers
from torch import nn

from edge_bert.training.data import pad
from edge_bert.training.loop import train_loop
from edge_bert.training.losses import masked_mse
from edge_bert.training.methods.base import (
    Method,
    MethodRun,
    TeacherFacts,
    final_stage,
    head_weights,
    new_student,
    trainable,
    word_svd,
)
from edge_bert.training.methods.transfer import AttentionTap
from edge_bert.training.student import tinybert_layer_map

#: "average" (element-wise mean of the teacher's layers) or a 0-based teacher layer index
SHARED_INIT: str | int = "average"
#: ALBERT layer parameter -> the teacher layer's (BERT, DistilBERT) parameter
_LAYER = {
    "attention.query": ("attention.self.query", "attention.q_lin"),
    "attention.key": ("attention.self.key", "attention.k_lin"),
    "attention.value": ("attention.self.value", "attention.v_lin"),
    "attention.dense": ("attention.output.dense", "attention.out_lin"),
    "attention.LayerNorm": ("attention.output.LayerNorm", "sa_layer_norm"),
    "ffn": ("intermediate.dense", "ffn.lin1"),
    "ffn_output": ("output.dense", "ffn.lin2"),
    "full_layer_layer_norm": ("output.LayerNorm", "output_layer_norm"),
}
_SHARED = "encoder.albert_layer_groups.0.albert_layers.0."


def albert_config(teacher_config: Any, layers: int, embedding_size: int) -> transformers.AlbertConfig:
    facts = TeacherFacts.of(teacher_config)
    act = getattr(teacher_config, "hidden_act", None) or teacher_config.activation
    return transformers.AlbertConfig(
        **facts.common,
        embedding_size=embedding_size,
        hidden_size=facts.hidden,
        num_hidden_layers=layers,
        num_hidden_groups=1,
        inner_group_num=1,
        num_attention_heads=facts.heads,
        intermediate_size=facts.ffn,
        hidden_act=act,
        classifier_dropout_prob=0.1,
    )


def shared_layer(teacher: nn.Module, how: str | int | None = None) -> dict[str, torch.Tensor]:
    """The shared layer's weights (ALBERT names) from the teacher's layers: their average, or one of them."""
    state = teacher.base_model.state_dict()
    bert = any(k.startswith("encoder.layer.") for k in state)
    prefix, column = ("encoder.layer.", 0) if bert else ("transformer.layer.", 1)
    layers = TeacherFacts.of(teacher.config).layers
    how = SHARED_INIT if how is None else how
    chosen = range(layers) if how == "average" else [int(how)]
    weights = {}
    for target, sources in _LAYER.items():
        for kind in ("weight", "bias"):
            stack = torch.stack([state[f"{prefix}{i}.{sources[column]}.{kind}"].float() for i in chosen])
            weights[f"{target}.{kind}"] = stack.mean(0)
    return weights


def init_embeddings(teacher: nn.Module, student: nn.Module, embedding_size: int) -> None:
    """Word/position/type tables = the teacher's in the top-E right-singular basis of its word embeddings;
    the E -> H mapping = that basis back, scaled by the teacher's embedding LayerNorm (its shift as bias)."""
    words, basis = word_svd(teacher, embedding_size)
    source, target = teacher.base_model.embeddings, student.base_model.embeddings
    norm = source.LayerNorm
    hidden = basis.shape[1]
    with torch.no_grad():
        target.word_embeddings.weight.copy_(words)
        target.position_embeddings.weight.copy_(source.position_embeddings.weight @ basis.T)
        token_types = getattr(source, "token_type_embeddings", None)
        if token_types is not None:
            target.token_type_embeddings.weight.copy_(token_types.weight @ basis.T)
        else:
            target.token_type_embeddings.weight.zero_()
        target.LayerNorm.weight.fill_(1.0)
        target.LayerNorm.bias.zero_()
        mapping = student.base_model.encoder.embedding_hidden_mapping_in
        # LayerNorm over E dimensions gives unit variance per E-vector; the teacher's is per H-vector
        mapping.weight.copy_(basis.T * norm.weight[:, None] * (embedding_size / hidden) ** 0.5)
        mapping.bias.copy_(norm.bias)


def build(teacher: nn.Module, settings: Any, auto_class: str) -> tuple[nn.Module, list[int]]:
    facts = TeacherFacts.of(teacher.config)
    student = new_student(albert_config(teacher.config, settings.layers, settings.embedding_size), auto_class)
    init_embeddings(teacher, student, settings.embedding_size)
    base = student.base_model
    state = {f"{_SHARED}{k}": v for k, v in shared_layer(teacher).items()}
    heads = head_weights(teacher)
    if base.pooler is not None and "pooler.weight" in heads:
        state["pooler.weight"], state["pooler.bias"] = heads["pooler.weight"], heads["pooler.bias"]
    missing = set(state) - set(base.state_dict())
    assert not missing, missing  # a renamed transformers parameter must fail loudly, not train from noise
    base.load_state_dict(state, strict=False)
    if "classifier.weight" in heads and hasattr(student, "classifier"):
        student.classifier.load_state_dict({"weight": heads["classifier.weight"], "bias": heads["classifier.bias"]})
    return student, tinybert_layer_map(facts.layers, settings.layers)


def train(run: MethodRun) -> dict[str, list]:
    """Stage 1 (embedding output, hidden states through g, attention scores), then stage 2 (prediction)."""
    s, student, teacher, mapping = run.settings, run.student, run.teacher, run.mapping
    student_tap, teacher_tap = AttentionTap(student), AttentionTap(teacher)
    student.get_input_embeddings().weight.requires_grad_(not s.freeze_word_embeddings)

    def intermediate(batch: np.ndarray) -> dict[str, torch.Tensor]:
        tokens, mask = pad([run.data.ids[i] for i in batch])
        teacher_tap.reset()
        student_tap.reset()
        with torch.no_grad():
            teacher_states = teacher(input_ids=tokens, attention_mask=mask, output_hidden_states=True).hidden_states
            teacher_scores = [teacher_tap.scores(g - 1, mask) for g in mapping]
        states = student(input_ids=tokens, attention_mask=mask, output_hidden_states=True).hidden_states
        terms = {"emb": masked_mse(states[0], teacher_states[0], mask)}
        terms["hid"] = sum(masked_mse(states[m], teacher_states[g], mask) for m, g in enumerate(mapping, 1))
        terms["att"] = sum(
            nn.functional.mse_loss(student_tap.scores(m, mask), teacher_scores[m]) for m in range(len(mapping))
        )
        terms["loss"] = terms["emb"] + terms["hid"] + terms["att"]
        return terms

    try:
        first = train_loop(
            "intermediate",
            {"student": student},
            [{"params": trainable(student), "lr": s.lr}],
            intermediate,
            run.lengths,
            run.loop(s.epochs),
            run.stage,
            run.key,
            run.progress,
        )
    finally:
        student_tap.close()
        teacher_tap.close()
    return {"intermediate": first, "prediction": final_stage(run)}


#: lr 3e-4 and 5 prediction epochs: CLINC150 96.66 % of the teacher (2 epochs at 1e-4: 87.3 %; 5 at 1e-4: 94.27 %)
METHOD = Method("albert", build, train, lr=3e-4, temperature=1.0, epochs=1, pred_epochs=5)
