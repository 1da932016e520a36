"""What ``finetune``, ``distill`` and the task trainers share before training: the job (model in, directory
out), one setup, the run's fingerprint and the optimiser's parameter groups.

A job is built by the CLI (or a script) and handed to the library function with that command's settings;
``start`` resolves the source, reads and checks its config, refuses an existing OUT before anything loads,
and fixes the seed and thread count, in that order for both commands.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from edge_bert.training.data import (
    load_config,
    load_pretrained,
    load_tokenizer,
    resolve_source,
    seed_everything,
    staging_dir,
)

S = TypeVar("S")


@dataclass(frozen=True)
class Job:
    """Where a training run reads its model and writes its result."""

    source: str | None  # hub id or save_pretrained dir; None = the embedded all-MiniLM-L6-v2
    out: Path
    overwrite: bool = False
    revision: str | None = None
    trust_remote_code: bool = False


@dataclass(frozen=True)
class Started:
    """A job whose source resolved and whose config passed the architecture registry."""

    job: Job
    source: str
    config: Any

    def load(self, auto_class: str, **kwargs: Any) -> tuple[Any, Any]:
        """(model, tokenizer) of the source, e.g. ``AutoModelForSequenceClassification``."""
        job = self.job
        model = load_pretrained(auto_class, self.source, job.revision, job.trust_remote_code, **kwargs)
        return model, load_tokenizer(self.source, job.revision, job.trust_remote_code)

    def stage(self) -> Path:
        """``OUT.partial``, where the run writes (and resumes) until it is complete."""
        return staging_dir(self.job.out, self.job.overwrite)


def start(job: Job, seed: int, threads: int) -> Started:
    """Resolve, read the config, refuse an existing OUT (the one clear error, before anything loads), seed."""
    source = resolve_source(job.source)
    config = load_config(source, job.revision, job.trust_remote_code)
    if job.out.exists() and not job.overwrite:
        staging_dir(job.out, job.overwrite)
    seed_everything(seed, threads)
    return Started(job, source, config)


def with_options(settings: S, **options: Any) -> S:
    """``settings`` with the options the user gave (None = keep the setting)."""
    return replace(settings, **{k: v for k, v in options.items() if v is not None})


def param_groups(model: nn.Module, frozen: int, lr: float, head_lr: float) -> list[dict[str, Any]]:
    """Encoder parameters above the frozen ones at ``lr``; pooler and task head at ``head_lr``."""
    prefix = model.base_model_prefix + "."
    body, head = [], []
    for name, param in model.named_parameters():
        layer = re.search(r"\.layer\.(\d+)\.", name)
        is_head = not name.startswith(prefix) or ".pooler." in name
        is_frozen = not is_head and frozen > 0 and (layer is None or int(layer.group(1)) < frozen)
        param.requires_grad_(not is_frozen)
        if not is_frozen:
            (head if is_head else body).append(param)
    return [{"params": body, "lr": lr}, {"params": head, "lr": head_lr}]


def fingerprint(*parts: Any) -> str:
    """What makes two runs the same run (settings, base, data): a resumed run must match it."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
