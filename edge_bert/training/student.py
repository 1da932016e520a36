"""Build a student from its teacher, as the papers do, as an ordinary model of the teacher's class.

- DistilBERT (Sanh et al. 2019): same width, fewer layers, each copied from the teacher. Sanh's
  extraction took teacher layers [0, 2, 4, 7, 9, 11] for 6 of 12: evenly spaced, first and last kept,
  which is ``round(linspace(0, L-1, N))``; the same rule gives [0, 2, 5] for 3 of 6.
- TinyBERT (Jiao et al. 2020): narrower; student layer m (1-based) learns from teacher layer
  g(m) = m * L / N. The paper starts task distillation from a general-distilled TinyBERT, which needs a
  pre-training corpus we do not have; instead the student's embeddings start as the teacher's projected
  on their top principal directions, and the learned projection W (student -> teacher width) starts as
  that projection's transpose, so the embedding-layer loss starts small. The encoder layers are random.

The student is a ``type(teacher)`` built from a copy of the teacher's config, so `edge-bert convert`
and every target profile take it unchanged.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_bert.convert.architectures import REGISTRY, ArchitectureConfig
from edge_bert.errors import InputError

_LAYER_KEY = re.compile(r"\.layer\.(\d+)\.")


def teacher_family(config: Any) -> ArchitectureConfig:
    """The registry entry of a teacher config, if distillation can take that family apart."""
    arch = REGISTRY.get(config.model_type)
    if arch is None or not arch.students:
        families = " and ".join(name for name, entry in REGISTRY.items() if entry.students)
        raise InputError(f"distillation supports {families} teachers, not {config.model_type!r}")
    return arch


def dims(config: Any) -> tuple[int, int, int]:
    """(layers, hidden size, attention heads) of a teacher config."""
    return teacher_family(config).dims(config)[:3]


def check_student(config: Any, layers: int, hidden_size: int | None, recipe: str) -> None:
    """One clear error for a student the teacher cannot give (the CLI turns it into exit 2)."""
    teacher_layers, teacher_hidden, heads = dims(config)
    if not 1 <= layers <= teacher_layers:
        raise InputError(
            f"--layers {layers}: the student needs 1..{teacher_layers} layers (the teacher has {teacher_layers})"
        )
    if hidden_size is None or hidden_size == teacher_hidden:
        return
    if recipe != "tinybert":
        raise InputError(
            f"--hidden-size {hidden_size}: only the TinyBERT recipe (classification teachers) changes "
            f"the width; the {recipe} recipe keeps the teacher's {teacher_hidden}"
        )
    if not teacher_family(config).narrower_students:
        raise InputError(f"the TinyBERT recipe needs a BERT-type teacher, not {config.model_type!r}")
    if not 0 < hidden_size < teacher_hidden or hidden_size % heads:
        raise InputError(
            f"--hidden-size {hidden_size}: must be below the teacher's {teacher_hidden} and a multiple "
            f"of its {heads} attention heads (TinyBERT keeps the head count)"
        )


def distilbert_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """0-based teacher layer copied into each student layer: evenly spaced, first and last kept."""
    return [int(i) for i in np.round(np.linspace(0, teacher_layers - 1, student_layers))]


def tinybert_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """g(m) for m = 1..N: the teacher hidden-state index (1-based layer; 0 = embeddings) student layer m learns."""
    return [round(m * teacher_layers / student_layers) for m in range(1, student_layers + 1)]


def student_config(config: Any, layers: int, hidden_size: int | None) -> Any:
    arch = teacher_family(config)
    layer_field, hidden_field, ffn_field = arch.layers_attr, arch.hidden_attr, arch.ffn_attr
    student = copy.deepcopy(config)
    setattr(student, layer_field, layers)
    if hidden_size is not None and hidden_size != getattr(config, hidden_field):
        ratio = getattr(config, ffn_field) / getattr(config, hidden_field)
        setattr(student, hidden_field, hidden_size)
        setattr(student, ffn_field, round(ratio * hidden_size))
    return student


def copy_layers(teacher: nn.Module, student: nn.Module, mapping: list[int]) -> None:
    """Student weights = teacher weights, student layer i <- teacher layer mapping[i] (DistilBERT init)."""
    source = teacher.state_dict()
    state = {}
    for key in student.state_dict():
        match = _LAYER_KEY.search(key)
        name = key if match is None else _LAYER_KEY.sub(f".layer.{mapping[int(match.group(1))]}.", key, count=1)
        state[key] = source[name].clone()
    student.load_state_dict(state)


def principal_projection(teacher: nn.Module, width: int) -> torch.Tensor:
    """[teacher width, width]: the top right-singular vectors of the teacher's word embeddings."""
    weights = teacher.get_input_embeddings().weight.detach().float()
    _, _, vh = torch.linalg.svd(weights - weights.mean(0), full_matrices=False)
    return vh[:width].T.contiguous()


def project_embeddings(teacher: nn.Module, student: nn.Module, projection: torch.Tensor) -> None:
    """Student word/position/token-type embeddings = the teacher's, projected (TinyBERT init here)."""
    source = teacher.base_model.embeddings
    target = student.base_model.embeddings
    with torch.no_grad():
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            getattr(target, name).weight.copy_(getattr(source, name).weight @ projection)


def build_student(teacher: nn.Module, layers: int, hidden_size: int | None, recipe: str) -> tuple[nn.Module, list[int]]:
    """The student (teacher's class, fewer layers / narrower) and its layer map."""
    teacher_layers, teacher_hidden, _ = dims(teacher.config)
    check_student(teacher.config, layers, hidden_size, recipe)
    student = type(teacher)(student_config(teacher.config, layers, hidden_size))
    if recipe == "tinybert":
        if hidden_size is None or hidden_size == teacher_hidden:
            copy_layers(teacher, student, distilbert_layer_map(teacher_layers, layers))
        else:
            project_embeddings(teacher, student, principal_projection(teacher, hidden_size))
        return student, tinybert_layer_map(teacher_layers, layers)
    mapping = distilbert_layer_map(teacher_layers, layers)
    copy_layers(teacher, student, mapping)
    return student, mapping
