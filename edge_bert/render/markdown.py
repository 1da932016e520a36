"""The Markdown summary of a validate result: what a reviewer reads in a PR or a device-lab log."""

from __future__ import annotations

from typing import Any

from edge_bert.render.escape import markdown as md
from edge_bert.render.text import fmt_value, gate_label, gate_verdict, machine_line
from edge_bert.results.validate import ValidateResult
from edge_bert.schema import to_plain


def _num(value: Any, digits: int = 4) -> str:
    return fmt_value(value, digits, "f")


def _gate_rows(result: ValidateResult) -> list[str]:
    rows = ["| check | value | gate | verdict |", "|---|---:|---:|---|"]
    checks = result.checks
    rows.append(f"| checksums + schema | {checks.schema_and_checksums.files} files | | pass |")
    tok = checks.tokenizer
    ok = tok.texts - len(tok.mismatches)
    rows.append(f"| tokenizer reproduces golden ids | {ok}/{tok.texts} | all | {'pass' if tok.passed else 'FAIL'} |")
    for name, gate in result.gates.items():
        sign = "≥" if name.startswith("min") else "≤"
        label = md(gate_label(name))
        verdict = gate_verdict(gate, "**FAIL**")
        rows.append(f"| {label} | {md(_num(gate.value, 5))} | {sign} {md(_num(gate.threshold))} | {verdict} |")
    return rows


def _accuracy_rows(metrics: dict[str, Any]) -> list[str]:
    pairs = [
        ("accuracy", "accuracy", "fp32_accuracy"),
        ("macro-F1", "macro_f1", "fp32_macro_f1"),
        (f"k-NN accuracy (k={metrics.get('k')})", "knn_accuracy", "fp32_knn_accuracy"),
    ]
    rows = ["| metric | bundle | fp32 |", "|---|---:|---:|"]
    rows += [f"| {label} | {_num(metrics[a])} | {_num(metrics.get(b))} |" for label, a, b in pairs if a in metrics]
    singles = [
        ("accuracy as % of fp32", "accuracy_pct_of_fp32", 2),
        ("prediction agreement with fp32", "agreement", 4),
        (f"fp32's nearest neighbour in the bundle's top {metrics.get('k')}", "neighbour_recall", 4),
        ("same nearest neighbour as fp32", "same_nearest_neighbour", 4),
        (f"top-{metrics.get('k')} neighbour overlap", "top_k_overlap", 4),
        ("mean / worst cosine to fp32", "mean_cosine", 5),
        ("texts fp32 got right and the bundle wrong", "broken", 0),
        ("texts fp32 got wrong and the bundle right", "fixed", 0),
    ]
    for label, key, digits in singles:
        if key in metrics:
            value = _num(metrics[key], digits)
            if key == "mean_cosine":
                value += f" / {_num(metrics['worst_cosine'], digits)}"
            rows.append(f"| {label} | {value} | |")
    return rows


def validation_markdown(result: ValidateResult) -> str:
    verdict = "PASS" if result.passed else "FAIL"
    runtime = result.runtime["name"]
    lines = [
        f"# validate {md(result.bundle)}: {verdict}",
        "",
        md(
            f"{result.format} / {result.recipe} · task {result.task} · {runtime} "
            f"{result.runtime.get(runtime, '')}".rstrip()
        ),
        f"machine: {md(machine_line(to_plain(result.machine)))}",
        "",
        *_gate_rows(result),
    ]
    evaluation = result.accuracy
    metrics = evaluation.metrics if evaluation else None
    if evaluation and metrics:
        source = evaluation.data or {}
        name = source.get("name") or source.get("id")
        split = f" ({source['split']})" if source.get("split") else ""
        heading = md(f"Task accuracy on {name}{split}, {evaluation.rows} texts")
        lines += ["", f"## {heading}", "", *_accuracy_rows(metrics)]
        if metrics.get("worst_classes"):
            lines += [
                "",
                "### Classes that lost most",
                "",
                "| class | texts | fp32 | bundle | drop |",
                "|---|---:|---:|---:|---:|",
            ]
            lines += [
                f"| {md(row['label'])} | {md(row['support'])} | {row['fp32']:.3f} | {row['bundle']:.3f} "
                f"| {row['drop']:.3f} |"
                for row in metrics["worst_classes"]
            ]
        if metrics.get("disagreements"):
            lines += [
                "",
                "### Predictions that changed (fp32 → bundle)",
                "",
                "| fp32 | bundle | texts |",
                "|---|---|---:|",
            ]
            lines += [f"| {md(d['fp32'])} | {md(d['bundle'])} | {d['count']} |" for d in metrics["disagreements"]]
        hist = metrics.get("error_histogram", {})
        if "p50" in hist:
            lines += [
                "",
                f"Relative L2 error per text: p50 {hist['p50']:.3g}, p90 {hist['p90']:.3g}, p99 {hist['p99']:.3g}.",
            ]
    for note in evaluation.notes if evaluation else []:
        lines += ["", f"Note: {md(note)}"]
    return "\n".join(lines) + "\n"
