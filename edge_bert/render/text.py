"""Formatting shared by the terminal tables (report.py) and the Markdown reports (markdown.py)."""

from __future__ import annotations

from typing import Any

from edge_bert.results.validate import GateVerdict


def fmt_value(value: Any, digits: int = 4, style: str = "g") -> str:
    """``-`` for a missing value, a float with ``digits`` in ``style`` (g: significant, f: decimals)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}{style}}"
    return str(value)


def machine_line(machine: dict[str, Any]) -> str:
    flags = ",".join(machine["isa_flags"]) or "none"
    return f"{machine['cpu_model']} · {machine['machine']} · {machine['cpu_count']} cores · ISA {flags}"


GATE_LABELS = {
    "min_accuracy_pct_of_fp32": "accuracy % of fp32",
    "min_prediction_agreement": "prediction agreement with fp32",
    "min_neighbour_recall": "fp32 nearest neighbour in top 5",
    "min_neighbour_agreement": "same nearest neighbour as fp32",
    "min_top1_agreement": "golden top-1 agreement (clear margin)",
    "min_collapse_cosine": "worst cosine (collapse floor)",
}


def gate_verdict(gate: GateVerdict, fail: str = "fail") -> str:
    """pass / fail for a gate that decides; "reported" for one measured but not deciding for this task."""
    if not gate.decides:
        return "reported"
    return "pass" if gate.passed else fail


def gate_label(name: str) -> str:
    return GATE_LABELS.get(name) or name.removeprefix("min_").removeprefix("max_").replace("_", " ")
