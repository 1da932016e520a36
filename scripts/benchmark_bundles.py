"""Side-by-side latency of any bundles (ONNX and LiteRT alike) on the same real inputs, in one run.

    python scripts/benchmark_bundles.py BUNDLE [BUNDLE ...] [--runs 50] [--threads 2] [--json PATH]

Every bundle runs through the device-side runner (verified bundle, its own tokenizer and backend).
Timing is round-robin — each round runs every bundle once per length, so drift in machine load hits
all of them alike — with one untimed run before each timed one (a runtime switch leaves the previous
runtime's threads spinning and its weights in cache). Reports p50 per length, the ratio to the first
bundle, and for static-shape bundles the padded length each text ran at, plus the gain of a 16-token
text over the same text padded to the bundle's longest length.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edge_bert.bench import text_of_length
from edge_bert.bundle import open_bundle
from edge_bert.fingerprint import fingerprint
from edge_bert.report import machine_line
from edge_bert.session import BundleSession
from edge_bert.textdata import builtin_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq-lengths", default="16,64,128")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    lengths = [int(n) for n in args.seq_lengths.split(",")]
    corpus = builtin_texts("paragraphs")
    sessions = {path.name: BundleSession(open_bundle(path), threads=args.threads) for path in args.bundles}
    jobs = []  # (bundle, length, feeds); static bundles also run the 16-token text padded to their longest length
    for name, session in sessions.items():
        for length in lengths:
            encoded = text_of_length(session.encoder, corpus, length)
            jobs.append((name, length, session.feeds(encoded.ids, encoded.type_ids)))
        if session.bundle.seq_lengths:
            longest = max(session.bundle.seq_lengths)
            encoded = text_of_length(session.encoder, corpus, lengths[0])
            feeds = session.feeds(encoded.ids, encoded.type_ids)
            padded = {k: np.pad(v, ((0, 0), (0, longest - v.shape[1]))) for k, v in feeds.items()}
            jobs.append((name, f"{lengths[0]}@{longest}", padded))
    samples: dict[tuple[str, object], list[float]] = {(n, k): [] for n, k, _ in jobs}
    load = _load()
    for round_index in range(args.warmup + args.runs):
        for name, key, feeds in jobs:
            backend = sessions[name].backend
            backend.run(feeds)
            start = time.perf_counter()
            backend.run(feeds)
            if round_index >= args.warmup:
                samples[(name, key)].append((time.perf_counter() - start) * 1000)
    p50 = {key: float(np.median(v)) for key, v in samples.items()}
    report = {
        "machine": fingerprint(),
        "load_average": [load, _load()],
        "threads": args.threads,
        "runs": args.runs,
        "p50_ms": {f"{n}@{k}": v for (n, k), v in p50.items()},
    }
    first = args.bundles[0].name
    print(
        machine_line(report["machine"]) + f" · {args.threads} threads · {args.runs} round-robin runs "
        f"· load average {load:.1f} -> {report['load_average'][1]:.1f}"
    )
    header = f"{'bundle':<44} {'MB':>6} " + " ".join(f"{'p50@' + str(n):>9}" for n in lengths)
    print(header + f" {'x first@' + str(lengths[-1]):>12} {'16 vs padded':>13}")
    for name, session in sessions.items():
        size = session.bundle.model_path.stat().st_size / 1e6
        cells = " ".join(f"{p50[(name, n)]:9.2f}" for n in lengths)
        ratio = p50[(first, lengths[-1])] / p50[(name, lengths[-1])]
        padded_key = next((k for (n, k) in p50 if n == name and isinstance(k, str)), None)
        gain = f"{p50[(name, padded_key)] / p50[(name, lengths[0])]:.2f}x" if padded_key else "dynamic"
        print(f"{name:<44} {size:6.1f} {cells} {ratio:11.2f}x {gain:>13}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _load() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


if __name__ == "__main__":
    main()
