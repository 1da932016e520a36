"""`edge-bert distill`: a teacher + the user's texts -> a smaller student of the same architecture,
gated on how much of the teacher it keeps, saved as a checkpoint `edge-bert convert` takes unchanged.

Methods (``--method``; student construction in ``student.py``, the other-family methods in ``methods/``):
- ``distilbert`` (Sanh et al. 2019): loss = alpha_kd * T^2 * KL(teacher || student at temperature T)
  + alpha_ce * cross-entropy on the labels + alpha_cos * (1 - cosine) between the last hidden states.
- ``tinybert`` (Jiao et al. 2020): stage 1, intermediate layers: MSE between embedding outputs and
  between hidden states (student side through one learned projection W, as the reference code's
  ``fit_dense``) and MSE between pre-softmax attention scores; stage 2, prediction layer: soft
  cross-entropy against the teacher's logits at temperature T. No data augmentation.
- ``embedding`` (sentence-transformers teachers, feature-extraction): (1 - cosine) + MSE between the
  pooled sentence embeddings; gated by neighbour recall against the teacher.
- ``albert`` and ``mobilebert`` (``methods/``): a student of that family built from the teacher's weights,
  layer-wise transfer then prediction distillation (or pooled-embedding matching for an embedding teacher).
Teacher outputs that do not change are computed once (eval mode) and cached: on a CPU the teacher's
forward pass would otherwise cost as much as the student's training step.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_bert.convert.loading import _sentence_transformers_head
from edge_bert.convert.tasks import HOST, host_task
from edge_bert.errors import InputError
from edge_bert.evaldata import LabelledData, match_labels
from edge_bert.tasks import EmbeddingTask, Task, infer_task
from edge_bert.training.compare import evaluate, side_by_side
from edge_bert.training.data import (
    Encoded,
    encode,
    finish,
    length_batches,
    mean_pool,
    pad,
    subsample,
)
from edge_bert.training.loop import LoopSettings, Progress, train_loop
from edge_bert.training.losses import QueryKeyTap, masked_mse, soft_cross_entropy, soft_kl
from edge_bert.training.methods import METHODS, MethodRun
from edge_bert.training.setup import Job, fingerprint, start
from edge_bert.training.student import build_student, check_student, dims, principal_projection
from edge_bert.training.tasks import trainer_of
from edge_bert.training.tasks.run import distill_task

RECIPES = ("auto", "distilbert", "tinybert", "embedding", *METHODS)
#: sentence-transformers files copied from an embedding teacher (pooling and normalisation travel along)
ST_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling",
    "2_Normalize",
)


@dataclass(frozen=True)
class DistillSettings:
    layers: int
    hidden_size: int | None = None
    method: str = "auto"  # distilbert when the width is kept, tinybert when it shrinks; embedding teachers: embedding
    # None = per method: 3 (distilbert / embedding; tinybert: intermediate-layer stage); albert: intermediate
    # stage; mobilebert: each progressive per-layer stage (methods/*.py: METHOD)
    epochs: int | None = None
    # prediction-layer stage (tinybert, albert, mobilebert). Measured on CLINC150 (tinybert 4 layers, width 192):
    # 3 epochs at T=2 kept 59 % of the teacher, 10 epochs at T=1 (the TinyBERT reference code's) 96.8 %.
    pred_epochs: int | None = None
    embedding_size: int = 128  # albert, mobilebert: factorised word-embedding size E
    bottleneck: int = 128  # mobilebert: intra-block bottleneck width
    # None = per recipe, the values measured on CLINC150: lr 1e-4 and T=2 where the layers are copied from the
    # teacher (distilbert, embedding); lr 5e-4 and T=1 (the TinyBERT reference code's) for random tinybert layers
    lr: float | None = None
    temperature: float | None = None
    alpha_kd: float = 1.0
    alpha_ce: float = 1.0
    alpha_cos: float = 1.0
    batch_size: int = 32
    max_length: int = 64
    max_train: int = 0
    seed: int = 0
    threads: int = 1
    min_pct_of_teacher: float = 95.0  # classification gate: student accuracy as % of the teacher's
    min_neighbour_recall: float = 0.9  # embedding gate: teacher's nearest text among the student's 5 nearest
    # The word embeddings (copied or projected from the teacher) stay fixed: for MiniLM they are 11.7M of a
    # 3-layer student's 17M parameters, and their dense gradient + AdamW update doubled the step time
    # (measured 545 -> 261 ms per batch of 32 on the 2-core box). Position/type embeddings still train.
    freeze_word_embeddings: bool = True


def resolve_recipe(recipe: str, task: Task, config: Any, hidden_size: int | None) -> str:
    """The method to run for a teacher of ``task`` (its host task and the methods registry list the ones
    that take it)."""
    if recipe not in RECIPES:
        raise InputError(f"unknown method {recipe!r}; methods: {', '.join(RECIPES)}")
    allowed = allowed_methods(task)
    if not allowed:
        raise InputError(f"no distillation recipe takes a {task.name} teacher")
    own = host_task(task).distill_recipes  # auto picks among the teacher's own-family methods only
    if recipe == "auto" and len(own) == 1:
        return own[0]
    if recipe == "auto":
        return "tinybert" if hidden_size is not None and hidden_size < dims(config)[1] else "distilbert"
    if recipe not in allowed:
        wanted = " or ".join(name for name in HOST if recipe in allowed_methods(name))
        raise InputError(
            f"the {recipe} method needs a {wanted} teacher; this one is {task.name} (its methods: {', '.join(allowed)})"
        )
    return recipe


def allowed_methods(task: Task | str) -> tuple[str, ...]:
    name = task if isinstance(task, str) else task.name
    return host_task(name).distill_recipes + tuple(m for m, method in METHODS.items() if name in method.tasks)


def method_defaults(method: str) -> dict[str, Any]:
    """lr, temperature and epochs where the user gave none: the values measured on CLINC150 (see the fields)."""
    if method in METHODS:
        m = METHODS[method]
        return {"lr": m.lr, "temperature": m.temperature, "epochs": m.epochs, "pred_epochs": m.pred_epochs}
    tiny = method == "tinybert"
    return {"lr": 5e-4 if tiny else 1e-4, "temperature": 1.0 if tiny else 2.0, "epochs": 3, "pred_epochs": 10}


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@torch.inference_mode()
def teacher_cache(teacher: nn.Module, ids: list[torch.Tensor], kind: str, normalize: bool = True) -> dict[str, list]:
    """Per-example teacher outputs that stay fixed during training: logits (+ last hidden states in fp16
    for the DistilBERT cosine term), or the pooled embedding before normalisation."""
    teacher.eval()
    cache: dict[str, list] = {"logits": [None] * len(ids), "hidden": [None] * len(ids), "pooled": [None] * len(ids)}
    for batch in length_batches([len(x) for x in ids], 128, None):
        tokens, mask = pad([ids[i] for i in batch])
        out = teacher(input_ids=tokens, attention_mask=mask, output_hidden_states=kind == "distilbert")
        pooled = mean_pool(out.last_hidden_state, mask, False) if kind == "embedding" else None
        for row, i in enumerate(batch):
            if kind == "embedding":
                cache["pooled"][i] = pooled[row].clone()
            else:
                cache["logits"][i] = out.logits[row].clone()
            if kind == "distilbert":
                cache["hidden"][i] = out.hidden_states[-1][row, : len(ids[i])].to(torch.float16)
    return cache


def distill(
    job: Job,
    train: LabelledData,
    settings: DistillSettings,
    eval_data: LabelledData | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Distil ``job.source`` (the teacher) into a ``settings.layers``-layer student saved to ``job.out``."""
    start_time = time.time()
    started = start(job, settings.seed, settings.threads)  # refuses a bad source or an existing OUT
    source, config = started.source, started.config
    task = infer_task(getattr(config, "architectures", None))
    method = resolve_recipe(settings.method, task, config, settings.hidden_size)
    check_student(config, settings.layers, settings.hidden_size, method)
    trainer = trainer_of(task.name)
    if trainer is not None:  # question answering, token classification (DistilBERT method): training/tasks/
        return distill_task(trainer, started, train, settings, eval_data, progress)
    teacher, tokenizer = started.load(host_task(task).auto_class)
    teacher.eval().requires_grad_(False)
    train = subsample(train, settings.max_train, settings.seed)
    labels = [str(teacher.config.id2label[i]) for i in range(teacher.config.num_labels)] if task.labelled else None
    data = encode(tokenizer, train, None, settings.max_length)
    if labels and train.labels is not None:
        data.targets = torch.as_tensor(match_labels(train.labels, labels))
    if labels and eval_data is not None and eval_data.labels is not None:
        match_labels(eval_data.labels, labels)  # names an unknown label before training starts
    pooling, normalize = _sentence_transformers_head(Path(source))
    embedding = task.name == EmbeddingTask.name
    if embedding and pooling == "cls":
        raise InputError("embedding distillation supports mean-pooling teachers only (this one pools [CLS])")
    settings = replace(settings, **{k: v for k, v in method_defaults(method).items() if getattr(settings, k) is None})
    stage = started.stage()
    cache = teacher_cache(teacher, data.ids, "embedding" if embedding else method, normalize)
    if method in METHODS:
        student, mapping = METHODS[method].build(teacher, settings, host_task(task).auto_class)
    else:
        student, mapping = build_student(teacher, settings.layers, settings.hidden_size, method)
    key = fingerprint(asdict(settings), method, source, train.texts, train.labels)
    loop = LoopSettings(settings.epochs, settings.batch_size, settings.seed)
    lengths = [len(x) for x in data.ids]
    student.get_input_embeddings().weight.requires_grad_(not settings.freeze_word_embeddings)
    groups = [{"params": trainable(student), "lr": settings.lr}]
    history: dict[str, list[dict[str, float]]] = {}
    if method in METHODS:
        run = MethodRun(teacher, student, mapping, data, cache, settings, stage, key, progress, embedding)
        history.update(METHODS[method].train(run))
    elif method == "tinybert":
        history.update(_tinybert(teacher, student, mapping, data, cache, settings, stage, key, progress))
    else:
        step = _step(method, student, data, cache, settings)
        history["distill"] = train_loop(
            "distill", {"student": student}, groups, step, lengths, loop, stage, key, progress
        )
    summary: dict[str, Any] = {
        "command": "distill",
        "method": method,
        "recipe": method,  # deprecated name of "method", kept for one release
        "teacher": source,
        "layers": settings.layers,
        "hidden_size": student.config.hidden_size,
        "layer_map": mapping,
        "train_rows": len(train),
        "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
        "student_parameters": sum(p.numel() for p in student.parameters()),
        "settings": asdict(settings),
        "loss_per_epoch": {
            name: [{k: round(v, 5) for k, v in h.items()} for h in rows] for name, rows in history.items()
        },
    }
    summary.update(
        evaluate(teacher, student, tokenizer, train, eval_data, labels, embedding, pooling, normalize, settings)
    )
    summary["side_by_side"] = side_by_side(teacher, student, task, summary)
    summary["seconds"] = round(time.time() - start_time, 1)
    finish(
        _with_st_files(stage, Path(source)) if embedding else stage,
        job.out,
        student,
        tokenizer,
        source,
        summary,
    )
    summary["out"] = str(job.out)
    return summary


def _step(
    recipe: str, student: nn.Module, data: Encoded, cache: dict[str, list], s: DistillSettings
) -> Callable[[np.ndarray], dict[str, torch.Tensor]]:
    """The training step of the single-stage recipes (distilbert, embedding) against the cached teacher."""

    def batch_inputs(batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens, mask = pad([data.ids[i] for i in batch])
        return tokens, mask, torch.as_tensor(batch)

    def distilbert_step(batch: np.ndarray) -> dict[str, torch.Tensor]:
        tokens, mask, rows = batch_inputs(batch)
        out_ = student(input_ids=tokens, attention_mask=mask, output_hidden_states=True)
        target = torch.stack([cache["logits"][i] for i in batch])
        teacher_hidden = pad([cache["hidden"][i] for i in batch])[0].float()
        keep = mask.bool()
        terms = {
            "kd": soft_kl(out_.logits, target, s.temperature),
            "cos": 1 - nn.functional.cosine_similarity(out_.hidden_states[-1][keep], teacher_hidden[keep]).mean(),
        }
        if data.targets is not None:
            terms["ce"] = nn.functional.cross_entropy(out_.logits, data.targets[rows])
        terms["loss"] = s.alpha_kd * terms["kd"] + s.alpha_cos * terms["cos"] + s.alpha_ce * terms.get("ce", 0.0)
        return terms

    def embedding_step(batch: np.ndarray) -> dict[str, torch.Tensor]:
        tokens, mask, _ = batch_inputs(batch)
        hidden = student(input_ids=tokens, attention_mask=mask).last_hidden_state
        pooled = mean_pool(hidden, mask, False)
        target = torch.stack([cache["pooled"][i] for i in batch])
        terms = {
            "cos": 1 - nn.functional.cosine_similarity(pooled, target).mean(),
            "mse": nn.functional.mse_loss(pooled, target),
        }
        terms["loss"] = terms["cos"] + terms["mse"]
        return terms

    return distilbert_step if recipe == "distilbert" else embedding_step


def _tinybert(
    teacher: nn.Module,
    student: nn.Module,
    mapping: list[int],
    data: Encoded,
    cache: dict[str, list],
    s: DistillSettings,
    stage: Path,
    key: str,
    progress: Progress | None,
) -> dict[str, list]:
    """Stage 1 (embeddings, attention scores, hidden states through W), then stage 2 (soft labels)."""
    width, teacher_width = dims(student.config)[1], dims(teacher.config)[1]
    projection = nn.Linear(width, teacher_width)
    if width < teacher_width:  # start as the transpose of the embedding projection (student.py)
        with torch.no_grad():
            projection.weight.copy_(principal_projection(teacher, width))
            projection.bias.zero_()
    student_tap, teacher_tap = QueryKeyTap(student), QueryKeyTap(teacher)
    lengths = [len(x) for x in data.ids]

    def intermediate(batch: np.ndarray) -> dict[str, torch.Tensor]:
        tokens, mask = pad([data.ids[i] for i in batch])
        with torch.no_grad():
            teacher_states = teacher(input_ids=tokens, attention_mask=mask, output_hidden_states=True).hidden_states
            teacher_scores = {g - 1: teacher_tap.scores(g - 1, mask) for g in mapping}
        states = student(input_ids=tokens, attention_mask=mask, output_hidden_states=True).hidden_states
        terms = {"emb": masked_mse(projection(states[0]), teacher_states[0], mask)}
        terms["hid"] = sum(masked_mse(projection(states[m]), teacher_states[g], mask) for m, g in enumerate(mapping, 1))
        terms["att"] = sum(
            nn.functional.mse_loss(student_tap.scores(m, mask), teacher_scores[g - 1]) for m, g in enumerate(mapping)
        )
        terms["loss"] = terms["emb"] + terms["hid"] + terms["att"]
        return terms

    def prediction(batch: np.ndarray) -> dict[str, torch.Tensor]:
        tokens, mask = pad([data.ids[i] for i in batch])
        logits = student(input_ids=tokens, attention_mask=mask).logits
        pred = soft_cross_entropy(logits, torch.stack([cache["logits"][i] for i in batch]), s.temperature)
        return {"loss": pred, "pred": pred}

    params = [*trainable(student), *projection.parameters()]
    try:
        first = train_loop(
            "intermediate",
            {"student": student, "projection": projection},
            [{"params": params, "lr": s.lr}],
            intermediate,
            lengths,
            LoopSettings(s.epochs, s.batch_size, s.seed),
            stage,
            key,
            progress,
        )
    finally:
        student_tap.close()
        teacher_tap.close()
    second = train_loop(
        "prediction",
        {"student": student},
        [{"params": trainable(student), "lr": s.lr}],
        prediction,
        lengths,
        LoopSettings(s.pred_epochs, s.batch_size, s.seed + 1),
        stage,
        key,
        progress,
    )
    return {"intermediate": first, "prediction": second}


def _with_st_files(stage: Path, teacher_dir: Path) -> Path:
    """Copy sentence-transformers' module files so the student pools and normalises like the teacher."""
    for name in ST_FILES:
        source = teacher_dir / name
        if source.is_dir():
            shutil.copytree(source, stage / name, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copyfile(source, stage / name)
    return stage
