"""One small config per architecture: what differs between BERT-family models at export and training time.

Adding an architecture means adding one entry here (and tests), nothing else — the exporter,
quantizer, runner and trainers read these fields instead of branching on model names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from edge_bert.errors import ConversionError
from edge_bert.session import batch_feeds


@dataclass(frozen=True)
class ArchitectureConfig:
    """Export facts for one ``config.model_type``.

    inputs: model inputs in order (DistilBERT has no token_type_ids).
    exporters: torch.onnx paths to try, in order; the first whose output matches PyTorch wins.
        TorchScript first: measured ≤1e-8 max-abs on all four families, 20x faster than dynamo,
        and onnxruntime's transformer optimizer's shape inference fails on dynamo graphs.
    ort_optimizer_type: model_type for onnxruntime.transformers.optimizer, None to skip fusions.
    attn_implementation: attention code path to export. "eager" traces the explicit softmax(QK^T)V
        subgraph that onnxruntime's optimizer recognises and fuses into its Attention op (and int8
        QAttention); transformers 5's default SDPA path exports a shape the optimizer does not fuse.
    heads_attr / hidden_attr: config attributes the optimizer needs (names differ per family).
    qkv_projections: attribute names of the attention's query, key and value ``nn.Linear`` (LiteRT op
        names carry them as ``Linear_<name>``), for recipes that keep them float.
    layers_attr / ffn_attr: config attributes of the layer count and the feed-forward width (students).
    students: whether distillation can take a teacher of this family apart (copy or drop whole layers).
    narrower_students: whether a student may also be narrower (TinyBERT's projected embeddings).
    frozen_layer_cache: whether finetune may cache the output of frozen bottom layers (it re-runs the
        encoder layers as BertModel does, so only BERT's layer call is known to match).
    """

    model_type: str
    inputs: tuple[str, ...]
    exporters: tuple[str, ...] = ("torchscript", "dynamo")
    ort_optimizer_type: str | None = "bert"
    attn_implementation: str = "eager"
    heads_attr: str = "num_attention_heads"
    hidden_attr: str = "hidden_size"
    qkv_projections: tuple[str, str, str] = ("query", "key", "value")
    layers_attr: str = "num_hidden_layers"
    ffn_attr: str = "intermediate_size"
    students: bool = False
    narrower_students: bool = False
    frozen_layer_cache: bool = False
    notes: str = ""

    def input_axes(self, static: bool) -> dict[int, str]:
        """Dynamic axes of every input: batch always, sequence unless the profile fixes the length."""
        return {0: "batch"} if static else {0: "batch", 1: "sequence"}

    def feeds(self, texts: Sequence[tuple[Sequence, Sequence | None]], padded: int) -> tuple[torch.Tensor, ...]:
        """The model's inputs, in order, for token sequences (ids, type ids or None) padded to ``padded``:
        the runner's feeds (session.batch_feeds) as int64 tensors, to call a graph with positionally."""
        arrays = batch_feeds(texts, dict.fromkeys(self.inputs, np.dtype(np.int64)), padded)
        return tuple(torch.from_numpy(arrays[name]) for name in self.inputs)

    def dims(self, config: object) -> tuple[int, int, int, int]:
        """(layers, hidden size, attention heads, feed-forward width) of a config of this family."""
        fields = (self.layers_attr, self.hidden_attr, self.heads_attr, self.ffn_attr)
        return tuple(getattr(config, name) for name in fields)  # type: ignore[return-value]


_BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

REGISTRY: dict[str, ArchitectureConfig] = {
    cfg.model_type: cfg
    for cfg in (
        ArchitectureConfig(
            "bert",
            _BERT_INPUTS,
            students=True,
            narrower_students=True,
            frozen_layer_cache=True,
            notes="BERT, MiniLM and TinyBERT checkpoints",
        ),
        ArchitectureConfig(
            "distilbert",
            ("input_ids", "attention_mask"),
            heads_attr="n_heads",
            hidden_attr="dim",
            qkv_projections=("q_lin", "k_lin", "v_lin"),
            layers_attr="n_layers",
            ffn_attr="hidden_dim",
            students=True,
            notes="no token_type_ids input",
        ),
        ArchitectureConfig("albert", _BERT_INPUTS, notes="shared layer weights; factorised embeddings"),
        ArchitectureConfig(
            "mobilebert",
            _BERT_INPUTS,
            hidden_attr="true_hidden_size",
            notes="NoNorm instead of LayerNorm and bottlenecks: the bert fusions find little to fuse",
        ),
    )
}


def architecture(model_type: str) -> ArchitectureConfig:
    try:
        return REGISTRY[model_type]
    except KeyError:
        raise ConversionError(
            f"unsupported architecture {model_type!r}; supported: {', '.join(sorted(REGISTRY))} "
            "(TinyBERT and MiniLM checkpoints are model_type 'bert')"
        ) from None
