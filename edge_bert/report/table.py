"""The seed's table, measured: one row per bundle and device, every figure traced to its result file."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_bert.report import figures as f
from edge_bert.report.collect import Collection, Entry
from edge_bert.report.figures import Figure, words


@dataclass(frozen=True)
class Table:
    title: str
    headers: list[str]
    rows: list[list[Figure]]
    notes: list[str] = field(default_factory=list)


def _order(entry: Entry) -> tuple:
    return (not entry.record.reference, entry.model, entry.device, entry.target, entry.runtime, entry.validate.recipe)


def seed_table(collection: Collection) -> Table:
    lengths = f.lengths(collection)
    longest = max(lengths) if lengths else None
    refs = f.reference_of(collection)
    reference = refs[0].model if refs else None
    headers = ["model", "method", "runtime", "recipe", "device", "parameters", "bundle MB",
               f"accuracy % of {reference or 'reference'}", "accuracy % of fp32", "parity vs fp32"]  # fmt: skip
    for length in lengths:
        headers += [f"p50 ms @{length}", f"p90 ms @{length}"]
    headers += ["peak RSS MiB", f"speed-up vs {reference or 'reference'} @{longest}"]
    rows = []
    several_targets = len({e.target for e in collection.entries}) > 1
    for entry in sorted(collection.entries, key=_order):
        method = entry.record.method or ("reference" if entry.record.reference else "-")
        runtime = f"{entry.runtime} {entry.validate.runtime.get('version', '')}".strip()
        runtime += f" ({entry.target})" if several_targets else ""
        row = [words(entry.model), words(method), words(runtime), words(entry.validate.recipe),
               words(entry.device), f.parameters(entry), f.megabytes(entry),
               f.pct_of_reference(entry, collection), f.pct_of_fp32(entry), f.parity(entry)]  # fmt: skip
        for length in lengths:
            row += [f.latency(entry, length, "p50_ms"), f.latency(entry, length, "p90_ms")]
        row += [f.peak_rss(entry), f.speed_up(entry, collection, longest) if longest else words("-")]
        rows.append(row)
    notes = [
        "Accuracy is shown only where the weights are real: the cell was validated on labelled data and the "
        "model's fp32 accuracy beats the majority class by more than two standard errors; otherwise it says "
        "'random weights' (or 'no labelled data').",
        f"Speed-up: {reference or 'the reference'}'s p50 over this bundle's, same device, runtime and recipe, "
        "measured in the same matrix run.",
        "Emulated devices (emu:*) show parity and accuracy, never latency: qemu's timings are not the board's.",
    ]
    return Table("The seed's table, measured", headers, rows, notes)


def devices_table(collection: Collection) -> Table:
    """Where the numbers came from: each device's CPU, ISA flags and runtime versions (from its results)."""
    seen: dict[tuple[str, str], Entry] = {}
    for entry in collection.entries:
        seen.setdefault((entry.device, entry.runtime), entry)
    rows = []
    for (device, runtime), entry in sorted(seen.items()):
        result = entry.bench if entry.bench is not None else entry.validate
        source = entry.bench_file or entry.validate_file
        machine = result.machine
        kind = "emulated " + (result.device.board or result.device.cpu or "") if result.emulated else result.device.kind
        versions = ", ".join(f"{k} {v}" for k, v in sorted(result.runtime.items()) if k != "name")
        rows.append([words(device), Figure(kind.strip(), None, (source,)), words(machine.cpu_model),
                     words(str(machine.cpu_count)), words(" ".join(machine.isa_flags) or "none"),
                     words(f"{runtime} ({versions})")])  # fmt: skip
    headers = ["device", "kind", "CPU", "cores", "ISA flags", "runtime"]
    return Table("Devices", headers, rows)


def failed_table(collection: Collection) -> Table | None:
    if not collection.failed:
        return None
    rows = [[words(c.model or "-"), words(c.recipe or "-"), words(c.device or "-"), words(c.exit_class or "-"),
             words(c.reason or "-")] for c in collection.failed]  # fmt: skip
    return Table("Cells that failed", ["model", "recipe", "device", "class", "reason"], rows)
