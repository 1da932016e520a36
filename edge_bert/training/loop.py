"""One training loop for `finetune` and both distillation recipes: AdamW, linear warm-up and decay,
gradient clipping, a JSONL log of every loss term, a progress callback, and an epoch checkpoint.

Restartable by construction: batch order and dropout are seeded from (seed, epoch), and after each
epoch the trained modules, optimizer and scheduler are saved with a fingerprint of the run's settings
and data. Re-running the same command resumes after the last finished epoch with results identical to
an uninterrupted run; a changed command starts afresh instead of mixing two runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_bert.training.data import length_batches

#: one optimisation step: batch row indices -> {"loss": total to minimise, other terms: for the log}
StepFn = Callable[[np.ndarray], dict[str, torch.Tensor]]
Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    batch_size: int
    seed: int
    warmup: float = 0.06  # fraction of steps with a linear warm-up (BERT's recipe)
    clip: float = 1.0
    weight_decay: float = 0.01
    log_every: int = 10


def linear_schedule(
    optimizer: torch.optim.Optimizer, total: int, warmup_fraction: float
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, int(warmup_fraction * total))

    def factor(step: int) -> float:
        return (step + 1) / warmup if step < warmup else max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_loop(
    name: str,
    modules: dict[str, nn.Module],
    param_groups: list[dict[str, Any]],
    step_fn: StepFn,
    lengths: list[int],
    settings: LoopSettings,
    stage: Path,
    fingerprint: str,
    progress: Progress | None = None,
) -> list[dict[str, float]]:
    """Train ``modules`` (their parameters in ``param_groups``); return each epoch's mean loss terms."""
    steps_per_epoch = len(length_batches(lengths, settings.batch_size, None))
    total = settings.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(param_groups, weight_decay=settings.weight_decay)
    scheduler = linear_schedule(optimizer, total, settings.warmup)
    checkpoint = stage / "checkpoint" / f"{name}.pt"
    log_file = stage / "training_log.jsonl"
    history: list[dict[str, float]] = []
    first = 0
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)
        if state["fingerprint"] == fingerprint:
            for key, module in modules.items():
                module.load_state_dict(state["modules"][key])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            first, history = int(state["epoch"]), json.loads(state["history"])
            _log(log_file, {"stage": name, "event": "resumed", "after_epoch": first})
    if first == 0:
        _log(log_file, {"stage": name, "event": "start", "fingerprint": fingerprint, "steps": total})
    step, start, seen = first * steps_per_epoch, time.time(), 0
    for epoch in range(first, settings.epochs):
        torch.manual_seed(settings.seed * 1000 + epoch)
        for module in modules.values():
            module.train()
        sums: dict[str, float] = {}
        batches = length_batches(lengths, settings.batch_size, np.random.default_rng([settings.seed, epoch]))
        for batch in batches:
            terms = step_fn(batch)
            terms["loss"].backward()
            params = [p for group in param_groups for p in group["params"]]
            nn.utils.clip_grad_norm_(params, settings.clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step, seen = step + 1, seen + len(batch)
            values = {key: float(value.detach()) for key, value in terms.items()}
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value
            rate = seen / max(time.time() - start, 1e-9)
            info = {
                "stage": name,
                "epoch": epoch + 1,
                "epochs": settings.epochs,
                "step": step,
                "total": total,
                "examples_per_s": round(rate, 1),
                **{k: round(v, 5) for k, v in values.items()},
            }
            if progress is not None:
                progress(info)
            if step % settings.log_every == 0 or step == total:
                _log(log_file, {**info, "seconds": round(time.time() - start, 1)})
        history.append({key: value / len(batches) for key, value in sums.items()})
        _log(log_file, {"stage": name, "event": "epoch", "epoch": epoch + 1, **history[-1]})
        checkpoint.parent.mkdir(exist_ok=True)
        state = {
            "fingerprint": fingerprint,
            "epoch": epoch + 1,
            "modules": {key: module.state_dict() for key, module in modules.items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "history": json.dumps(history),
        }
        torch.save(state, checkpoint.with_suffix(".tmp"))
        checkpoint.with_suffix(".tmp").replace(checkpoint)
    for module in modules.values():
        module.eval()
    return history


def _log(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
