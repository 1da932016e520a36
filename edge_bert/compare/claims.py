"""The seed papers' published claims, and the parameter counts of the configs they describe.

A report puts each claim next to what this device measured; the parameter counts are computed
from the transformers config classes (built on the meta device: no weights, no memory), never typed
in, so a claim like "66M parameters" is checked against the shipped architecture, not repeated.
Each claim names the hardware it was measured on: a K80 GPU or TPU training throughput says
nothing about a phone, and ALBERT's "speed-up" is the latter - sharing shrinks the file, not the
compute, which the report shows with the measured FLOPs and latency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: the reference every claim is relative to
REFERENCE = "bert-base"


@dataclass(frozen=True)
class PaperModel:
    """One published architecture: how to build its config and which paper it comes from."""

    name: str
    method: str
    paper: str
    hub_id: str
    config: Callable[[], object]


@dataclass(frozen=True)
class Claim:
    """One published figure: ``value`` in ``unit``, for ``model``, measured on ``hardware``."""

    model: str
    quantity: str  # parameters | size-ratio | speed-up | latency-ms | pct-of-reference
    value: float
    unit: str
    hardware: str
    source: str
    note: str = ""


def _bert():
    import transformers

    return transformers.BertConfig()


def _distilbert():
    import transformers

    return transformers.DistilBertConfig()


def _tinybert4():
    import transformers

    return transformers.BertConfig(num_hidden_layers=4, hidden_size=312, intermediate_size=1200, num_attention_heads=12)


def _mobilebert():
    import transformers

    return transformers.MobileBertConfig()


def _albert_base():
    import transformers

    return transformers.AlbertConfig(
        hidden_size=768, num_attention_heads=12, intermediate_size=3072, embedding_size=128, num_hidden_layers=12
    )


#: the shipped configs of the four methods and the reference (hub ids a user with the internet loads)
MODELS: dict[str, PaperModel] = {
    m.name: m
    for m in (
        PaperModel("bert-base", "reference", "Devlin et al. 2019", "bert-base-uncased", _bert),
        PaperModel("distilbert", "distilbert", "Sanh et al. 2019", "distilbert-base-uncased", _distilbert),
        PaperModel("tinybert-4", "tinybert", "Jiao et al. 2020", "huawei-noah/TinyBERT_General_4L_312D", _tinybert4),
        PaperModel("mobilebert", "mobilebert", "Sun et al. 2020", "google/mobilebert-uncased", _mobilebert),
        PaperModel("albert-base", "albert", "Lan et al. 2020", "albert-base-v2", _albert_base),
    )
}

_DISTIL = "DistilBERT (Sanh et al. 2019)"
_TINY = "TinyBERT (Jiao et al. 2020)"
_MOBILE = "MobileBERT (Sun et al. 2020)"
_ALBERT = "ALBERT (Lan et al. 2020), Table 2"

CLAIMS: tuple[Claim, ...] = (
    Claim("bert-base", "parameters", 110e6, "parameters", "-", _DISTIL),
    Claim("distilbert", "parameters", 66e6, "parameters", "-", _DISTIL),
    Claim(
        "distilbert",
        "speed-up",
        668 / 410,
        "x bert-base",
        "Xeon E5-2690 v3, batch 1, STS-B dev (410 vs 668 s)",
        _DISTIL,
        "published as '60 % faster'",
    ),
    Claim("distilbert", "pct-of-reference", 97.0, "% of BERT-base, GLUE", "-", _DISTIL),
    Claim("tinybert-4", "parameters", 14.5e6, "parameters", "-", _TINY),
    Claim("tinybert-4", "size-ratio", 7.5, "x smaller than bert-base", "-", _TINY),
    Claim("tinybert-4", "speed-up", 9.4, "x bert-base", "NVIDIA K80 GPU, inference", _TINY),
    Claim("tinybert-4", "pct-of-reference", 96.8, "% of BERT-base, GLUE", "-", _TINY),
    Claim("mobilebert", "parameters", 25.3e6, "parameters", "-", _MOBILE),
    Claim("mobilebert", "size-ratio", 4.3, "x smaller than bert-base", "-", _MOBILE),
    Claim("mobilebert", "speed-up", 5.5, "x bert-base", "Pixel 4 phone", _MOBILE),
    Claim("mobilebert", "latency-ms", 62.0, "ms at 128 tokens", "Pixel 4 phone, TFLite", _MOBILE),
    Claim("albert-base", "parameters", 12e6, "parameters", "-", _ALBERT),
    Claim(
        "albert-base",
        "speed-up",
        5.6,
        "x bert-large training throughput",
        "Cloud TPU v3, training",
        _ALBERT,
        "training data throughput, not inference: sharing shrinks the file, every layer still computes",
    ),
)


def parameter_count(name: str) -> int:
    """Parameters of ``MODELS[name]``'s encoder (shared weights counted once), built on the meta device."""
    import torch
    import transformers

    with torch.device("meta"):
        model = transformers.AutoModel.from_config(MODELS[name].config())
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class CheckedClaim:
    """A parameter claim next to the count computed from the config."""

    claim: Claim
    computed: int

    @property
    def ratio(self) -> float:
        """computed / claimed: 1.0 means the paper's figure is the shipped architecture's."""
        return self.computed / self.claim.value


def parameter_claims() -> list[CheckedClaim]:
    """Every ``parameters`` claim with the count of the config it describes."""
    counts = {name: parameter_count(name) for name in MODELS}
    return [CheckedClaim(c, counts[c.model]) for c in CLAIMS if c.quantity == "parameters"]
