"""The MobileBERT method from the user's teacher (the MobileBERT paper, 2020): bottlenecked layers,
stacked FFNs, NoNorm and ReLU, trained by progressive knowledge transfer, then prediction distillation.

- Student: ``MobileBert...`` whose inter-block width is the teacher's hidden size, so feature maps transfer
  without projections (the teacher plays IB-BERT's part); intra-block bottleneck B (default 128), 4 FFNs of
  width 4B, NoNorm, ReLU, trigram embedding of size E (128). Heads: the teacher's when they divide B, else
  MobileBERT's 4 (the attention loss then compares head-averaged distributions).
- Embeddings from the teacher's: word table = the teacher's in the top-E right-singular basis, the trigram
  transformation's centre block maps it back (side blocks start at 0); position and type tables copied; the
  NoNorm scale is the teacher's LayerNorm scale over the typical embedding norm.
- Progressive knowledge transfer: stage l = 1..N trains layer l only (the embeddings with layer 1), lower
  layers frozen, on feature-map MSE between the student's layer-l output and the teacher's layer g(l) output
  plus KL between their attention distributions; only the bottom l layers of each model run. Then
  prediction distillation with everything trainable.
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
from edge_bert.training.methods.transfer import AttentionTap, attention_kl, layer_list, truncated
from edge_bert.training.student import tinybert_layer_map

MOBILEBERT_HEADS = 4


def mobilebert_config(teacher_config: Any, layers: int, bottleneck: int, embedding_size: int) -> Any:
    facts = TeacherFacts.of(teacher_config)
    heads = facts.heads if bottleneck % facts.heads == 0 else MOBILEBERT_HEADS
    return transformers.MobileBertConfig(
        **facts.common,
        embedding_size=embedding_size,
        hidden_size=facts.hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * bottleneck,
        hidden_act="relu",
        trigram_input=True,
        use_bottleneck=True,
        intra_bottleneck_size=bottleneck,
        use_bottleneck_attention=False,
        key_query_shared_bottleneck=True,
        num_feedforward_networks=4,
        normalization_type="no_norm",
        classifier_activation=True,
    )


def init_embeddings(teacher: nn.Module, student: nn.Module, embedding_size: int) -> None:
    words, basis = word_svd(teacher, embedding_size)
    source, target = teacher.base_model.embeddings, student.base_model.embeddings
    with torch.no_grad():
        target.word_embeddings.weight.copy_(words)
        transform = target.embedding_transformation
        transform.weight.zero_()
        transform.weight[:, embedding_size : 2 * embedding_size].copy_(basis.T)
        transform.bias.zero_()
        target.position_embeddings.weight.copy_(source.position_embeddings.weight)
        token_types = getattr(source, "token_type_embeddings", None)
        if token_types is not None:
            target.token_type_embeddings.weight.copy_(token_types.weight)
        else:
            target.token_type_embeddings.weight.zero_()
        # NoNorm cannot normalise: scale by the teacher's LayerNorm over the typical (centred) word-vector norm
        centred = words @ basis - (words @ basis).mean(-1, keepdim=True)
        spread = centred.pow(2).mean(-1).sqrt().mean()
        target.LayerNorm.weight.copy_(source.LayerNorm.weight / spread)
        target.LayerNorm.bias.copy_(source.LayerNorm.bias)


def build(teacher: nn.Module, settings: Any, auto_class: str) -> tuple[nn.Module, list[int]]:
    facts = TeacherFacts.of(teacher.config)
    config = mobilebert_config(teacher.config, settings.layers, settings.bottleneck, settings.embedding_size)
    student = new_student(config, auto_class)
    init_embeddings(teacher, student, settings.embedding_size)
    heads = head_weights(teacher)
    pooler = getattr(student.base_model, "pooler", None)
    if pooler is not None and "pooler.weight" in heads:
        pooler.dense.load_state_dict({"weight": heads["pooler.weight"], "bias": heads["pooler.bias"]})
    if "classifier.weight" in heads and hasattr(student, "classifier"):
        student.classifier.load_state_dict({"weight": heads["classifier.weight"], "bias": heads["classifier.bias"]})
    return student, tinybert_layer_map(facts.layers, settings.layers)


def train(run: MethodRun) -> dict[str, list]:
    """N progressive stages (layer l learns, layers below frozen), then prediction distillation."""
    s, student, teacher = run.settings, run.student, run.teacher
    student_tap, teacher_tap = AttentionTap(student), AttentionTap(teacher)
    owner, name = layer_list(student)
    history: dict[str, list] = {}
    try:
        for layer, target in enumerate(run.mapping, 1):
            student.requires_grad_(False)
            getattr(owner, name)[layer - 1].requires_grad_(True)
            if layer == 1:
                student.base_model.embeddings.requires_grad_(True)
                student.get_input_embeddings().weight.requires_grad_(not s.freeze_word_embeddings)
            step = _transfer_step(run, layer, target, student_tap, teacher_tap)
            history[f"layer{layer}"] = train_loop(
                f"layer{layer}",
                {"student": student},
                [{"params": trainable(student), "lr": s.lr}],
                step,
                run.lengths,
                run.loop(s.epochs, 1 + layer),
                run.stage,
                run.key,
                run.progress,
            )
    finally:
        student_tap.close()
        teacher_tap.close()
    history["prediction"] = final_stage(run)
    return history


def _transfer_step(run: MethodRun, layer: int, target: int, student_tap: AttentionTap, teacher_tap: AttentionTap):
    """Feature-map MSE + attention KL of student layer ``layer`` against teacher layer ``target``."""

    def step(batch: np.ndarray) -> dict[str, torch.Tensor]:
        tokens, mask = pad([run.data.ids[i] for i in batch])
        teacher_tap.reset()
        student_tap.reset()
        with torch.no_grad(), truncated(run.teacher, target):
            teacher_out = run.teacher.base_model(input_ids=tokens, attention_mask=mask)
            teacher_attention = teacher_tap.log_probs(target - 1, mask)
        with truncated(run.student, layer):
            out = run.student.base_model(input_ids=tokens, attention_mask=mask)
        terms = {
            "fmt": masked_mse(out.last_hidden_state, teacher_out.last_hidden_state, mask),
            "at": attention_kl(student_tap.log_probs(layer - 1, mask), teacher_attention, mask),
        }
        terms["loss"] = terms["fmt"] + terms["at"]
        return terms

    return step


#: 5 prediction epochs: CLINC150 95.77 % of the teacher (2 epochs: 91.5 %)
METHOD = Method("mobilebert", build, train, lr=5e-4, temperature=1.0, epochs=1, pred_epochs=5)
