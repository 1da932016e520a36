"""Memory of `edge-bert validate --data` on a large data set, and of one huge text.

Builds a labelled TSV of --rows rows from the shared data (SST-2 train and dev, every CLINC150 split;
repeated with a numbered suffix when more rows are asked for than exist), runs the real CLI on it in a
child process and reports the child's peak RSS (ru_maxrss). Target: <= 1 GiB for 100k rows. Also times
`bench --texts` on a 50 MB single-line text, which used to be tokenized whole (65 s, 7 GB).

    .venv/bin/python scripts/benchmark_memory.py BUNDLE [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
LIMIT_MIB = 1024


def rows_of_shared_data(count: int) -> list[tuple[str, str]]:
    rows = []
    for name in ("train.tsv", "dev.tsv"):
        for line in (SHARED / "sst2" / name).read_text(encoding="utf-8").splitlines()[1:]:
            text, _, label = line.rpartition("\t")
            rows.append((text, f"sst2-{label}"))
    for pairs in json.loads((SHARED / "clinc150" / "data_full.json").read_text()).values():
        rows += [(text, intent) for text, intent in pairs]
    base, round_ = list(rows), 1
    while len(rows) < count:
        rows += [(f"{text} ({round_})", label) for text, label in base]
        round_ += 1
    return rows[:count]


def run_child(argv: list[str]) -> tuple[int, float, float]:
    """Exit code, seconds, and peak RSS (MiB) of one edge-bert command in its own process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edge_bert.cli", *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far
    if done.returncode not in (0, 1):
        sys.exit(f"edge-bert {argv[0]} failed: {done.stderr.strip()}")
    return done.returncode, seconds, peak_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    from edge_bert.fingerprint import fingerprint

    machine = fingerprint()
    print(f"machine: {machine['cpu_model']} · {machine['cpu_count']} cores · ISA {','.join(machine['isa_flags'])}")
    with tempfile.TemporaryDirectory() as tmp:
        # the huge text first: ru_maxrss of children is a running maximum, so the small run goes first
        huge = Path(tmp) / "huge.txt"
        huge.write_text("a fine film with a slow start " * 1_700_000 + "\n", encoding="utf-8")  # ~51 MB, one line
        code, seconds, peak = run_child(["bench", args.bundle, "--texts", str(huge), "--runs", "5",
                                         "--seq-lengths", "128", "--json", str(Path(tmp) / "b.json")])  # fmt: skip
        print(f"bench --texts: one {huge.stat().st_size / 1e6:.0f} MB line: exit {code}, {seconds:.1f} s, "
              f"peak RSS {peak:.0f} MiB")  # fmt: skip
        data = Path(tmp) / "rows.tsv"
        rows = rows_of_shared_data(args.rows)
        data.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
        result = Path(tmp) / "v.json"
        code, seconds, peak = run_child(["validate", args.bundle, "--data", str(data), "--json", str(result),
                                         "--report-dir", str(Path(tmp) / "r")])  # fmt: skip
        metrics = (json.loads(result.read_text())["accuracy"] or {}).get("metrics", {})
        verdict = "ok" if peak <= LIMIT_MIB else "OVER"
        print(f"validate --data: {len(rows):,} rows: exit {code}, {seconds:.0f} s, peak RSS {peak:.0f} MiB "
              f"(limit {LIMIT_MIB}: {verdict}); k-NN accuracy {metrics.get('knn_accuracy')}")  # fmt: skip
    sys.exit(0 if verdict == "ok" else 1)


if __name__ == "__main__":
    main()
