"""PNG charts of a validate result (``--plot``), drawn from the result document alone.

matplotlib is optional (``pip install 'edge-bert[plot]'``): a Pi that only gates needs none of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_bert.errors import InputError
from edge_bert.results.validate import ValidateResult

#: classes shown in the per-class chart (the ones that lost most)
MAX_CLASSES = 25


def write_plots(result: ValidateResult, out_dir: Path, stem: str) -> list[Path]:
    """Per-class accuracy drop and the per-text error histogram; returns the files written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InputError("--plot needs matplotlib: pip install 'edge-bert[plot]'") from exc
    metrics = (result.accuracy.metrics if result.accuracy else None) or {}
    written = []
    changed = [r for r in metrics.get("per_class", []) if r["drop"] != 0]
    if changed:
        rows = sorted(sorted(changed, key=lambda r: -abs(r["drop"]))[:MAX_CLASSES], key=lambda r: r["drop"])
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
        colors = ["tab:red" if r["drop"] > 0 else "tab:green" for r in rows]
        ax.barh([r["label"] for r in rows], [-100 * r["drop"] for r in rows], color=colors)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel("accuracy change vs fp32 (percentage points)")
        unchanged = len(metrics["per_class"]) - len(changed)
        ax.set_title(f"{result.bundle}: classes that changed ({unchanged} unchanged)")
        written.append(_save(fig, plt, out_dir / f"{stem}.per-class.png"))
    hist = metrics.get("error_histogram")
    if hist:
        edges, counts = hist["edges"], hist["counts"]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.stairs(counts, edges, fill=True)
        ax.set_xscale("log")
        ax.set_xlabel(hist["metric"] + " vs fp32")
        ax.set_ylabel("texts")
        ax.set_title(f"{result.bundle}: error distribution")
        written.append(_save(fig, plt, out_dir / f"{stem}.errors.png"))
    return written


def _save(fig: Any, plt: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
