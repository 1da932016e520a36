"""Teacher vs distilled students, measured the way the README reports them: every step is an
`edge-bert` command run in its own process, and each bundle is benched alone, back to back.

    python scripts/benchmark_distill.py --task clinc150 --layers 3 2            # teacher + 2 students
    python scripts/benchmark_distill.py --task sst2 --layers 3 --skip-train     # reuse models/ as is

Steps (skipped when the output exists): `edge-bert finetune --preset TASK` (the teacher, from the
embedded MiniLM), `edge-bert distill TEACHER --layers N` per student, `edge-bert convert` to the target
(fp32 + dynamic-int8, with the task's evaluation data stored as fp32 reference), `edge-bert validate
--data` per bundle (accuracy and % of fp32, through the runner) and `edge-bert bench` per bundle. Prints
a Markdown table; --json keeps everything.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
#: task -> (training args, evaluation args): `--data/--split` and `--eval-data/--eval-split` of the CLI
TASKS = {
    "clinc150": (
        ["--data", str(SHARED / "clinc150/data_full.json"), "--split", "train"],
        ["--eval-data", str(SHARED / "clinc150/data_full.json"), "--eval-split", "test"],
    ),
    "sst2": (["--data", str(SHARED / "sst2/train.tsv")], ["--eval-data", str(SHARED / "sst2/dev.tsv")]),
}
EDGE_BERT = [sys.executable, "-m", "edge_bert.cli"]


def sh(args: list[str], nice: int = 0) -> str:
    """Run one edge-bert command, echo it, return stdout; stop on failure (exit 1 = a gate: reported)."""
    print("$ edge-bert " + " ".join(args), file=sys.stderr, flush=True)
    result = subprocess.run(["nice", "-n", str(nice), *EDGE_BERT, *args], capture_output=True, text=True)
    if result.returncode not in (0, 1):
        sys.exit(f"failed ({result.returncode}): {result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result.stdout


def timed(args: list[str], out: Path) -> float:
    """Train unless ``out`` exists; return the wall seconds of the command (or of the earlier run)."""
    if not out.is_dir():
        start = time.time()
        sh(args, nice=5)  # training is niced: the box is shared
        (out / "wall_seconds.txt").write_text(f"{time.time() - start:.1f}\n")
    marker = out / "wall_seconds.txt"
    return float(marker.read_text()) if marker.is_file() else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 2])
    parser.add_argument(
        "--method",
        default="auto",
        help="distill --method: auto (DistilBERT at full width), tinybert, albert, mobilebert",
    )
    parser.add_argument("--hidden-size", type=int)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--bundles", type=Path, default=Path("bundles"))
    parser.add_argument("--target", default="x86-vnni")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    train, evaluation = TASKS[args.task]
    eval_data = ["--data", evaluation[1]] + (["--split", evaluation[3]] if len(evaluation) > 2 else [])
    teacher = args.models / f"{args.task}-teacher"
    models = {
        "teacher": (
            teacher,
            timed(["finetune", "--preset", args.task, *train, *evaluation, "--out", str(teacher)], teacher),
        )
    }
    for layers in args.layers:
        width = ["--hidden-size", str(args.hidden_size)] if args.hidden_size else []
        suffix = (f"-h{args.hidden_size}" if args.hidden_size else "") + (
            f"-{args.method}" if args.method in ("albert", "mobilebert") else ""
        )
        student = args.models / f"{args.task}-student-l{layers}{suffix}"
        command = [
            "distill",
            str(teacher),
            *train,
            *evaluation,
            "--layers",
            str(layers),
            "--method",
            args.method,
            *width,
            "--out",
            str(student),
        ]
        models[f"student-l{layers}"] = (student, timed(command, student))
    rows = []
    for role, (path, seconds) in models.items():
        name = f"{args.task}-{role}"
        sh(
            [
                "convert",
                str(path),
                "--target",
                args.target,
                "--format",
                "onnx",
                "--recipe",
                "fp32",
                "--recipe",
                "dynamic-int8",
                *evaluation[:2],
                *(["--split", evaluation[3]] if len(evaluation) > 2 else []),
                "--name",
                name,
                "--out",
                str(args.bundles),
                "--overwrite",
            ]
        )
        summary = json.loads((path / "eval_summary.json").read_text())
        for recipe in ("fp32", "dynamic-int8"):
            bundle = args.bundles / f"{name}-{args.target}-onnx-{recipe}"
            check = json.loads(sh(["validate", str(bundle), *eval_data, "--json", "-"]))
            timing = json.loads(sh(["bench", str(bundle), "--runs", str(args.runs), "--json", "-"]))
            params = json.loads((bundle / "manifest.json").read_text())["model"]["parameters"]
            rows.append(
                {
                    "model": role,
                    "recipe": recipe,
                    "seconds": seconds,
                    "params": params,
                    "summary": summary,
                    "validate": check,
                    "bench": timing,
                }
            )
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def markdown(rows: list[dict]) -> str:
    teacher = next(r for r in rows if r["model"] == "teacher" and r["recipe"] == "fp32")
    teacher_acc = teacher["validate"]["accuracy"]["metrics"]["accuracy"]
    teacher_int8 = next(r for r in rows if r["model"] == "teacher" and r["recipe"] == "dynamic-int8")
    lengths = [row["seq_length"] for row in rows[0]["bench"]["latency"]]
    head = ["model", "recipe", "params", "MB", "accuracy", "% of teacher", "% of own fp32"]
    head += [f"p50 @{n} ms" for n in lengths] + ["× teacher int8 @128", "train min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        metrics = r["validate"]["accuracy"]["metrics"]
        params = r["params"]
        p50 = [row["p50_ms"] for row in r["bench"]["latency"]]
        ratio = teacher_int8["bench"]["latency"][-1]["p50_ms"] / p50[-1] if r["recipe"] == "dynamic-int8" else None
        cells = [
            r["model"],
            r["recipe"],
            f"{params / 1e6:.1f}M",
            f"{r['bench']['model_bytes'] / 1e6:.1f}",
            f"{metrics['accuracy']:.4f}",
            f"{100 * metrics['accuracy'] / teacher_acc:.1f}",
            f"{metrics.get('accuracy_pct_of_fp32', 100):.2f}",
            *[f"{v:.2f}" for v in p50],
            "-" if ratio is None else f"{ratio:.2f}",
            f"{r['seconds'] / 60:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
