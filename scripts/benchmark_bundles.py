"""Side-by-side latency of any bundles (ONNX and LiteRT alike), each timed alone in its own process.

    python scripts/benchmark_bundles.py BUNDLE [BUNDLE ...] [--blocks 4] [--runs 50] [--threads 2] [--json PATH]

Every block is ``edge-bert bench``'s own protocol (edge_bert/bench/protocol.py: verified bundle, its tokenizer and
backend, a real text cut to exactly L tokens, warm-up, timed runs) in a fresh process holding that one
bundle; blocks alternate A-B-A-B with the first bundle rotating (scripts/isolated_timing.py says why).
Prints per bundle and length the median of the block p50s, the spread of block p50s, the ratio to the
first bundle, and the machine fingerprint with the load average before every block.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from isolated_timing import machine_state, time_alternating

from edge_bert.bundle import open_bundle
from edge_bert.render.text import machine_line


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def ratios_to_first(stats: dict[str, dict[int, dict[str, float]]], labels: list[str], length: int) -> dict[str, float]:
    """Per bundle, how many times faster than the first it is at ``length``: the first's p50 over its own
    (the medians of block p50s), so above 1 is faster; the speed targets are read off this column."""
    return {label: stats[labels[0]][length]["p50_ms"] / stats[label][length]["p50_ms"] for label in labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--blocks", type=int, default=4, help="processes per bundle, alternating (default 4)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per block (default 50)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq-lengths", default="16,64,128")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    lengths = [int(n) for n in args.seq_lengths.split(",")]
    labels = [path.name for path in args.bundles]
    if len(set(labels)) != len(labels):
        parser.error("two bundles share a directory name; give them distinct names")
    specs = [
        {"label": path.name, "kind": "bundle", "path": str(path), "threads": args.threads,
         "seq_lengths": lengths, "warmup": args.warmup, "runs": args.runs}
        for path in args.bundles
    ]  # fmt: skip
    sizes = {path.name: open_bundle(path).manifest.model_bytes for path in args.bundles}
    before = machine_state()
    stats, history = time_alternating(specs, args.blocks, log)
    after_load = machine_state()["load_avg_1min"]
    loads = [h["load_avg_1min"] for h in history]
    print(f"{machine_line(before)} · {args.threads} threads")
    print(
        f"protocol: each bundle alone in its own process (edge-bert bench), {args.blocks} alternating blocks of "
        f"{args.warmup}+{args.runs} runs; figure = median of block p50s; load average {before['load_avg_1min']:.2f} "
        f"(blocks {min(loads):.2f}-{max(loads):.2f}) -> {after_load:.2f}"
    )
    longest = lengths[-1]
    ratios = ratios_to_first(stats, labels, longest)
    has_e2e = all("e2e_p50_ms" in stats[label][longest] for label in labels)
    header = f"{'bundle':<40} {'MB':>6} " + " ".join(f"{'p50@' + str(n):>9}" for n in lengths)
    header += f" {'spread':>7} {'x first@' + str(longest):>12}"
    if has_e2e:  # end-to-end (text in -> answer out) and the runner's overhead over the model, same runs
        header += f" {'e2e@' + str(longest):>9} " + " ".join(f"{'ovh@' + str(n):>8}" for n in lengths)
    print(header)
    for label in labels:
        row = stats[label]
        cells = " ".join(f"{row[n]['p50_ms']:9.3f}" for n in lengths)
        spread = max(row[n]["spread_pct"] for n in lengths)
        ratio = ratios[label]
        e2e = f" {row[longest]['e2e_p50_ms']:9.3f} " if has_e2e else ""
        if has_e2e:
            e2e += " ".join(f"{row[n]['overhead_pct']:7.1f}%" for n in lengths)
        print(f"{label:<40} {sizes[label] / 1e6:6.1f} {cells} {spread:6.1f}% {ratio:11.2f}x{e2e}")
    if args.json:
        report = {
            "schema": "edge-bert/benchmark-bundles/v2",
            "machine": before,
            "load_avg_after": after_load,
            "settings": {"threads": args.threads, "blocks": args.blocks, "runs": args.runs, "warmup": args.warmup},
            "model_bytes": sizes,
            "latency": stats,
            "ratio_to_first": {"seq_length": longest, "ratios": ratios},
            "blocks": history,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
