"""Side-by-side benchmark: PyTorch fp32 eager vs our ONNX bundles vs the optimum peer, one run, one machine.

Why: a speed/size claim means something only next to the baseline (PyTorch eager) and the tool a user would
otherwise pick (optimum-cli export + ORTQuantizer dynamic int8) on the same CPU, inputs and onnxruntime.
Protocol: batch 1, real text cut to exactly L tokens (as edge_bert/bench/protocol.py does), 2 threads (our runner for
every bundle, its OrtBackend for optimum's files, torch.set_num_threads(2)); every variant is timed ALONE in
its own process, in alternating A-B-A-B blocks (scripts/isolated_timing.py: sessions sharing a process spin
and steal the 2 cores), figure = median of block p50s; parity vs PyTorch fp32 on the first 200 SST-2 dev
sentences, checked after all timing. optimum needs transformers 4.57, so it exports in its own venv
(scripts/optimum_peer.py); its files run on the same onnxruntime as ours.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never the hub: every model comes from a local dir

import numpy as np
import torch

from edge_bert.backends.ort import OrtBackend
from edge_bert.bundle import open_bundle
from edge_bert.convert.loading import default_model_path, load_model
from edge_bert.convert.pipeline import convert
from edge_bert.convert.tasks import build_graph
from edge_bert.fingerprint import fingerprint
from edge_bert.metrics import parity
from edge_bert.profiles import load_profile
from edge_bert.session import BundleSession, Encoded, TextEncoder, make_feeds
from edge_bert.textdata import builtin_texts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from isolated_timing import time_alternating

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".bench"
SST2_DEV = REPO / ".." / "shared" / "data" / "sst2" / "dev.tsv"
SEQ_LENGTHS = (16, 64, 128)
THREADS = 2
PARITY_TEXTS = 200
INT8 = ("dynamic-int8", "static-int8")
#: measured to export and quantize together (optimum 2.x breaks on transformers 5)
PEER_PINS = ("optimum==2.1.0", "optimum-onnx[onnxruntime]==0.1.0", "transformers>=4.57,<4.58")
MODELS = {"distilbert": "distilbert-base-random", "minilm": "all-minilm-l6-v2"}
TASKS = {"distilbert": "text-classification", "minilm": "feature-extraction"}
TOOLS = ("torch", "transformers", "onnxruntime", "onnx", "tokenizers", "numpy", "edge-bert")
Feeds = dict[str, np.ndarray]


def log(message: str) -> None:  # progress on stderr; the report alone on stdout
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@dataclass
class Variant:
    """One model file (or PyTorch) as it is timed and checked."""

    label: str
    kind: str  # torch | ours | peer
    bytes: int | None
    #: what scripts/isolated_timing.py runs (None: not timed, e.g. a recipe whose gate refused it)
    spec: dict[str, Any] | None = None
    note: str = ""
    parity: dict[str, Any] | None = None
    latency: dict[int, dict[str, float]] = field(default_factory=dict)


def sst2_texts(limit: int = PARITY_TEXTS) -> list[str]:
    """First ``limit`` SST-2 dev sentences; header ``text\\tlabel``, the label is after the LAST tab."""
    lines = SST2_DEV.resolve().read_text(encoding="utf-8").splitlines()[1:]
    return [line.rpartition("\t")[0].strip() for line in lines if line.strip()][:limit]


def make_distilbert() -> Path:
    """DistilBertConfig() geometry, 2 labels, seed 0, safetensors, with the real MiniLM tokenizer."""
    import transformers

    out = CACHE / "models" / MODELS["distilbert"]
    if (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file():
        return out
    log(f"creating {out}")
    transformers.set_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_config(transformers.DistilBertConfig(num_labels=2))
    model.eval().save_pretrained(out, safe_serialization=True)
    transformers.AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(out)
    return out


def build_bundles(source: Path, target: str, name: str, reuse: bool) -> list[dict[str, Any]]:
    """Our bundles via edge_bert's convert (every recipe of the profile); cached in .bench/ with --reuse."""
    out = CACHE / "bundles"
    record = out / f"{name}-{target}.outcomes.json"
    if reuse and record.is_file():
        outcomes = json.loads(record.read_text())
        if all(o["bundle"] is None or Path(o["bundle"]).is_dir() for o in outcomes):
            log(f"reusing the bundles listed in {record}")
            return outcomes
    log(f"converting {source} for target {target}")
    texts = builtin_texts("sentences")  # golden + calibration texts: disjoint from the SST-2 parity texts
    with contextlib.redirect_stdout(sys.stderr):  # litert-torch prints its progress: keep stdout for the report
        results = convert(str(source), target, out, texts=texts, name=name, formats=["onnx"], overwrite=True, log=log)
    keep = ("format", "recipe", "passed", "model_bytes", "parity", "seconds", "error")
    outcomes = [{**{k: getattr(o, k) for k in keep}, "bundle": str(o.bundle) if o.bundle else None} for o in results]
    record.write_text(json.dumps(outcomes, indent=2, default=str) + "\n")
    return outcomes


def peer_python() -> Path:
    """The optimum venv (.bench/optimum-venv), created on first use. torch goes in FIRST so that pip takes
    the CPU wheel on disk instead of pulling a multi-GB CUDA build for optimum's torch requirement."""
    venv = CACHE / "optimum-venv"
    python = venv / "bin" / "python"
    pins = [f"torch=={torch.__version__.split('+')[0]}", *PEER_PINS, f"onnxruntime=={version('onnxruntime')}"]
    marker = venv / ".edge-bert-pins"
    if marker.is_file() and marker.read_text() == "\n".join(pins):
        return python
    log(f"creating {venv} ({', '.join(pins)}); pip output in {CACHE / 'optimum-venv.log'}")
    with (CACHE / "optimum-venv.log").open("w") as pip_log:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        for group in (pins[:1], pins[1:]):
            subprocess.run([str(python), "-m", "pip", "install", *group], check=True, stdout=pip_log, stderr=pip_log)
    marker.write_text("\n".join(pins))
    return python


def optimum_peer(keys: list[str], sources: dict[str, Path], outcomes: dict[str, Any], isa: str, reuse: bool) -> dict:
    """One peer run: (a) optimum's export + dynamic int8 per model (cached with --reuse); (b) optimum loads
    each of our written bundles as it is, compared with onnxruntime on a few SST-2 texts."""
    exports, cached = [], []
    for k in keys:
        out = CACHE / "optimum" / f"{MODELS[k]}-{isa}"
        if reuse and (out / "export.json").is_file():
            cached.append(json.loads((out / "export.json").read_text()))
        else:
            exports.append({"name": MODELS[k], "model_dir": str(sources[k]), "task": TASKS[k], "out_dir": str(out)})
    texts = sst2_texts(8)
    checks = [
        {"bundle": o["bundle"], "task": TASKS[k],
         "expected_ids": [TextEncoder(open_bundle(o["bundle"])).encode(t).ids.tolist() for t in texts]}
        for k in keys for o in outcomes[k] if o["passed"] and o["format"] == "onnx"
    ]  # fmt: skip
    work = CACHE / "optimum"
    work.mkdir(parents=True, exist_ok=True)
    spec_path, report_path, peer_log = work / "spec.json", work / "report.json", work / "peer.log"
    spec_path.write_text(json.dumps({"isa": isa, "exports": exports, "checks": checks, "texts": texts}, indent=2))
    report_path.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"HF_HUB_OFFLINE": "1"}
    command = [str(peer_python()), str(REPO / "scripts" / "optimum_peer.py"), str(spec_path), str(report_path)]
    log(f"running scripts/optimum_peer.py in the optimum venv (log: {peer_log})")
    with peer_log.open("w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=handle, env=env, check=False)
    if not report_path.is_file():
        raise SystemExit(f"optimum_peer.py failed (exit {done.returncode}); see {peer_log}")
    peer = json.loads(report_path.read_text())
    for export in peer["exports"]:
        (Path(export["fp32"]).parent / "export.json").write_text(json.dumps(export, indent=2))
    peer["exports"] += cached
    return peer


def ort_runner(path: Path, primary: Callable[[Feeds], np.ndarray]) -> Callable[[Feeds], np.ndarray]:
    """A bare model file on our runner's OrtBackend (parity only; timing happens in isolated processes)."""
    backend = OrtBackend(Path(path).read_bytes(), threads=THREADS, where=str(path))
    names = backend.input_names
    return lambda f: primary(backend.run({k: f[k] for k in names}))


def bundle_runner(path: Path) -> Callable[[Encoded], np.ndarray]:
    """A bundle through the device-side session (pads to a static signature where the bundle has one)."""
    session = BundleSession(open_bundle(path), threads=THREADS)
    primary = session.bundle.primary_output
    return lambda encoded: session.run_ids(encoded.ids, encoded.type_ids)[primary]


def pool(hidden: np.ndarray, pooling: str, normalize: bool) -> np.ndarray:
    """sentence-transformers pooling of optimum's last_hidden_state (batch 1, unpadded: the mask is all ones)."""
    vec = hidden[:, 0] if pooling == "cls" else hidden.mean(axis=1)
    return vec / np.linalg.norm(vec, axis=1, keepdims=True) if normalize else vec


def bench_model(key: str, source: Path, outcomes: list[dict], args: argparse.Namespace, peer: dict | None) -> dict:
    """Time every variant alone in its own process (A-B-A-B blocks), then check parity in this process."""
    name = MODELS[key]
    loaded = load_model(str(source))
    classification = loaded.task == "text-classification"
    fp32 = next((o for o in outcomes if (o["format"], o["recipe"]) == ("onnx", "fp32") and o["passed"]), None)
    if fp32 is None:
        raise SystemExit(f"{name}: the ONNX fp32 bundle failed its gate; no ONNX baseline to compare against")
    common = {"threads": THREADS, "seq_lengths": list(SEQ_LENGTHS), "warmup": args.warmup, "runs": args.runs,
              "tokenizer_bundle": fp32["bundle"]}  # fmt: skip
    size = (source / "model.safetensors").stat().st_size
    variants = [Variant("pytorch fp32 eager", "torch", size, {**common, "kind": "torch", "path": str(source)})]
    order = ("fp32", "fp16", *INT8)
    for o in sorted(outcomes, key=lambda o: (o["format"] != "onnx", order.index(o["recipe"]))):
        label = f"ours {o['format']} {o['recipe']}"
        if not o["passed"]:  # nothing written: show the gate's verdict (on the golden texts) instead
            variants.append(Variant(label, "ours", o["model_bytes"], note=f"not written: {o['error']}"))
            variants[-1].parity = o["parity"]
            continue
        variants.append(Variant(label, "ours", o["model_bytes"], {**common, "kind": "bundle", "path": o["bundle"]}))
    export = next((e for e in (peer or {}).get("exports", []) if e["name"] == name), None)
    if export:
        for label, file in (("optimum fp32", export["fp32"]), ("optimum dynamic-int8", export["int8"])):
            if file:
                spec = {**common, "kind": "onnx", "path": file}
                variants.append(Variant(label, "peer", Path(file).stat().st_size, spec))
    elif peer is not None:
        log(f"{name}: no optimum export ({peer.get('errors')})")

    timed = [v for v in variants if v.spec]
    for v in timed:
        v.spec["label"] = v.label  # type: ignore[index]
    log(f"{name}: timing {len(timed)} models, each alone in its own process, {args.blocks} alternating blocks")
    load = os.getloadavg()[0]
    stats, history = time_alternating([v.spec for v in timed], args.blocks, log)  # type: ignore[misc]
    for v in timed:
        v.latency = stats[v.label]
    log(f"{name}: parity on {PARITY_TEXTS} SST-2 dev sentences")
    parity_check(variants, loaded, source, fp32["bundle"], export, classification)

    eager, onnx32 = variants[0], next(v for v in variants if v.label == "ours onnx fp32")
    rows = []
    for v in variants:
        for n in SEQ_LENGTHS:
            stats_n = v.latency.get(n)
            p50 = stats_n["p50_ms"] if stats_n else None
            rows.append({
                "variant": v.label, "kind": v.kind, "seq_length": n, "p50_ms": p50,
                "spread_pct": stats_n["spread_pct"] if stats_n else None,
                "speedup_vs_eager": eager.latency[n]["p50_ms"] / p50 if p50 else None,
                "speedup_vs_onnx_fp32": onnx32.latency[n]["p50_ms"] / p50 if p50 else None,
                "model_bytes": v.bytes, "size_pct_of_fp32": 100 * v.bytes / onnx32.bytes if v.bytes else None,
                "parity": v.parity, "latency": stats_n, "note": v.note,
            })  # fmt: skip
    load_avg = {"before": load, "after": os.getloadavg()[0]}
    return {"model": name, "task": loaded.task, "load_avg_1min": load_avg, "blocks": history, "rows": rows,
            "outcomes": outcomes}  # fmt: skip


def parity_check(
    variants: list[Variant], loaded: Any, source: Path, tokenizer: str, export: dict | None, classification: bool
) -> None:
    """Each variant's outputs on the SST-2 dev sentences against PyTorch fp32 (after all timing is done)."""
    graph = build_graph(loaded.task, loaded.model, loaded.pooling, loaded.normalize)
    encoder = TextEncoder(open_bundle(tokenizer))
    int64 = {n: np.dtype(np.int64) for n in ("input_ids", "attention_mask", "token_type_ids")}
    encoded = [encoder.encode(t) for t in sst2_texts()]
    feeds = [make_feeds(e.ids, e.type_ids, int64, len(e.ids)) for e in encoded]

    def torch_run(feeds: Feeds) -> np.ndarray:
        with torch.inference_mode():
            out = graph(*(torch.from_numpy(feeds[n]) for n in loaded.arch.inputs))
        return (out[0] if isinstance(out, tuple) else out).numpy()

    reference = np.concatenate([torch_run(f) for f in feeds])
    head = (lambda r: r["logits"]) if classification else (
        lambda r: pool(r["last_hidden_state"], loaded.pooling, loaded.normalize))  # fmt: skip
    for v in variants:
        if not v.spec or v.kind == "torch":
            continue
        if v.kind == "peer":
            run = ort_runner(Path(v.spec["path"]), head)
            outputs = [run(f) for f in feeds]
        else:
            run_bundle = bundle_runner(Path(v.spec["path"]))
            outputs = [run_bundle(e) for e in encoded]
        v.parity = parity(np.concatenate(outputs), reference, classification)


def targets(result: dict[str, Any], vnni: bool) -> list[dict[str, Any]]:
    """Issue #10's goals at seq 128, on the bundles that passed their gates (p50 ratios from this one run)."""
    at = {r["variant"]: r for r in result["rows"] if r["seq_length"] == 128 and r["p50_ms"]}
    ours = {label: r for label, r in at.items() if r["kind"] == "ours"}
    int8 = {label: r for label, r in ours.items() if label.split()[-1] in INT8}
    best = min(ours.values(), key=lambda r: r["p50_ms"], default=None)
    peer_int8, peer_fp32 = at.get("optimum dynamic-int8"), at.get("optimum fp32")
    need = 2.5 if vnni else 1.6
    out = []

    def check(label: str, bundle: str | None, value: float | None, limit: float, unit: str = "x") -> None:
        ok = value is not None and (value <= limit if unit == "%" else value >= limit)
        out.append({"target": label, "bundle": bundle, "value": value, "threshold": limit, "unit": unit,
                    "pass": ok})  # fmt: skip

    def ratio(slow: dict | None, fast: dict | None) -> float | None:
        return slow["p50_ms"] / fast["p50_ms"] if slow and fast else None

    check(
        "best bundle >= 1.25x faster than optimum dynamic int8", best and best["variant"], ratio(peer_int8, best), 1.25
    )
    check("ONNX fp32 no slower than optimum fp32", "ours onnx fp32", ratio(peer_fp32, ours.get("ours onnx fp32")), 1.0)
    onnx_int8 = ours.get("ours onnx dynamic-int8")
    check("ONNX dynamic int8 no slower than optimum's", "ours onnx dynamic-int8", ratio(peer_int8, onnx_int8), 1.0)
    for fmt in ("onnx", "tflite"):
        fast = min((r for label, r in int8.items() if label.split()[1] == fmt), key=lambda r: r["p50_ms"], default=None)
        floor = ours.get(f"ours {fmt} fp32")
        if fast and floor:
            label = f"{fmt} int8 >= {need}x its fp32 ({'AVX-512 VNNI' if vnni else 'AVX2 only'})"
            check(label, fast["variant"], ratio(floor, fast), need)
    static, dynamic = ours.get("ours onnx static-int8"), onnx_int8
    if static:
        check("ONNX static int8 faster than dynamic int8", "ours onnx static-int8", ratio(dynamic, static), 1.0)
    check("ONNX int8 file <= 26% of ONNX fp32", "ours onnx dynamic-int8",
          onnx_int8 and onnx_int8["size_pct_of_fp32"], 26.0, "%")  # fmt: skip
    check(
        "best bundle >= 3x faster than PyTorch eager", best and best["variant"], best and best["speedup_vs_eager"], 3.0
    )
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _parity_text(p: dict[str, Any] | None) -> str:
    if not p:
        return "-"
    text = f"cos mean {p['mean_cosine']:.5f} min {p['worst_cosine']:.5f}"
    return f"top1 {p['top1_agreement']:.3f} " + text if p.get("top1_agreement") is not None else text


def print_report(report: dict[str, Any]) -> None:
    m, s, peer = report["machine"], report["settings"], report["peer"] or {}
    print(f"machine: {m['cpu_model']} | {m['cpu_count']} cpus (affinity {m['affinity_cpus']}) | {m['os']}")
    print(f"ISA flags: {' '.join(m['isa_flags'])}")
    print(f"ISA profile: {s['target']} (isa {s['profile_isa']}); optimum quantization config: {s['peer_isa']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    if peer:
        print("optimum venv: " + ", ".join(f"{k} {v}" for k, v in peer["versions"].items()))
    print(f"protocol: batch 1, {s['threads']} threads, each variant alone in its own process, {s['blocks']} "
          f"alternating blocks of {s['warmup']}+{s['runs']} runs, figure = median of block p50s; parity vs "
          f"PyTorch fp32 on {s['parity_texts']} SST-2 dev sentences")  # fmt: skip
    head = f"{'variant':<26}{'seq':>4}{'p50 ms':>9}{'spread':>8}{'x eager':>9}{'x onnx32':>9}{'MB':>8}{'% fp32':>8}"
    head += "  parity"
    for result in report["results"]:
        busy = "; NOISY: other processes compete" if max(result["load_avg_1min"].values()) > m["cpu_count"] else ""
        load = " -> ".join(f"{v:.1f}" for v in result["load_avg_1min"].values())
        print(f"\n== {result['model']} ({result['task']}), load average {load}{busy} ==\n{head}\n{'-' * len(head)}")
        for r in result["rows"]:
            first = r["seq_length"] == SEQ_LENGTHS[0]
            size = r["model_bytes"] / 1e6 if r["model_bytes"] and first else None
            spread = _fmt(r["spread_pct"], ".0f") + "%" if r["spread_pct"] is not None else "-"
            print(f"{r['variant'] if first else '':<26}{r['seq_length']:>4}{_fmt(r['p50_ms'], '.2f'):>9}{spread:>8}"
                  f"{_fmt(r['speedup_vs_eager'], '.2f'):>9}{_fmt(r['speedup_vs_onnx_fp32'], '.2f'):>9}"
                  f"{_fmt(size, '.1f'):>8}{_fmt(r['size_pct_of_fp32'] if first else None, '.1f'):>8}  "
                  f"{_parity_text(r['parity']) if first else ''}")  # fmt: skip
            if first and r["note"]:
                print(f"{'':<30}{r['note'][:300]}")
        print("targets at seq 128:")
        for t in result["targets"]:
            value = _fmt(t["value"], ".2f") + t["unit"]
            print(f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']}: {value} ({t['bundle'] or 'no int8 bundle'})")
    for check in peer.get("checks", []):
        outs = "; ".join(
            f"{k} via {e['class']}: " + (f"max|diff| {e['max_abs_diff']:.3g}" if e["loaded"] else f"FAIL {e['error']}")
            for k, e in check["outputs"].items()
        )
        print(f"\noptimum loads {Path(check['bundle']).name}: {'yes' if check['loaded'] else 'NO'}; {outs}; "
              f"tokenizer ids match: {check['tokenizer_ids_match']}")  # fmt: skip
    print("".join(f"optimum peer error: {error}\n" for error in peer.get("errors", [])), end="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=3, help="alternating processes per variant (default 3)")
    parser.add_argument("--runs", type=int, default=100, help="timed runs per block and length (default 100)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs first (default 20)")
    parser.add_argument("--models", default="distilbert,minilm")
    parser.add_argument("--skip-peer", action="store_true", help="no optimum venv, export or compatibility check")
    parser.add_argument("--target", default="auto", choices=("auto", "x86", "x86-vnni"))
    parser.add_argument("--reuse", action="store_true", help="reuse the bundles/optimum exports cached in .bench/")
    parser.add_argument("--json", type=Path, help="write everything to this JSON file")
    args = parser.parse_args()
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    if unknown := set(keys) - set(MODELS):
        parser.error(f"unknown model(s) {sorted(unknown)}; choose from {list(MODELS)}")
    machine = fingerprint()
    vnni = "avx512_vnni" in machine["isa_flags"]  # type: ignore[operator]  # from /proc/cpuinfo's flags
    args.target = ("x86-vnni" if vnni else "x86") if args.target == "auto" else args.target
    torch.set_num_threads(THREADS)
    CACHE.mkdir(exist_ok=True)
    sources = {k: make_distilbert() if k == "distilbert" else default_model_path() for k in keys}
    outcomes = {k: build_bundles(sources[k], args.target, MODELS[k], args.reuse) for k in keys}
    peer_isa = None if args.skip_peer else ("avx512_vnni" if vnni else "avx2")
    peer = None if peer_isa is None else optimum_peer(keys, sources, outcomes, peer_isa, args.reuse)
    results = []
    for k in keys:
        result = bench_model(k, sources[k], outcomes[k], args, peer)
        results.append({**result, "targets": targets(result, vnni)})

    settings = {
        "target": args.target, "profile_isa": load_profile(args.target).raw.get("isa"), "peer_isa": peer_isa,
        "cpu_has_avx512_vnni": vnni, "threads": THREADS, "warmup": args.warmup, "runs": args.runs,
        "blocks": args.blocks, "batch": 1, "seq_lengths": list(SEQ_LENGTHS),
        "parity_texts": PARITY_TEXTS, "models": keys,
    }  # fmt: skip
    versions = {"python": sys.version.split()[0], **{d: version(d) for d in TOOLS}}
    report = {
        "schema": "edge-bert/benchmark-onnx/v1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "versions": versions,
        "settings": settings,
        "peer": peer,
        "results": results,
    }
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
