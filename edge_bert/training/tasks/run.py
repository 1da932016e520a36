"""`finetune` and `distill` (DistilBERT method) for the tasks of ``TRAINERS``: the same job, loop, checkpoint
and atomic output as sentence classification (finetune.py, distill.py), with the task's features, losses and
runner-side evaluation. The head is the task's (``AutoModelFor…``), with ``id2label`` from the tag set."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_bert.convert.architectures import REGISTRY
from edge_bert.errors import InputError
from edge_bert.evaldata import LabelledData
from edge_bert.training.data import finish, length_batches, pad, subsample
from edge_bert.training.loop import LoopSettings, Progress, train_loop
from edge_bert.training.setup import Job, Started, fingerprint, param_groups, start
from edge_bert.training.student import build_student, dims
from edge_bert.training.tasks import Features, TaskTrainer, forward


def _key_data(data: LabelledData) -> list[Any]:
    return [data.texts, data.labels, data.contexts, data.answers]


def _labels(feats: Features, batch: np.ndarray, trainer: TaskTrainer) -> torch.Tensor:
    return trainer.collate([feats.labels[i] for i in batch])


def gate(evaluated: dict[str, Any] | None, metric: str, value: float | None, threshold: float | None) -> dict:
    """The verdict on ``metric`` (None threshold: not gated; no evaluation data: nothing measured)."""
    if threshold is None:
        return {"gate": None, "passed": True}
    if evaluated is None or value is None:
        return {"gate": None, "passed": True, "note": "no labelled --eval-data: nothing measured, nothing gated"}
    result = {"metric": metric, "threshold": threshold, "value": round(value, 5), "pass": value >= threshold}
    return {"gate": result, "passed": result["pass"]}


def finetune_task(
    trainer: TaskTrainer,
    job: Job,
    train: LabelledData,
    settings: Any,
    eval_data: LabelledData | None,
    progress: Progress | None,
) -> dict[str, Any]:
    """Fine-tune the base with a fresh ``trainer`` head; bottom ``frozen_layers`` layers stay fixed."""
    start_time = time.time()
    started = start(job, settings.seed, settings.threads)
    train = subsample(train, settings.max_train, settings.seed)
    tags = trainer.tags(train, eval_data)
    layers = REGISTRY[started.config.model_type].dims(started.config)[0]
    if settings.frozen_layers > layers:
        raise InputError(f"--frozen-layers {settings.frozen_layers}: the base has {layers} layers")
    names = {"id2label": dict(enumerate(tags)), "label2id": {t: i for i, t in enumerate(tags)}} if tags else {}
    if trainer.outputs is not None:  # a base saved with another head width (num_labels) gets the task's
        names = {"num_labels": trainer.outputs}
    stage = started.stage()
    model, tokenizer = started.load(trainer.auto_class, ignore_mismatched_sizes=True, **names)
    feats = trainer.features(tokenizer, train, tags, settings.max_length)

    def step(batch: np.ndarray) -> dict[str, torch.Tensor]:
        outputs, _ = forward(model, [feats.ids[i] for i in batch], [feats.types[i] for i in batch])
        return {"loss": trainer.supervised(trainer.logits(outputs), _labels(feats, batch, trainer))}

    key = fingerprint(asdict(settings), trainer.name, started.source, tags, *_key_data(train))
    history = train_loop(
        "finetune",
        {"model": model},
        param_groups(model, settings.frozen_layers, settings.lr, settings.head_lr),
        step,
        [len(x) for x in feats.ids],
        LoopSettings(settings.epochs, settings.batch_size, settings.seed),
        stage,
        key,
        progress,
    )
    summary: dict[str, Any] = {
        "command": "finetune",
        "task": trainer.name,
        "base": started.source,
        "train_rows": len(train),
        "train_features": len(feats),
        **({"labels": len(tags)} if tags else {}),
        "settings": asdict(settings),
        "train_loss_per_epoch": [round(h["loss"], 5) for h in history],
    }
    value = None
    if eval_data is not None:
        summary["eval"] = {"source": eval_data.source, **trainer.evaluate(model, tokenizer, eval_data, tags,
                                                                          settings.max_length)}  # fmt: skip
        value = summary["eval"][trainer.metric] / trainer.scale
    summary.update(gate(summary.get("eval"), trainer.metric, value, settings.min_accuracy))
    summary["seconds"] = round(time.time() - start_time, 1)
    finish(stage, job.out, model, tokenizer, started.source, summary)
    summary["out"] = str(job.out)
    return summary


@torch.inference_mode()
def teacher_outputs(teacher: nn.Module, trainer: TaskTrainer, feats: Features) -> tuple[list, list]:
    """Per feature the teacher's logits ([tokens, channels]) and last hidden states (fp16), computed once."""
    logits: list[Any] = [None] * len(feats)
    hidden: list[Any] = [None] * len(feats)
    for batch in length_batches([len(x) for x in feats.ids], 64, None):
        outputs, _ = forward(
            teacher, [feats.ids[i] for i in batch], [feats.types[i] for i in batch], output_hidden_states=True
        )
        for row, i in enumerate(batch):
            size = len(feats.ids[i])
            logits[i] = trainer.logits(outputs)[row, :size].clone()
            hidden[i] = outputs.hidden_states[-1][row, :size].to(torch.float16)
    return logits, hidden


def distill_task(
    trainer: TaskTrainer,
    started: Started,
    train: LabelledData,
    settings: Any,
    eval_data: LabelledData | None,
    progress: Progress | None,
) -> dict[str, Any]:
    """DistilBERT method: alpha_kd x KL on the task's logits (start/end over tokens, or tags per token) at
    temperature T + alpha_ce x cross-entropy on the labels + alpha_cos x (1 - cosine) of last hidden states."""
    start_time = time.time()
    settings = replace(settings, lr=settings.lr or 1e-4, temperature=settings.temperature or 2.0)
    teacher, tokenizer = started.load(trainer.auto_class)
    teacher.eval().requires_grad_(False)
    train = subsample(train, settings.max_train, settings.seed)
    tags = None
    if trainer.tags(train, eval_data) is not None:
        tags = [str(teacher.config.id2label[i]) for i in range(teacher.config.num_labels)]
        unknown = sorted({t for label in train.labels or [] for t in label.split()} - set(tags))
        if unknown:
            raise InputError(f"tags {unknown[:5]} of the training data are not tags of the teacher ({tags[:8]})")
    feats = trainer.features(tokenizer, train, tags, settings.max_length)
    stage = started.stage()
    cached_logits, cached_hidden = teacher_outputs(teacher, trainer, feats)
    student, mapping = build_student(teacher, settings.layers, None, "distilbert")
    student.get_input_embeddings().weight.requires_grad_(not settings.freeze_word_embeddings)
    s = settings

    def step(batch: np.ndarray) -> dict[str, torch.Tensor]:
        outputs, mask = forward(
            student, [feats.ids[i] for i in batch], [feats.types[i] for i in batch], output_hidden_states=True
        )
        logits = trainer.logits(outputs)
        keep = mask.bool()
        teacher_hidden = pad([cached_hidden[i] for i in batch])[0].float()
        terms = {
            "kd": trainer.soft(logits, pad([cached_logits[i] for i in batch])[0], mask, s.temperature),
            "ce": trainer.supervised(logits, _labels(feats, batch, trainer)),
            "cos": 1 - nn.functional.cosine_similarity(outputs.hidden_states[-1][keep], teacher_hidden[keep]).mean(),
        }
        terms["loss"] = s.alpha_kd * terms["kd"] + s.alpha_ce * terms["ce"] + s.alpha_cos * terms["cos"]
        return terms

    key = fingerprint(asdict(settings), "distilbert", trainer.name, started.source, *_key_data(train))
    params = [p for p in student.parameters() if p.requires_grad]
    history = train_loop(
        "distill",
        {"student": student},
        [{"params": params, "lr": s.lr}],
        step,
        [len(x) for x in feats.ids],
        LoopSettings(s.epochs, s.batch_size, s.seed),
        stage,
        key,
        progress,
    )
    summary: dict[str, Any] = {
        "command": "distill",
        "task": trainer.name,
        "method": "distilbert",
        "recipe": "distilbert",  # deprecated name of "method", kept for one release
        "teacher": started.source,
        "layers": s.layers,
        "hidden_size": dims(student.config)[1],
        "layer_map": mapping,
        "train_rows": len(train),
        "train_features": len(feats),
        "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
        "student_parameters": sum(p.numel() for p in student.parameters()),
        "settings": asdict(s),
        "loss_per_epoch": {"distill": [{k: round(v, 5) for k, v in h.items()} for h in history]},
    }
    value = None
    if eval_data is not None:
        student_metrics = trainer.evaluate(student, tokenizer, eval_data, tags, s.max_length)
        teacher_metrics = trainer.evaluate(teacher, tokenizer, eval_data, tags, s.max_length)
        best = teacher_metrics[trainer.metric]
        value = 100.0 * student_metrics[trainer.metric] / best if best else 0.0
        summary["eval"] = {"source": eval_data.source, "student": student_metrics, "teacher": teacher_metrics,
                           f"{trainer.metric}_pct_of_teacher": round(value, 2)}  # fmt: skip
    summary.update(gate(summary.get("eval"), f"{trainer.metric}_pct_of_teacher", value, s.min_pct_of_teacher))
    summary["seconds"] = round(time.time() - start_time, 1)
    finish(stage, started.job.out, student, tokenizer, started.source, summary)
    summary["out"] = str(started.job.out)
    return summary
