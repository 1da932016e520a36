"""Per-task training for `finetune` and `distill` beyond sentence classification: what one training
feature is (token ids, token types, labels), the supervised loss on the labels, the distillation loss on
the teacher's logits, and the evaluation, which runs the runner's own decoding (edge_bert/qa.py, ner.py) so
a figure printed here means what `validate --data` measures on the device.

Looked up by the runner's task name in ``TRAINERS``; the task is the one named with ``--task``, else the
one the data is (SQuAD JSON: question answering; a CoNLL file: token classification), else the teacher's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from edge_bert.errors import InputError
from edge_bert.evaldata import LabelledData

#: per-task label value that no loss counts (PyTorch's cross-entropy default, Hugging Face's convention)
IGNORE = -100


@dataclass
class Features:
    """Training features: per feature its token ids, token type ids and labels (QA: [start, end] token
    positions; NER: one tag index per token, ``IGNORE`` where no loss counts), and the data row it is from."""

    ids: list[torch.Tensor]
    types: list[torch.Tensor]
    labels: list[torch.Tensor]
    rows: list[int]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class TaskTrainer:
    """One task's training pieces (see the module docstring). ``metric`` names the headline figure that
    gates (as a fraction of ``scale``); ``logits`` turns model outputs into per-token teacher targets
    ([batch, tokens, channels])."""

    name: str
    auto_class: str
    metric: str
    detect: Callable[[LabelledData], bool]
    tags: Callable[[LabelledData, LabelledData | None], list[str] | None]
    features: Callable[[Any, LabelledData, list[str] | None, int], Features]
    supervised: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    soft: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]
    logits: Callable[[Any], torch.Tensor]
    collate: Callable[[list[torch.Tensor]], torch.Tensor]
    evaluate: Callable[[Any, Any, LabelledData, list[str] | None, int], dict[str, Any]]
    scale: float = 1.0  # the metric's full mark (SQuAD's EM/F1 are in %)
    outputs: int | None = None  # the head's fixed width (QA: start and end); None: one per tag


TRAINERS: dict[str, TaskTrainer] = {}


def register(trainer: TaskTrainer) -> TaskTrainer:
    TRAINERS[trainer.name] = trainer
    return trainer


def trainer_for(data: LabelledData, task: str | None) -> TaskTrainer | None:
    """The trainer of ``--task`` (an error naming the known ones if unknown), else of the data's kind;
    None: sentence classification (the classic path)."""
    from edge_bert.training.tasks import ner, qa  # noqa: F401  (registers both)

    if task is not None and task != "text-classification":
        if task not in TRAINERS:
            raise InputError(f"--task {task}: finetune learns text-classification, {', '.join(TRAINERS)}")
        trainer = TRAINERS[task]
        if not trainer.detect(data):
            raise InputError(f"--task {task}: the training data is not {task} data ({_kinds()})")
        return trainer
    found = next((t for t in TRAINERS.values() if t.detect(data)), None)
    if found is not None and task == "text-classification":
        raise InputError(f"--task text-classification: the training data is {found.name} data ({_kinds()})")
    return found


def trainer_of(task: str) -> TaskTrainer | None:
    """The trainer of a teacher's task, None for the tasks distill.py handles itself."""
    from edge_bert.training.tasks import ner, qa  # noqa: F401

    return TRAINERS.get(task)


def _kinds() -> str:
    return "question-answering: SQuAD-format .json; token-classification: CoNLL token/tag .conll"


def uses_types(model: Any) -> bool:
    """Whether the model's forward takes token type ids (BERT does; DistilBERT has none)."""
    import inspect

    return "token_type_ids" in inspect.signature(model.forward).parameters


def forward(model: Any, ids: list[torch.Tensor], types: list[torch.Tensor], **kwargs: Any) -> tuple[Any, torch.Tensor]:
    """The model's outputs on right-padded features, and the attention mask."""
    from edge_bert.training.data import pad

    tokens, mask = pad(ids)
    extra = {"token_type_ids": pad(types)[0]} if uses_types(model) else {}
    return model(input_ids=tokens, attention_mask=mask, **extra, **kwargs), mask


@torch.inference_mode()
def run_all(model: Any, trainer: TaskTrainer, ids: list[list[int]], types: list[list[int]]) -> list[Any]:
    """Per sequence its logits ([tokens, channels], numpy float32) in length-sorted batches (eval mode)."""
    from edge_bert.training.data import length_batches

    model.eval()
    out: list[Any] = [None] * len(ids)
    for batch in length_batches([len(x) for x in ids], 64, None):
        outputs, _ = forward(model, [torch.tensor(ids[i]) for i in batch], [torch.tensor(types[i]) for i in batch])
        logits = trainer.logits(outputs).float().numpy()
        for row, i in enumerate(batch):
            out[i] = logits[row, : len(ids[i])]
    return out


def runner_tokenizer(tokenizer: Any) -> Any:
    """A private copy of the fast tokenizer's backend without padding or truncation, as the runner's."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    return backend
