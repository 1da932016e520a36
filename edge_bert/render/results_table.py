"""``edge-bert results``: result files from any device -> one table of bundles × devices.

Reads only result documents (validate/bench JSON, read strictly into their typed objects), so a result from
a Pi, an emulated board and a laptop sit in the same table. Emulated timings are never shown as latency.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from edge_bert.render.escape import markdown, terminal
from edge_bert.render.terminal import console, err_console, json_text
from edge_bert.results.io import MAX_RESULT_BYTES, Result, is_result, parse_result
from edge_bert.results.validate import ValidateResult
from edge_bert.schema import SchemaError, to_plain


def _load(path: Path) -> Result | None:
    """A typed result, or None with one line on stderr saying why the file is skipped (not JSON, too big, a
    newer schema version, a field that does not fit); a JSON file that is no result is skipped silently."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_RESULT_BYTES:
            raise ValueError(f"not a regular file of at most {MAX_RESULT_BYTES >> 20} MiB")
        document = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        _skip(path, str(exc)[:120])
        return None
    if not is_result(document):
        return None  # another JSON file in the directory: not ours, not worth a line
    try:
        return parse_result(document)
    except SchemaError as exc:
        _skip(path, str(exc)[:160])
        return None


def _skip(path: Path, why: str) -> None:
    err_console.print(f"skipped {terminal(path)}: {terminal(why)}", highlight=False, soft_wrap=True)


def collect(directory: Path) -> list[dict[str, Any]]:
    """One row per (bundle, device), merging its validate and bench results (the newest file wins); a file
    that is not a readable result is skipped with one line on stderr and never stops the table."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(directory.rglob("*.json"), key=lambda p: p.lstat().st_mtime):
        result = _load(path)
        if result is not None:
            _merge(found, result, path)
    rows = list(found.values())
    _same_top1_as_host(rows)
    for row in rows:
        row.pop("predictions", None)
    return sorted(rows, key=lambda r: (r["bundle"], r["device"] != "local", r["device"]))


def _merge(found: dict[tuple[str, str], dict[str, Any]], result: Result, path: Path) -> None:
    """Fold one result into its (bundle, device) row."""
    key = (result.bundle_id, result.device.id)
    row = found.setdefault(
        key,
        {
            "bundle": result.bundle,
            "bundle_id": key[0],
            "device": result.device.id,
            "emulated": result.device.emulated,
            "machine": to_plain(result.machine),
        },
    )
    if isinstance(result, ValidateResult):
        gate = result.gates.get("min_accuracy_pct_of_fp32")
        measured = result.accuracy.metric("accuracy_pct_of_fp32") if result.accuracy else None
        row.update(
            passed=result.passed,
            mean_cosine=result.parity.mean_cosine,
            top1_agreement=result.parity.top1_agreement,
            accuracy_pct_of_fp32=measured if measured is not None else (gate.value if gate else None),
            predictions=to_plain(result.predictions),
            validate_file=str(path),
        )
    else:
        p50 = {str(length): ms for length, ms in result.p50_ms().items()}
        row["emulated_p50_ms" if row["emulated"] else "p50_ms"] = p50
        row["threads"] = result.settings.threads


def _same_top1_as_host(rows: list[dict[str, Any]]) -> None:
    """Per row: on how many golden texts the top-1 class equals the host's (the local run of the same bundle)."""
    host = {r["bundle_id"]: r.get("predictions") for r in rows if r["device"] == "local"}
    for row in rows:
        mine, ref = row.get("predictions"), host.get(row["bundle_id"])
        if mine and ref and len(mine["top1"]) == len(ref["top1"]):
            same = sum(a == b for a, b in zip(mine["top1"], ref["top1"], strict=True))
            row["same_top1_as_host"] = f"{same}/{len(ref['top1'])}"


def render(rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        sys.stdout.write(json_text(rows))
        return
    lengths = sorted({int(n) for r in rows for n in (r.get("p50_ms") or r.get("emulated_p50_ms") or {})})
    header = ["bundle", "device", "validate", "mean cos", "top-1", "acc % fp32", "same top-1 as host"]
    header += [f"p50 @{n} ms" for n in lengths]
    body = []
    for r in rows:
        verdict = "-" if "passed" not in r else ("pass" if r["passed"] else "FAIL")
        cells = [
            r["bundle"],
            r["device"] + (" (emulated)" if r["emulated"] else ""),
            verdict,
            _num(r.get("mean_cosine"), 5),
            _num(r.get("top1_agreement"), 3),
            _num(r.get("accuracy_pct_of_fp32"), 2),
            r.get("same_top1_as_host", "-"),
        ]
        for n in lengths:
            cells.append(
                "emulated"
                if r["emulated"] and r.get("emulated_p50_ms")
                else _num((r.get("p50_ms") or {}).get(str(n)), 2)
            )
        body.append(cells)
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(markdown(cell) for cell in cells) + " |" for cells in body]
        sys.stdout.write("\n".join(lines) + "\n")
        if any(r["emulated"] for r in rows):
            sys.stdout.write(
                "\nEmulated rows (qemu) show ARM64 parity and accuracy; their timings are not device latency.\n"
            )
        return
    table = Table(
        title=f"results: {len({r['bundle_id'] for r in rows})} bundles × {len({r['device'] for r in rows})} devices",
        caption="emulated = qemu user-mode ARM64: parity and accuracy only, timings are not latency",
    )
    for column in header:
        table.add_column(column, justify="left" if column in ("bundle", "device") else "right")
    for cells in body:
        table.add_row(*(terminal(cell) for cell in cells))
    console.print(table)


def _num(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"
