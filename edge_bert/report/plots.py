"""The report's PNG plots (matplotlib, Agg backend): every plot has named axes with units and names its device.

Emulated devices never appear on a latency axis. Device ids and model names are drawn as plain text
(matplotlib's mathtext is off for them: a ``$`` in a name is text, not markup).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_bert.errors import InputError
from edge_bert.render.escape import plain
from edge_bert.report import figures as f
from edge_bert.report.collect import Collection, Entry


@dataclass(frozen=True)
class Plot:
    file: str  # relative to the report folder
    title: str


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InputError("report plots need matplotlib: pip install 'edge-bert[plot]'") from exc
    plt.rcParams["text.usetex"] = False
    plt.rcParams["text.parse_math"] = False  # untrusted names: '$' is a dollar sign, not mathtext
    return plt


def _label(entry: Entry) -> str:
    return plain(f"{entry.model} · {entry.runtime} {entry.validate.recipe}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "device"


def _timed_devices(collection: Collection) -> list[str]:
    return sorted({e.device for e in collection.entries if e.bench is not None and not e.emulated})


def _on(collection: Collection, device: str) -> list[Entry]:
    return sorted((e for e in collection.entries if e.device == device and e.bench is not None),
                  key=lambda e: (not e.record.reference, e.model, e.runtime, e.validate.recipe))  # fmt: skip


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x = faster, higher y = more accurate)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _y_axis(entries: list[Entry], collection: Collection) -> tuple[str, list[float | None]]:
    """Accuracy as % of the reference where every bundle has it; else parity with fp32 (random weights or
    no labelled data: the plot says which)."""
    accuracy = [f.pct_of_reference(e, collection).value for e in entries]
    if all(v is not None for v in accuracy):
        return "accuracy (% of the reference model)", accuracy
    parity = [f.parity(e).value for e in entries]
    kind = "top-1 agreement" if entries and entries[0].validate.parity.top1_agreement is not None else "mean cosine"
    return f"{kind} with fp32 on the golden texts (no real-weight accuracy)", parity


def accuracy_vs_latency(plt: Any, collection: Collection, device: str, length: int, path: Path) -> None:
    entries = [e for e in _on(collection, device) if f.latency_row(e, length) is not None]
    ylabel, ys = _y_axis(entries, collection)
    points = [(f.latency_row(e, length).p50_ms, y) for e, y in zip(entries, ys, strict=True) if y is not None]
    named = [e for e, y in zip(entries, ys, strict=True) if y is not None]
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.scatter([p[0] for p in points], [p[1] for p in points], color="tab:blue", label="bundle")
    front = pareto(points)
    if front:
        xs, ys_front = [points[i][0] for i in front], [points[i][1] for i in front]
        ax.step(xs, ys_front, where="post", color="tab:red", linewidth=1.2)
        ax.scatter(xs, ys_front, s=120, facecolors="none", edgecolors="tab:red", label="Pareto front (ship one)")
    for (x, y), entry in zip(points, named, strict=True):
        ax.annotate(_label(entry), (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"p50 latency at {length} tokens (ms, lower is better)")
    ax.set_ylabel(ylabel)
    ax.set_title(plain(f"accuracy vs latency on {device}"))
    ax.legend(loc="lower right", fontsize=8)
    _save(plt, fig, path)


def file_sizes(plt: Any, collection: Collection, path: Path) -> None:
    seen: dict[tuple[str, str], float] = {}
    for entry in collection.entries:
        seen[(entry.model, f"{entry.runtime} {entry.validate.recipe}")] = entry.file_bytes / 1e6
    models = sorted({m for m, _ in seen})
    recipes = sorted({r for _, r in seen})
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(recipes))
    for j, recipe in enumerate(recipes):
        xs = [i + j * width for i, m in enumerate(models) if (m, recipe) in seen]
        ax.bar(xs, [seen[(m, recipe)] for m in models if (m, recipe) in seen], width, label=plain(recipe))
    ax.set_xticks([i + width * (len(recipes) - 1) / 2 for i in range(len(models))], [plain(m) for m in models])
    ax.set_xlabel("model")
    ax.set_ylabel("bundle size (MB, every file the manifest lists)")
    devices = ", ".join(sorted({e.device for e in collection.entries}))
    ax.set_title(plain(f"bundle size per recipe (the same on every device: {devices})"), fontsize=9)
    ax.legend(fontsize=8)
    _save(plt, fig, path)


def latency_vs_length(plt: Any, collection: Collection, device: str, path: Path) -> None:
    entries = _on(collection, device)
    runtimes = sorted({e.runtime for e in entries})
    fig, axes = plt.subplots(1, len(runtimes), figsize=(6 * len(runtimes), 4.5), squeeze=False)
    for ax, runtime in zip(axes[0], runtimes, strict=True):
        for entry in (e for e in entries if e.runtime == runtime):
            rows = sorted(entry.bench.latency, key=lambda r: r.seq_length)
            ax.plot([r.seq_length for r in rows], [r.p50_ms for r in rows], marker="o", label=_label(entry))
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("p50 latency (ms)")
        ax.set_title(plain(f"{runtime} on {device}"))
        ax.legend(fontsize=7)
    _save(plt, fig, path)


def distribution(plt: Any, collection: Collection, device: str, path: Path) -> None:
    """Per bundle and length: min, p50, p90, p99 (what a bench row keeps of the distribution)."""
    entries = _on(collection, device)
    lengths = sorted({r.seq_length for e in entries for r in e.bench.latency})
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.5 * len(lengths), 5), squeeze=False)
    for ax, length in zip(axes[0], lengths, strict=True):
        for i, entry in enumerate(entries):
            row = f.latency_row(entry, length)
            if row is None:
                continue
            ax.vlines(i, row.min_ms, row.p99_ms, color="grey")
            ax.vlines(i, row.p50_ms, row.p90_ms, color="tab:blue", linewidth=8)
            for value, marker, name in ((row.min_ms, "v", "min"), (row.p50_ms, "o", "p50"),
                                        (row.p99_ms, "^", "p99")):  # fmt: skip
                ax.scatter([i], [value], marker=marker, color="black", s=18, label=name if i == 0 else None)
        ax.set_xticks(range(len(entries)), [_label(e) for e in entries], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("latency (ms)")
        ax.set_title(plain(f"{length} tokens on {device}\nbar: p50 to p90 · line: min to p99"), fontsize=10)
        ax.legend(fontsize=7)
    _save(plt, fig, path)


def devices_side_by_side(plt: Any, collection: Collection, devices: list[str], length: int, path: Path) -> None:
    labels = sorted({_label(e) for e in collection.entries if e.device in devices and e.bench is not None})
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels)), 4.5))
    width = 0.8 / max(1, len(devices))
    for j, device in enumerate(devices):
        values = {_label(e): row.p50_ms for e in _on(collection, device) if (row := f.latency_row(e, length))}
        xs = [i + j * width for i, label in enumerate(labels) if label in values]
        ax.bar(xs, [values[label] for label in labels if label in values], width, label=plain(device))
    ax.set_xticks([i + width * (len(devices) - 1) / 2 for i in range(len(labels))], labels, rotation=30,
                  ha="right", fontsize=7)  # fmt: skip
    ax.set_ylabel(f"p50 latency at {length} tokens (ms)")
    ax.set_xlabel("bundle")
    ax.set_title(plain(f"devices side by side: {', '.join(devices)} (emulated boards have no latency)"), fontsize=9)
    ax.legend(fontsize=8, title="device")
    _save(plt, fig, path)


def write_plots(collection: Collection, out: Path) -> list[Plot]:
    """Every plot into ``out/plots``; returns them with their titles, in the report's order."""
    plt = _pyplot()
    (out / "plots").mkdir(parents=True, exist_ok=True)
    plots: list[Plot] = []

    def add(name: str, title: str, draw: Any, *args: Any) -> None:
        draw(plt, collection, *args, out / "plots" / name)
        plots.append(Plot(f"plots/{name}", title))

    devices = _timed_devices(collection)
    longest = max(f.lengths(collection), default=None)
    for n, device in enumerate(devices):
        slug = f"{n}-{_slug(device)}"
        if longest is not None:
            title = f"Accuracy vs p50 at {longest} tokens on {device} (Pareto front marked)"
            add(f"accuracy-vs-p50-{slug}.png", title, accuracy_vs_latency, device, longest)
    add("file-size.png", "Bundle size per recipe", file_sizes)
    for n, device in enumerate(devices):
        slug = f"{n}-{_slug(device)}"
        add(f"latency-vs-length-{slug}.png", f"Latency vs sequence length per runtime on {device}",
            latency_vs_length, device)  # fmt: skip
        add(f"distribution-{slug}.png", f"Latency distribution per bundle on {device}", distribution, device)
    if devices and longest is not None:
        add("devices.png", f"Devices side by side at {longest} tokens", devices_side_by_side, devices, longest)
    return plots


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
