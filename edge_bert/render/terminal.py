"""Human-readable tables (rich) and JSON output for validate/bench results."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edge_bert.errors import InputError
from edge_bert.render.escape import finite, terminal
from edge_bert.render.markdown import validation_markdown
from edge_bert.render.text import fmt_value, gate_label, gate_verdict, machine_line
from edge_bert.results.bench import BenchResult
from edge_bert.results.validate import ValidateResult
from edge_bert.schema import to_plain

__all__ = ["console", "fmt_value", "gate_label", "machine_line", "print_error"]

console = Console()
if not console.is_terminal:  # piped or captured: wide enough that tables are not truncated
    console = Console(width=160)
#: errors go to stderr, so that stdout stays pure JSON with ``--json -``
err_console = Console(stderr=True, width=None if console.is_terminal else 1000)


def print_error(message: str) -> None:
    """One line on stderr (rich markup in the message is shown literally)."""
    err_console.print(f"[red]error:[/red] {terminal(' '.join(message.split()))}", highlight=False, soft_wrap=True)


def check_output_file(target: str | None) -> None:
    """Fail before any work if ``--json PATH`` could not be written afterwards (a PASS must not be lost):
    an existing target must be a regular file (a FIFO would hang the run, /dev/full would lose the result),
    and the directory must really accept a new file (tried, not guessed from permission bits: /proc says yes)."""
    if target is None or target == "-":
        return
    path = Path(target)
    if path.is_dir():
        raise InputError(f"--json {target}: is a directory; give a file path")
    if not path.parent.is_dir():
        raise InputError(f"--json {target}: directory {path.parent} does not exist")
    if path.exists() and not path.is_file():
        raise InputError(f"--json {target}: not a regular file (a device, FIFO or socket); give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"--json {target}: the file is not writable")
    if problem := _cannot_create_in(path.parent):
        raise InputError(f"--json {target}: cannot create files in {path.parent} ({problem})")


def _cannot_create_in(directory: Path) -> str | None:
    """Why a file cannot be created in ``directory`` (tried with a temporary file, removed at once), or None."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def check_report_dir(out_dir: Path) -> None:
    """Fail before any work if reports cannot be written there (and say it is the report dir, not the
    bundle). Nothing is created yet: a run refused for other reasons leaves no empty directory behind."""
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is not a directory"
    elif reason := _cannot_create_in(existing):
        problem = f"{existing} does not accept new files ({reason})"
    if problem:
        raise InputError(f"cannot write reports to {out_dir}: {problem}; pass --report-dir DIR that is writable")


def write_json(result: dict[str, Any], target: str | None) -> None:
    """``target`` is a path, ``-`` for stdout, or None for no JSON. NaN/Infinity are written as null."""
    if target is None:
        return
    text = json_text(result)
    if target == "-":
        sys.stdout.write(text)
        return
    write_text_file(Path(target), text, "--json")


def json_text(document: Any) -> str:
    """Strict JSON as every result and report is written: indented, NaN/Infinity as null."""
    return json.dumps(finite(document), indent=2, allow_nan=False) + "\n"


def write_text_file(path: Path, text: str, what: str) -> None:
    """Write a result or report file: never through a link, never into a FIFO or device (opened non-blocking
    and refused unless it is a regular file), and a failure is one clear error, not a traceback."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o644)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise InputError(f"{what} {path}: not a regular file (a device, FIFO or socket); nothing written")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.truncate(0)
            handle.write(text)
    except OSError as exc:
        raise InputError(f"{what} {path}: could not be written ({exc.strerror or exc})") from exc


def validation_table(result: ValidateResult) -> Table:
    verdict = "[green]PASS[/green]" if result.passed else "[red]FAIL[/red]"
    table = Table(
        title=f"validate {terminal(result.bundle)}: {verdict}", caption=terminal(machine_line(to_plain(result.machine)))
    )
    table.add_column("check")
    table.add_column("value", justify="right")
    table.add_column("gate", justify="right")
    table.add_column("verdict")
    tok = result.checks.tokenizer
    table.add_row("checksums + schema", f"{result.checks.schema_and_checksums.files} files", "", "pass")
    table.add_row(
        "tokenizer reproduces golden ids",
        f"{tok.texts - len(tok.mismatches)}/{tok.texts}",
        "all",
        "pass" if tok.passed else "[red]fail[/red]",
    )
    table.add_row("max abs error", fmt_value(result.parity.max_abs_error), "", "")
    for name, gate in result.gates.items():
        table.add_row(
            terminal(gate_label(name)),
            terminal(fmt_value(gate.value, 6)),
            ("≥ " if name.startswith("min") else "≤ ") + terminal(fmt_value(gate.threshold)),
            gate_verdict(gate, "[red]fail[/red]"),
        )
    accuracy_rows(table, result)
    return table


def accuracy_rows(table: Table, result: ValidateResult) -> None:
    """The task-accuracy lines of the validate table (gated values appear with their gates)."""
    evaluation = result.accuracy
    metrics = (evaluation.metrics if evaluation else None) or {}
    for label, key, ref in (
        ("accuracy (fp32)", "accuracy", "fp32_accuracy"),
        ("macro-F1 (fp32)", "macro_f1", "fp32_macro_f1"),
        ("k-NN accuracy (fp32)", "knn_accuracy", "fp32_knn_accuracy"),
    ):
        if key in metrics:
            table.add_row(label, f"{metrics[key]:.4f} ({fmt_value(metrics.get(ref))})", "", "")
    if metrics.get("worst_classes"):
        worst = ", ".join(f"{terminal(c['label'])} -{100 * c['drop']:.1f}pt" for c in metrics["worst_classes"][:3])
        table.add_row("classes that lost most", worst, "", "")
    for note in evaluation.notes if evaluation else []:
        table.add_row("note", terminal(note), "", "")


def report_stem(result: ValidateResult) -> str:
    """A file name from the bundle id (and the device, so a device's result never overwrites the local one):
    only safe characters, so a hostile manifest or device name cannot reach outside the report dir."""
    device = result.device.id
    stem = str(result.bundle) + ("" if device == "local" else f"@{device}")
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", stem).lstrip(".")[:160] or "bundle"


def write_reports(result: ValidateResult, out_dir: Path, plot: bool = False) -> list[Path]:
    """``BUNDLE.validate.json`` + ``.md`` (and PNGs with ``plot``) under ``out_dir``; returns the paths."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write reports to {out_dir}: {exc.strerror or exc}") from exc
    stem = report_stem(result) + ".validate"
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    write_text_file(json_path, json_text(result.to_dict()), "report")
    write_text_file(md_path, validation_markdown(result), "report")
    files = [json_path, md_path]
    if plot:
        from edge_bert.render.plots import write_plots

        files += write_plots(result, out_dir, stem)
    return files


def bench_table(result: BenchResult) -> Table:
    emulated = "EMULATED (qemu), timings are not device latency · " if result.emulated else ""
    table = Table(
        title=(
            emulated + f"bench {terminal(result.bundle)} · {terminal(result.runtime['name'])} "
            f"{result.settings.threads} threads · "
            f"cold load {result.cold_load_ms:.0f} ms · first inference {result.first_inference_ms:.1f} ms · "
            f"peak RSS {result.memory_mib.peak_rss:.0f} MiB"
        ),
        caption=terminal(machine_line(to_plain(result.machine))),
    )
    peak = terminal(result.roofline.compared_with)
    columns = ["seq", "padded", "p50 ms", "p90 ms", "p99 ms", "e2e p50", "e2e p99", "overhead", "mean ± std"]
    columns += ["inf/s", "tokens/s", "GFLOP/s", f"% {peak} peak"]
    for column in columns:
        table.add_column(
            f"emulated {column}" if emulated and column not in ("seq", "padded") else column, justify="right"
        )
    for row in result.latency:
        table.add_row(
            str(row.seq_length),
            str(row.padded_to),
            f"{row.p50_ms:.2f}",
            f"{row.p90_ms:.2f}",
            f"{row.p99_ms:.2f}",
            fmt_value(row.e2e.p50_ms, 2, "f"),
            fmt_value(row.e2e.p99_ms, 2, "f"),
            "—" if row.overhead_pct is None else f"{row.overhead_pct:.1f} %",
            f"{row.mean_ms:.2f} ± {row.std_ms:.2f}",
            fmt_value(row.throughput_per_s, 1, "f"),
            fmt_value(row.tokens_per_s, 0, "f"),
            "—" if row.gflops_per_s is None else f"{row.gflops_per_s:.0f}",
            "—" if row.pct_of_peak is None else f"{row.pct_of_peak:.0f} %",
        )
    if request := result.task_request:  # QA / NER: one app request (edge_bert/bench/requests.py)
        model, e2e = request.model, request.e2e
        table.add_row(
            terminal(request.kind), f"{request.windows or 1} run(s)", f"{model.p50_ms:.2f}",
            f"{model.p90_ms:.2f}", f"{model.p99_ms:.2f}", f"{e2e.p50_ms:.2f}", f"{e2e.p99_ms:.2f}",
            f"{request.overhead_pct:.1f} %", f"{model.mean_ms:.2f} ± {model.std_ms:.2f}", "", "", "", "",
        )  # fmt: skip
    return table


#: the probe precisions a roofline line lists, in this order (bf16: OpenVINO only)
_PEAKS = ("fp32", "bf16", "int8")


def roofline_line(result: BenchResult) -> str | None:
    """The line under the bench table: the measured peaks and which one "% of peak" uses."""
    roofline = result.roofline
    peak = roofline.peak
    if peak is None:
        return None
    tag = "emulated " if result.emulated else ""
    counted = "" if roofline.flops_method else "; the bundle has no FLOP count (convert it again): no roofline"
    measured = {p: getattr(peak, p) for p in _PEAKS if getattr(peak, p) is not None}
    peaks = ", ".join(f"{figure.gflops_per_s:.0f} GFLOP/s {p}" for p, figure in measured.items())
    return terminal(
        f"{tag}peak {peaks} "
        f"(median GEMM {peak.gemm} through {result.runtime['name']}, {peak.threads} threads); "
        f"% of peak vs {roofline.compared_with} (recipe {result.recipe}){counted}"
    )
