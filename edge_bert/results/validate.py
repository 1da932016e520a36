"""``ValidateResult``: what ``validate`` found, as one typed object (``edge-bert/validate/v1`` in JSON).

The gates and ``passed`` are what the runner concluded; a host re-derives them from ``parity`` and
``accuracy`` (validate.judge) for a result that came from a device. Task metrics on labelled data differ
per task (accuracy and per-class rows, entity F1, exact match...), so ``accuracy.metrics`` is a table whose
gate-read figures are checked by name; everything else here is a fixed field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_bert.results.header import ResultHeader, non_negative
from edge_bert.schema import CHECK, KEY

SCHEMA = "edge-bert/validate/v1"

#: the figures of ``accuracy.metrics`` that gates and tables read: each a number or null when present
GATED_METRICS = ("accuracy_pct_of_fp32", "agreement", "neighbour_recall", "same_nearest_neighbour")


@dataclass(frozen=True)
class ChecksumCheck:
    passed: bool = field(metadata={KEY: "pass"})
    files: int = field(metadata={CHECK: non_negative})


@dataclass(frozen=True)
class TokenizerCheck:
    passed: bool = field(metadata={KEY: "pass"})
    texts: int = field(metadata={CHECK: non_negative})
    mismatches: list[str]


@dataclass(frozen=True)
class Checks:
    schema_and_checksums: ChecksumCheck
    tokenizer: TokenizerCheck


@dataclass(frozen=True)
class Parity:
    """The golden texts through the runtime against the stored fp32 outputs (metrics.parity). A figure that
    was not finite is null in JSON (never NaN), and a gate never passes on null."""

    output: str
    reference: str
    samples: float
    finite: float
    max_abs_error: float | None
    mean_cosine: float | None
    worst_cosine: float | None
    max_rel_error: float | None
    top1_agreement: float | None
    top1_agreement_all: float | None = None
    top1_near_ties: float | None = None
    neighbour_agreement: float | None = None
    neighbour_recall: float | None = None

    def metrics(self) -> dict[str, float | None]:
        """The figures by name, as the task's gates read them."""
        return {k: v for k, v in vars(self).items() if k not in ("output", "reference")}


@dataclass(frozen=True)
class Predictions:
    """A classifier's top-1 per golden text, to compare devices text by text."""

    top1: list[int]
    fp32_top1: list[int]
    fp32_margin: list[float]


def _gated(metrics: dict[str, Any]) -> str | None:
    for name in GATED_METRICS:
        value = metrics.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"{name}: expected a number or null, got {value!r:.40}"
    return None


@dataclass(frozen=True)
class Evaluation:
    """The task on labelled data (``--data``), or only notes (no data given, or no fp32 reference)."""

    notes: list[str]
    data: dict[str, Any] | None = None
    rows: int | None = field(default=None, metadata={CHECK: non_negative})
    truncated: int | None = field(default=None, metadata={CHECK: non_negative})
    metrics: dict[str, Any] | None = field(default=None, metadata={CHECK: _gated})

    def metric(self, name: str) -> float | None:
        value = (self.metrics or {}).get(name)
        return float(value) if value is not None else None


@dataclass(frozen=True)
class GateVerdict:
    threshold: float
    value: float | None
    passed: bool = field(metadata={KEY: "pass"})
    decides: bool = True


@dataclass(frozen=True)
class ValidateResult(ResultHeader):
    checks: Checks
    parity: Parity
    predictions: Predictions | None
    accuracy: Evaluation | None
    gates: dict[str, GateVerdict]
    seconds: float = field(metadata={CHECK: non_negative})
    passed: bool

    def failed_gates(self) -> list[str]:
        """The deciding gates that failed, by name."""
        return sorted(name for name, v in self.gates.items() if v.decides and not v.passed)
