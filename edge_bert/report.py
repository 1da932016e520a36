"""Human-readable tables (rich) and JSON output for validate/bench results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
if not console.is_terminal:  # piped or captured: wide enough that tables are not truncated
    console = Console(width=160)


def write_json(result: dict[str, Any], target: str | None) -> None:
    """``target`` is a path, ``-`` for stdout, or None for no JSON."""
    if target is None:
        return
    text = json.dumps(result, indent=2) + "\n"
    if target == "-":
        sys.stdout.write(text)
    else:
        Path(target).write_text(text, encoding="utf-8")


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
}


def gate_label(name: str) -> str:
    return GATE_LABELS.get(name) or name.removeprefix("min_").removeprefix("max_").replace("_", " ")


def validation_table(result: dict[str, Any]) -> Table:
    verdict = "[green]PASS[/green]" if result["passed"] else "[red]FAIL[/red]"
    table = Table(title=f"validate {result['bundle']}: {verdict}", caption=machine_line(result["machine"]))
    table.add_column("check")
    table.add_column("value", justify="right")
    table.add_column("gate", justify="right")
    table.add_column("verdict")
    tok = result["checks"]["tokenizer"]
    table.add_row("checksums + schema", f"{result['checks']['schema_and_checksums']['files']} files", "", "pass")
    table.add_row(
        "tokenizer reproduces golden ids",
        f"{tok['texts'] - len(tok['mismatches'])}/{tok['texts']}",
        "all",
        "pass" if tok["pass"] else "[red]fail[/red]",
    )
    parity = result["parity"]
    table.add_row("max abs error", fmt_value(parity["max_abs_error"]), "", "")
    for name, gate in result["gates"].items():
        table.add_row(
            gate_label(name),
            fmt_value(gate["value"], 6),
            ("≥ " if name.startswith("min") else "≤ ") + fmt_value(gate["threshold"]),
            "pass" if gate["pass"] else "[red]fail[/red]",
        )
    accuracy_rows(table, result)
    return table


def accuracy_rows(table: Table, result: dict[str, Any]) -> None:
    """The task-accuracy lines of the validate table (gated values appear with their gates)."""
    evaluation = result.get("accuracy") or {}
    metrics = evaluation.get("metrics") or {}
    for label, key, ref in (
        ("accuracy (fp32)", "accuracy", "fp32_accuracy"),
        ("macro-F1 (fp32)", "macro_f1", "fp32_macro_f1"),
        ("k-NN accuracy (fp32)", "knn_accuracy", "fp32_knn_accuracy"),
    ):
        if key in metrics:
            table.add_row(label, f"{metrics[key]:.4f} ({fmt_value(metrics.get(ref))})", "", "")
    if metrics.get("worst_classes"):
        worst = ", ".join(f"{c['label']} -{100 * c['drop']:.1f}pt" for c in metrics["worst_classes"][:3])
        table.add_row("classes that lost most", worst, "", "")
    for note in evaluation.get("notes", []):
        table.add_row("note", note, "", "")


def write_reports(result: dict[str, Any], out_dir: Path, plot: bool = False) -> list[Path]:
    """``BUNDLE.validate.json`` + ``.md`` (and PNGs with ``plot``) under ``out_dir``; returns the paths."""
    from edge_bert.markdown import validation_markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{result['bundle']}.validate"
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    write_json(result, str(json_path))
    md_path.write_text(validation_markdown(result), encoding="utf-8")
    files = [json_path, md_path]
    if plot:
        from edge_bert.plots import write_plots

        files += write_plots(result, out_dir, stem)
    return files


def bench_table(result: dict[str, Any]) -> Table:
    mem = result["memory_mib"]
    table = Table(
        title=(
            f"bench {result['bundle']} · {result['runtime']['name']} {result['settings']['threads']} threads · "
            f"cold load {result['cold_load_ms']:.0f} ms · first inference {result['first_inference_ms']:.1f} ms · "
            f"peak RSS {mem['peak_rss']:.0f} MiB"
        ),
        caption=machine_line(result["machine"]),
    )
    for column in ("seq", "padded", "p50 ms", "p90 ms", "p99 ms", "mean ± std", "inf/s", "tokens/s"):
        table.add_column(column, justify="right")
    for row in result["latency"]:
        table.add_row(
            str(row["seq_length"]),
            str(row["padded_to"]),
            f"{row['p50_ms']:.2f}",
            f"{row['p90_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            f"{row['mean_ms']:.2f} ± {row['std_ms']:.2f}",
            f"{row['throughput_per_s']:.1f}",
            f"{row['tokens_per_s']:.0f}",
        )
    return table
