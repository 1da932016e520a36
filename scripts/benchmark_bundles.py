"""Side-by-side latency of any bundles (ONNX and LiteRT alike), each timed alone in its own process.

    python scripts/benchmark_bundles.py BUNDLE [BUNDLE ...] [--blocks 4] [--runs 50] [--threads 2] [--json PATH]
        [--peer-openvino] [--peer-onnx LABEL=FILE ...] [--peer-model DIR] [--accuracy]

Every block is ``edge-bert bench``'s own protocol (edge_bert/bench/protocol.py: verified bundle, its tokenizer and
backend, a real text cut to exactly L tokens, warm-up, timed runs) in a fresh process holding that one
bundle; blocks alternate A-B-A-B with the first bundle rotating (scripts/isolated_timing.py says why).
Prints per bundle and length the median of the block p50s, the spread of block p50s, the ratio to the
first bundle, and the machine fingerprint with the load average before every block.

Peers, timed in the same alternation: ``--peer-openvino`` the optimum-intel path (scripts/openvino_peer.py: its
export, its default NNCF int8, and its fp32 IR as compiled by default, bf16 on a CPU with AVX512-BF16/AMX) of
``--peer-model`` (default: the embedded MiniLM); ``--peer-onnx LABEL=FILE`` an ONNX file such as optimum's
ORTQuantizer output (scripts/benchmark_onnx.py). With peers the script prints issue 20's goal (scripts/peer_goal.py):
our best bundle against the best peer at 128 and 16 tokens, the threshold the CPU's ISA calls for, and each
variant's accuracy (``--accuracy``, implied by peers: the search-grade gate for embeddings).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from isolated_timing import machine_state, time_alternating
from peer_goal import SEARCH_TEXTS, goal_for, verdict

from edge_bert.bundle import open_bundle
from edge_bert.render.text import machine_line

CACHE = Path(__file__).resolve().parents[1] / ".bench"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def ratios_to_first(stats: dict[str, dict[int, dict[str, float]]], labels: list[str], length: int) -> dict[str, float]:
    """Per bundle, how many times faster than the first it is at ``length``: the first's p50 over its own
    (the medians of block p50s), so above 1 is faster; the speed targets are read off this column."""
    return {label: stats[labels[0]][length]["p50_ms"] / stats[label][length]["p50_ms"] for label in labels}


def peer_specs(args: argparse.Namespace, lengths: list[int]) -> list[dict]:
    """The peers' timing specs (tokenized by the first bundle's tokenizer, as every variant is)."""
    common = {"threads": args.threads, "seq_lengths": lengths, "warmup": args.warmup, "runs": args.runs,
              "tokenizer_bundle": str(args.bundles[0])}  # fmt: skip
    specs = []
    for item in args.peer_onnx:
        label, _, file = item.partition("=")
        specs.append({**common, "label": label, "kind": "onnx", "path": file, "bytes": Path(file).stat().st_size})
    if args.peer_openvino:
        from openvino_peer import build, compile_ir

        model = peer_model(args)
        task = open_bundle(args.bundles[0]).task
        name = model.parent.name if model.name == "model" else model.name  # the embedded MiniLM's dir is "model"
        variants = build(model, task, CACHE / "openvino-peer" / name, log)
        for label, v in variants.items():
            size = Path(v["xml"]).with_suffix(".bin").stat().st_size + Path(v["xml"]).stat().st_size
            # the precision the plugin computes in on THIS cpu (its default is bf16 where it has bf16 units)
            computed = compile_ir(Path(v["xml"]), args.threads, v["precision"]).get_property("INFERENCE_PRECISION_HINT")
            specs.append({**common, "label": f"{label} [{computed.get_type_name()}]", "kind": "openvino",
                          "path": v["xml"], "precision": v["precision"], "bytes": size})  # fmt: skip
    return specs


def peer_model(args: argparse.Namespace) -> Path:
    if args.peer_model:
        return args.peer_model.resolve()
    from edge_bert.convert.loading import default_model_path

    return default_model_path()


def check_accuracy(args: argparse.Namespace, specs: list[dict]) -> dict[str, dict]:
    """Every variant's search-grade figures against sentence-transformers' embeddings (after all timing)."""
    from openvino_peer import embeddings, reference_embeddings, sst2
    from peer_goal import bundle_embeddings, onnx_embeddings, search_grade

    if (task := open_bundle(args.bundles[0]).task) != "feature-extraction":
        log(f"accuracy: only the embeddings' search-grade gate is implemented here; {task} not checked")
        return {}
    texts = sst2("dev", SEARCH_TEXTS)
    log(f"accuracy: sentence-transformers reference on {len(texts)} SST-2 dev texts")
    reference = reference_embeddings(peer_model(args), texts)
    out = {}
    for spec in specs:
        path = Path(spec["path"])
        if spec["kind"] == "bundle":
            ours = bundle_embeddings(path, texts, args.threads)
        elif spec["kind"] == "onnx":
            ours = onnx_embeddings(path, Path(spec["tokenizer_bundle"]), texts, args.threads)
        else:
            ours = embeddings(peer_model(args), path, spec["precision"], texts, args.threads)
        out[spec["label"]] = search_grade(ours, reference)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--blocks", type=int, default=4, help="processes per bundle, alternating (default 4)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per block (default 50)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq-lengths", default="16,64,128")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--peer-openvino", action="store_true", help="add the optimum-intel peer (OpenVINO + NNCF)")
    parser.add_argument("--peer-onnx", action="append", default=[], metavar="LABEL=FILE", help="an ONNX peer file")
    parser.add_argument("--peer-model", type=Path, help="HF model dir of the peers (default: embedded MiniLM)")
    parser.add_argument("--accuracy", action="store_true", help="search-grade check of every variant (embeddings)")
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
    peers = peer_specs(args, lengths)
    for spec in peers:
        sizes[spec["label"]] = spec.pop("bytes")
    specs += peers
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
    labels += [spec["label"] for spec in peers]
    longest = lengths[-1]
    ratios = ratios_to_first(stats, labels, longest)
    has_e2e = all("e2e_p50_ms" in stats[label][longest] for label in labels)
    header = f"{'bundle':<50} {'MB':>6} " + " ".join(f"{'p50@' + str(n):>9}" for n in lengths)
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
        print(f"{label:<50} {sizes[label] / 1e6:6.1f} {cells} {spread:6.1f}% {ratio:11.2f}x{e2e}")
    goal = None
    accuracy = check_accuracy(args, specs) if (args.accuracy or peers) else {}
    for label, acc in accuracy.items():
        verdict_text = "PASS" if acc["pass"] else "FAIL"
        print(f"accuracy {label:<50} same nearest neighbour {acc['same_nearest_neighbour']:.3f}, worst cosine "
              f"{acc['worst_cosine']:.4f}, mean {acc['mean_cosine']:.5f}: {verdict_text}")  # fmt: skip
    if peers:
        goal = goal_for(list(before["isa_flags"]))
        accurate = {label: acc["pass"] for label, acc in accuracy.items()}
        if not accuracy:  # a task without an accuracy check here: the goal compares speed alone, and says so
            print("accuracy NOT checked for this task: the goal below compares speed alone")
            accurate = dict.fromkeys(labels, True)
        ours = [path.name for path in args.bundles]
        rows = verdict(stats, ours, [spec["label"] for spec in peers], accurate, goal)
        print(f"goal for this CPU ({goal.isa}; accuracy: search-grade on {SEARCH_TEXTS} SST-2 dev texts):")
        for row in rows:
            value = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
            anyway = "-" if row["ratio_to_fastest_peer"] is None else f"{row['ratio_to_fastest_peer']:.2f}x"
            print(f"  {'PASS' if row['pass'] else 'MISS'} @{row['seq_length']}: ours {row['ours']} vs best peer "
                  f"{row['peer']}: {value} (need >= {row['threshold']:.2f}x); fastest peer at any accuracy "
                  f"{row['fastest_peer']}: {anyway}")  # fmt: skip
        goal = {"isa": goal.isa, "min_ratio": goal.min_ratio, "rows": rows}
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
            "accuracy": accuracy,
            "goal": goal,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
