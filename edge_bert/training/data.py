"""What `finetune` and `distill` share: labelled data as token ids, length-bucketed batches, safe model
loading for training, evaluation, and an atomic, restartable output directory.

Batches are built from texts sorted by length (little padding: on a CPU padding is pure waste), and
the order of batches is a function of (seed, epoch) only, so an interrupted run resumed from its last
epoch checkpoint sees exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from torch import nn

from edge_bert.convert.architectures import architecture
from edge_bert.convert.loading import default_model_path
from edge_bert.errors import ConversionError, InputError
from edge_bert.evaldata import LabelledData

#: name of the per-epoch checkpoint directory inside a run's staging directory
STAGING_SUFFIX = ".partial"


@dataclass
class Encoded:
    """Token ids per text (unpadded) and class indices (None for texts without labels)."""

    ids: list[torch.Tensor]
    targets: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.ids)


def label_names(train: LabelledData, eval_data: LabelledData | None = None) -> list[str]:
    """Classes of the training data, sorted (numerically when all are integers, as GLUE's 0/1).

    A label that only the evaluation data has is an error naming it: the model could never predict it.
    """
    if train.labels is None:
        raise InputError(
            f"{train.source.get('name', 'the training data')}: has no label column; name it with --label-column"
        )
    names = set(train.labels)
    ordered = sorted(names, key=int) if all(n.lstrip("-").isdigit() for n in names) else sorted(names)
    if eval_data is not None and eval_data.labels is not None:
        unseen = Counter(label for label in eval_data.labels if label not in names)
        if unseen:
            listed = ", ".join(f"{label!r} ({n} rows)" for label, n in unseen.most_common(5))
            raise InputError(
                f"{len(unseen)} label(s) in the evaluation data never occur in the training data: {listed}. "
                f"The training data has {len(ordered)} labels"
            )
    return ordered


def encode(tokenizer: Any, data: LabelledData, labels: list[str] | None, max_length: int) -> Encoded:
    """Token ids truncated to ``max_length``; labels mapped onto ``labels`` by name."""
    encoded = tokenizer(data.texts, truncation=True, max_length=max_length)["input_ids"]
    ids = [torch.tensor(x, dtype=torch.long) for x in encoded]
    targets = None
    if labels is not None and data.labels is not None:
        index = {name: i for i, name in enumerate(labels)}
        targets = torch.tensor([index[label] for label in data.labels])
    return Encoded(ids, targets)


def subsample(data: LabelledData, limit: int, seed: int) -> LabelledData:
    """A fixed random subset of ``limit`` rows (in file order), or the data itself when it is smaller."""
    if not 0 < limit < len(data):
        return data
    keep = np.sort(np.random.default_rng(seed).permutation(len(data))[:limit])
    picked = data.subset([int(i) for i in keep])  # questions keep their contexts and answers
    picked.source = {**data.source, "rows": limit}
    return picked


def seed_everything(seed: int, threads: int = 1) -> None:
    """Fixed seeds, a fixed thread count and deterministic kernels.

    One thread by default: measured on a busy 2-core box, OpenMP spin-waiting made 2 torch threads
    1.5-9x slower than 1 whenever other jobs ran; a fixed count also keeps float results repeatable.
    """
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def length_batches(lengths: list[int], batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Batches of similar length (little padding = less CPU); batch order shuffled when rng is given."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token ids (L,) or hidden states (L, H) with zeros; return (padded, attention mask)."""
    padded = nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    lengths = torch.tensor([len(seq) for seq in seqs])
    return padded, (torch.arange(padded.shape[1])[None, :] < lengths[:, None]).long()


def resolve_source(source: str | None) -> str:
    """A hub id or local dir; None = the embedded all-MiniLM-L6-v2."""
    if source is None:
        return str(default_model_path())
    if source.startswith((".", "/", "~")) and not Path(source).expanduser().exists():
        raise InputError(f"model directory not found: {source}")
    return source


def load_config(source: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    """The checkpoint's config, checked against the architecture registry (one clear error if unknown)."""
    try:
        config = transformers.AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load a model config from {source!r}: {exc}") from exc
    architecture(config.model_type)
    return config


def load_pretrained(
    auto_class: str, source: str, revision: str | None = None, trust_remote_code: bool = False, **kwargs: Any
) -> nn.Module:
    """``from_pretrained`` from safetensors only (never unpickles a .bin checkpoint)."""
    try:
        return getattr(transformers, auto_class).from_pretrained(
            source, use_safetensors=True, revision=revision, trust_remote_code=trust_remote_code, **kwargs
        )
    except (OSError, ValueError) as exc:
        raise ConversionError(
            f"cannot load {source!r} from safetensors weights: {exc} "
            "(edge-bert never unpickles .bin checkpoints; convert them to safetensors first)"
        ) from exc


def load_tokenizer(source: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        source, revision=revision, trust_remote_code=trust_remote_code
    )
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ConversionError(f"{source!r} has no fast tokenizer (tokenizer.json); the bundles need one")
    return tokenizer


@torch.inference_mode()
def predict_logits(model: nn.Module, ids: list[torch.Tensor], batch_size: int = 128) -> torch.Tensor:
    """Logits through the model's standard HF forward, i.e. what a loader of the saved dir gets."""
    model.eval()
    out = torch.empty(len(ids), model.config.num_labels)
    for batch in length_batches([len(x) for x in ids], batch_size, None):
        tokens, mask = pad([ids[i] for i in batch])
        out[torch.as_tensor(batch)] = model(input_ids=tokens, attention_mask=mask).logits.float()
    return out


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor, normalize: bool) -> torch.Tensor:
    """sentence-transformers' mean pooling over real tokens, then optional L2 normalisation."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return nn.functional.normalize(pooled, dim=-1) if normalize else pooled


@torch.inference_mode()
def embed(model: nn.Module, ids: list[torch.Tensor], normalize: bool, batch_size: int = 128) -> torch.Tensor:
    """Pooled sentence embeddings of an encoder (``AutoModel``)."""
    model.eval()
    out = torch.empty(len(ids), model.config.hidden_size)
    for batch in length_batches([len(x) for x in ids], batch_size, None):
        tokens, mask = pad([ids[i] for i in batch])
        out[torch.as_tensor(batch)] = mean_pool(
            model(input_ids=tokens, attention_mask=mask).last_hidden_state, mask, normalize
        ).float()
    return out


def staging_dir(out: Path, overwrite: bool) -> Path:
    """Where a run writes until it is complete: ``OUT.partial`` next to OUT (kept for resuming)."""
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.with_name(out.name + STAGING_SUFFIX)
    if stage.is_dir() and not (stage / "checkpoint").is_dir():
        shutil.rmtree(stage)  # an earlier run stopped before its first checkpoint: nothing to resume
    stage.mkdir(exist_ok=True)
    return stage


def finish(stage: Path, out: Path, model: nn.Module, tokenizer: Any, source: str, summary: dict[str, Any]) -> None:
    """save_pretrained (safetensors) + tokenizer + summary into the staging dir, then rename it to OUT.

    tokenizer.json would keep the training truncation: reset it to the model's position limit.
    vocab.txt: transformers 5 omits it, WordPiece-only tools need it, so it is copied from the base.
    """
    model.save_pretrained(stage)
    backend = tokenizer.backend_tokenizer
    backend.no_padding()
    backend.enable_truncation(max_length=getattr(model.config, "max_position_embeddings", 512))
    tokenizer.save_pretrained(stage)
    vocab = Path(source) / "vocab.txt"
    if vocab.is_file() and not (stage / "vocab.txt").exists():
        shutil.copyfile(vocab, stage / "vocab.txt")
    (stage / "eval_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    shutil.rmtree(stage / "checkpoint", ignore_errors=True)
    if out.exists():
        shutil.rmtree(out)
    stage.rename(out)
