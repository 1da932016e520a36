"""One small config per architecture: what differs between BERT-family models at export time.

Adding an architecture means adding one entry here (and tests), nothing else — the exporter,
quantizer and runner read these fields instead of branching on model names.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_bert.errors import ConversionError


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
    """

    model_type: str
    inputs: tuple[str, ...]
    exporters: tuple[str, ...] = ("torchscript", "dynamo")
    ort_optimizer_type: str | None = "bert"
    attn_implementation: str = "eager"
    heads_attr: str = "num_attention_heads"
    hidden_attr: str = "hidden_size"
    qkv_projections: tuple[str, str, str] = ("query", "key", "value")
    notes: str = ""

    def input_axes(self, static: bool) -> dict[int, str]:
        """Dynamic axes of every input: batch always, sequence unless the profile fixes the length."""
        return {0: "batch"} if static else {0: "batch", 1: "sequence"}


_BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

REGISTRY: dict[str, ArchitectureConfig] = {
    cfg.model_type: cfg
    for cfg in (
        ArchitectureConfig("bert", _BERT_INPUTS, notes="BERT, MiniLM and TinyBERT checkpoints"),
        ArchitectureConfig(
            "distilbert",
            ("input_ids", "attention_mask"),
            heads_attr="n_heads",
            hidden_attr="dim",
            qkv_projections=("q_lin", "k_lin", "v_lin"),
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
