"""How `finetune` and `distill` show a run: a progress bar fed by the training loop, the summary table, the
teacher and student side by side, the failed gate in one line, and the JSON document."""

from __future__ import annotations

import json
from typing import Any, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from edge_bert.cli.common import out_console
from edge_bert.render.escape import terminal
from edge_bert.render.terminal import write_json


class Bar:
    """A rich progress bar fed by the training loop's per-step callback: loss and examples/s."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, info: dict[str, Any]) -> None:
        stage = info["stage"]
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=info["total"], info="")
        terms = " ".join(f"{k} {v:.4f}" for k, v in info.items() if k not in _NOT_TERMS)
        text = f"epoch {info['epoch']}/{info['epochs']} {terms} {info['examples_per_s']:.0f} ex/s"
        self.progress.update(self.tasks[stage], completed=info["step"], info=text)


_NOT_TERMS = {"stage", "epoch", "epochs", "step", "total", "examples_per_s"}


def show(summary: dict[str, Any], json_out: Optional[str]) -> None:
    """The summary table (stderr with ``--json -``), the failed gate in one line, and the JSON document."""
    console = out_console(json_out)
    table = Table(title=f"edge-bert {summary['command']} → {summary.get('out')}", show_header=False)
    rows = {k: v for k, v in summary.items() if k not in ("schema", "settings", "out", "command", "side_by_side")}
    for key, value in rows.items():
        table.add_row(terminal(key), terminal(json.dumps(value) if isinstance(value, dict | list) else value))
    console.print(table)
    if summary.get("side_by_side"):
        console.print(_side_by_side(summary["side_by_side"]))
    if not summary["passed"]:
        gate = summary["gate"]
        console.print(
            f"[red]gate failed:[/red] {gate['metric']} {gate['value']} < {gate['threshold']}", highlight=False
        )
    write_json(summary, json_out)


def _side_by_side(models: dict[str, dict[str, Any]]) -> Table:
    """Teacher and student: family, parameters, fp32 MB, FLOPs at 128 tokens, accuracy."""
    flops = next(k for k in models["teacher"] if k.startswith("flops_at_") and not k.endswith("_teacher"))
    table = Table(title="teacher and student")
    for column in ("model", "family", "parameters", "fp32 MB", flops.replace("flops_at_", "GFLOPs @"), "accuracy"):
        table.add_column(column, justify="right")
    for role, row in models.items():
        accuracy = row.get("accuracy")
        table.add_row(
            role,
            terminal(row["model_type"]),
            f"{row['parameters'] / 1e6:.2f}M",
            f"{row['fp32_mb']:.1f}",
            f"{row[flops] / 1e9:.3f}",
            "-" if accuracy is None else f"{accuracy:.4f}",
        )
    return table
