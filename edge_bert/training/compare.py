"""Student against teacher after distillation: accuracy (or neighbour recall for embedding teachers) with
the gate verdict, and the figures a device cares about side by side - parameters, fp32 parameter bytes
(counted once per tensor, so ALBERT's shared layer counts once) and FLOPs at 128 tokens."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edge_bert.convert.architectures import architecture
from edge_bert.convert.flops import count_flops
from edge_bert.convert.tasks import build_graph
from edge_bert.evaldata import LabelledData, match_labels
from edge_bert.tasks import EmbeddingTask, Task
from edge_bert.training.data import embed, encode, predict_logits, subsample
from edge_bert.training.finetune import classification_summary

#: sequence length of the FLOPs figure (bench's roofline uses the same counter)
FLOPS_LENGTH = 128


def footprint(model: nn.Module, task: Task) -> dict[str, Any]:
    """Parameters, their fp32 bytes and FLOPs of one 128-token sequence through the exported graph."""
    params = sum(p.numel() for p in model.parameters())
    graph = build_graph(task, model)
    flops = count_flops(graph, architecture(model.config.model_type), FLOPS_LENGTH)
    return {
        "model_type": model.config.model_type,
        "parameters": params,
        "fp32_mb": round(params * 4 / 1e6, 2),
        f"flops_at_{FLOPS_LENGTH}": int(flops),
    }


def side_by_side(teacher: nn.Module, student: nn.Module, task: Task, summary: dict[str, Any]) -> dict[str, Any]:
    """{"teacher": {...}, "student": {...}} with accuracy where it was measured, and the student's ratios."""
    rows = {"teacher": footprint(teacher, task), "student": footprint(student, task)}
    measured = summary.get("eval", {})
    for name in rows:
        if isinstance(measured.get(name), dict) and "accuracy" in measured[name]:
            rows[name]["accuracy"] = measured[name]["accuracy"]
    for key in ("parameters", f"flops_at_{FLOPS_LENGTH}"):
        rows["student"][f"{key}_pct_of_teacher"] = round(100 * rows["student"][key] / rows["teacher"][key], 1)
    return rows


def evaluate(
    teacher: nn.Module,
    student: nn.Module,
    tokenizer: Any,
    train: LabelledData,
    eval_data: LabelledData | None,
    labels: list[str] | None,
    embedding: bool,
    pooling: str,
    normalize: bool,
    s: Any,  # DistillSettings
) -> dict[str, Any]:
    """Student vs teacher on the evaluation data, and the gate verdict."""
    if embedding:
        data = eval_data or subsample(train, 2000, s.seed)
        ids = encode(tokenizer, data, None, s.max_length).ids
        student_emb, teacher_emb = embed(student, ids, normalize), embed(teacher, ids, normalize)
        metrics = EmbeddingTask().evaluate(student_emb.numpy(), teacher_emb.numpy(), data.labels, None)
        keep = (
            "neighbour_recall",
            "same_nearest_neighbour",
            "top_k_overlap",
            "mean_cosine",
            "knn_accuracy",
            "fp32_knn_accuracy",
        )
        result = {k.replace("fp32", "teacher"): round(float(metrics[k]), 5) for k in keep if k in metrics}
        value, threshold = result["neighbour_recall"], s.min_neighbour_recall
        gate = {"metric": "neighbour_recall", "threshold": threshold, "value": value, "pass": value >= threshold}
        return {"eval": {"source": data.source, "rows": len(data), **result}, "gate": gate, "passed": gate["pass"]}
    if eval_data is None or eval_data.labels is None:
        return {"gate": None, "passed": True, "note": "no labelled --eval-data: accuracy not measured, nothing gated"}
    ids = encode(tokenizer, eval_data, None, s.max_length).ids
    targets = torch.as_tensor(match_labels(eval_data.labels, labels))
    student_logits, teacher_logits = predict_logits(student, ids), predict_logits(teacher, ids)
    student_metrics = classification_summary(student_logits, targets)
    teacher_metrics = classification_summary(teacher_logits, targets)
    pct = 100.0 * student_metrics["accuracy"] / teacher_metrics["accuracy"] if teacher_metrics["accuracy"] else 0.0
    agreement = float((student_logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean())
    gate = {
        "metric": "accuracy_pct_of_teacher",
        "threshold": s.min_pct_of_teacher,
        "value": round(pct, 2),
        "pass": pct >= s.min_pct_of_teacher,
    }
    return {
        "eval": {
            "source": eval_data.source,
            "rows": len(eval_data),
            "student": student_metrics,
            "teacher": teacher_metrics,
            "accuracy_pct_of_teacher": round(pct, 2),
            "agreement_with_teacher": round(agreement, 5),
        },
        "gate": gate,
        "passed": gate["pass"],
    }
