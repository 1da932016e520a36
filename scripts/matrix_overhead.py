"""The matrix's overhead per cell over the same steps typed by hand: ``edge-bert matrix`` (local pool, and
``--ray local``) against the bare ``edge-bert convert`` + ``validate`` + ``bench`` commands it runs.

Why: the matrix adds a driver, a cell key (hashing the model's bytes), records, an index and - with Ray - a
Ray instance, tasks and the bundle's bytes through the object store. This says what that costs per cell,
measured side by side in one run. Every variant is its own process tree with a fresh output folder (nothing
reused), the variants alternate in rotating order each round so drift in machine load hits all alike, and
the machine (CPU model, ISA flags, load before each block) is printed with the figures. Conversions run one
at a time in every variant (the pool with ``--jobs 1``; Ray's conversions are one task per CPU, so its
figure includes that parallelism and says so).

    python scripts/matrix_overhead.py [--matrix examples/offline.toml] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_bert.fingerprint import fingerprint  # noqa: E402
from edge_bert.limits import usable_cpus  # noqa: E402
from edge_bert.matrix.spec import EMBEDDED, cells, read_matrix, resolve  # noqa: E402
from edge_bert.matrix.steps import THREAD_VARIABLES, data_flags, thread_flags  # noqa: E402


def _cli(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "edge_bert.cli", *argv], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{argv[0]} failed (exit {done.returncode}): {tail}")


def bare(matrix: Path, out: Path) -> None:
    """The matrix's commands by hand, one after the other: every conversion, then each cell's device steps."""
    spec, base = read_matrix(matrix)
    env = {**os.environ, **dict.fromkeys(THREAD_VARIABLES, str(spec.threads or usable_cpus()))}
    all_cells = cells(spec, base)
    bundles: dict[str, Path] = {}
    for cell in all_cells:
        if cell.unit in bundles:
            continue
        source = resolve(cell.model.source, base)
        folder = out / cell.unit
        argv = ["convert", *([] if source == EMBEDDED else [source]), "--target", cell.target, "--format",
                cell.format, "--recipe", cell.recipe, "--out", str(folder), "--name", cell.model.id]  # fmt: skip
        if spec.data is not None:
            argv += data_flags(spec, base, "--eval-data", "--eval-limit")
        _cli(argv, env)
        bundles[cell.unit] = next(folder.glob("*/manifest.json")).parent
    for cell in all_cells:
        bundle, threads = str(bundles[cell.unit]), thread_flags(spec, cell.device)
        data = data_flags(spec, base, "--data", "--limit") if spec.data is not None else []
        _cli(["validate", bundle, "--device", cell.device, *data, *threads, "--json", str(out / f"{cell.key}.v.json")],
             env)  # fmt: skip
        if not cell.device.startswith("emu:"):
            lengths = ",".join(str(n) for n in spec.seq_lengths)
            _cli(["bench", bundle, "--device", cell.device, "--runs", str(spec.runs), "--warmup", str(spec.warmup),
                  "--seq-lengths", lengths, *threads, "--json", str(out / f"{cell.key}.b.json")], env)  # fmt: skip


def block(variant: str, matrix: Path, scratch: Path) -> float:
    """One variant, timed from outside in a fresh folder; returns wall-clock seconds."""
    out = Path(tempfile.mkdtemp(dir=scratch, prefix=f"{variant}-"))
    started = time.perf_counter()
    if variant == "bare":
        subprocess.run([sys.executable, __file__, "--bare", str(matrix), str(out)], check=True)
    else:
        ray = ["--ray", "local"] if variant == "ray" else ["--jobs", "1"]
        done = subprocess.run([sys.executable, "-m", "edge_bert.cli", "matrix", str(matrix), "--out", str(out), *ray],
                              capture_output=True, text=True)  # fmt: skip
        index = json.loads((out / "matrix.json").read_text())
        if done.returncode != 0 or any(c["status"] != "done" for c in index["cells"]):
            raise SystemExit(f"{variant}: the matrix did not finish every cell: {done.stderr.strip()[-300:]}")
    seconds = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matrix", type=Path, default=ROOT / "examples" / "offline.toml")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--bare", nargs=2, type=Path, help=argparse.SUPPRESS)  # one bare block (a child process)
    args = parser.parse_args()
    if args.bare:
        bare(*args.bare)
        return
    spec, base = read_matrix(args.matrix)
    count = len(cells(spec, base))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    machine = fingerprint()
    isa = " ".join(machine["isa_flags"])
    print(f"machine: {machine['cpu_model']} · {machine['affinity_cpus']} usable cores · ISA {isa}")
    print(f"matrix: {args.matrix} ({count} cells) · {args.rounds} round(s), variants alternating")
    variants = ["bare", "pool", "ray"]
    times: dict[str, list[float]] = {v: [] for v in variants}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="matrix-overhead-") as scratch:
        for round_ in range(args.rounds):
            order = variants[round_ % 3 :] + variants[: round_ % 3]
            for variant in order:
                loads.append(os.getloadavg()[0])
                times[variant].append(block(variant, args.matrix, Path(scratch)))
                print(f"  round {round_ + 1} {variant:4}: {times[variant][-1]:7.1f} s (load before {loads[-1]:.2f})")
    bare_s = statistics.median(times["bare"])
    print(f"load average before the blocks: {min(loads):.2f}-{max(loads):.2f} (1 min)")
    print(f"bare commands: {bare_s:.1f} s for {count} cells ({bare_s / count:.1f} s per cell)")
    for variant, label in (("pool", "matrix (local pool, --jobs 1)"), ("ray", "matrix --ray local")):
        median = statistics.median(times[variant])
        print(f"{label}: {median:.1f} s · overhead {(median - bare_s) / count:+.1f} s per cell · "
              f"ratio {median / bare_s:.2f}x the bare commands")  # fmt: skip


if __name__ == "__main__":
    main()
