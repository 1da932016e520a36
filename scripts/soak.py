"""Soak: many inferences through the runner, RSS sampled, to show the runner does not leak.

Each bundle runs in its own process (a fresh runner, as on a device): real SST-2 texts of varied length,
batch 1, through BundleSession.run_text (tokenize, feeds, run). RSS is sampled every --every runs; growth
is measured from the sample after warm-up (--warmup runs) to the last one. Target: growth <= 5 %.

    .venv/bin/python scripts/soak.py BUNDLE [BUNDLE ...] [--runs 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
GROWTH_LIMIT_PCT = 5.0


def child(bundle: str, runs: int, every: int, warmup: int) -> dict:
    from edge_bert.bundle import open_bundle
    from edge_bert.fingerprint import current_rss_mib
    from edge_bert.session import BundleSession

    texts = [line.rpartition("\t")[0] for line in (SHARED / "sst2" / "dev.tsv").read_text().splitlines()[1:]]
    session = BundleSession(open_bundle(bundle))
    samples, start = [], time.perf_counter()
    for run in range(1, runs + 1):
        session.run_text(texts[run % len(texts)])
        if run % every == 0:
            samples.append((run, round(current_rss_mib(), 2)))
    after_warmup = next(rss for run, rss in samples if run >= warmup)
    final = samples[-1][1]
    return {
        "bundle": Path(bundle).name,
        "runtime": session.backend.runtime,
        "runs": runs,
        "seconds": round(time.perf_counter() - start, 1),
        "rss_after_warmup_mib": after_warmup,
        "rss_final_mib": final,
        "rss_max_mib": max(rss for _, rss in samples),
        "growth_pct": round(100 * (final - after_warmup) / after_warmup, 2),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.bundles[0], args.runs, args.every, args.warmup)))
        return
    from edge_bert.fingerprint import fingerprint

    machine = fingerprint()
    print(f"machine: {machine['cpu_model']} · {machine['cpu_count']} cores · ISA {','.join(machine['isa_flags'])}")
    print("| bundle | runtime | runs | s | RSS after warm-up MiB | final MiB | max MiB | growth | verdict |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    failed = False
    for bundle in args.bundles:
        argv = [sys.executable, __file__, bundle, "--child", "--runs", str(args.runs), "--every", str(args.every),
                "--warmup", str(args.warmup)]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        ok = r["growth_pct"] <= GROWTH_LIMIT_PCT
        failed |= not ok
        verdict = "ok" if ok else "LEAK?"
        print(f"| {r['bundle']} | {r['runtime']} | {r['runs']} | {r['seconds']} | {r['rss_after_warmup_mib']} | "
              f"{r['rss_final_mib']} | {r['rss_max_mib']} | {r['growth_pct']:+.2f} % | {verdict} |")  # fmt: skip
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
