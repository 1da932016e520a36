"""Time each variant ALONE in its own process, in alternating blocks (A-B-A-B), and say how busy the machine was.

Why: onnxruntime sessions sharing one process keep their intra-op thread pools spinning after each run and
steal the 2 cores from each other (measured: MiniLM int8 showed 16.3 ms at 128 tokens interleaved in one
process, 4.6 ms alone). So every block is a fresh process that loads ONE variant, warms it up and times it;
blocks alternate between variants (the start rotates each round) so slow drift in machine load hits all of
them alike. A variant's figure is the median of its blocks' p50s; the spread of block p50s is reported next
to it, with the load average before each block and the machine fingerprint.

Variant kinds (a JSON spec; the same real text, cut to exactly L tokens, for every variant):
- ``bundle``: ``edge_bert.bench.protocol.bench`` on a bundle — the device-side protocol itself (model-only time, and
  whatever else bench reports, e.g. end-to-end time);
- ``onnx``: a bare .onnx file (e.g. optimum's) on edge-bert's OrtBackend, tokenized by ``tokenizer_bundle``;
- ``torch``: PyTorch eager fp32 of a model directory (host side; imports the converter);
- ``openvino``: a bare OpenVINO IR (e.g. the optimum-intel peer's, scripts/openvino_peer.py) compiled as optimum-intel
  compiles it (LATENCY hint) with the benchmark's threads and ``precision`` (None: the plugin's default).

    python scripts/isolated_timing.py worker SPEC.json   # one block: prints a JSON result on stdout
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()


def load_average() -> float:
    return os.getloadavg()[0]


def run_block(spec: dict[str, Any]) -> dict[str, Any]:
    """One block of one variant in a fresh interpreter; the worker's stdout is its JSON result."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "worker", json.dumps(spec)], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"timing worker for {spec['label']!r} failed (exit {done.returncode}): {tail}")
    return json.loads(done.stdout)


def time_alternating(
    specs: list[dict[str, Any]], blocks: int, log: Any = None
) -> tuple[dict[str, dict[int, dict[str, Any]]], list[dict[str, Any]]]:
    """Run ``blocks`` rounds; in each round every variant runs one block, the first variant rotating per
    round. Returns per label and length {p50_ms (median of block p50s), block_p50_ms, spread_pct, ...} and
    the block log (label, round, load average before)."""
    per_block: dict[str, list[dict[str, Any]]] = {spec["label"]: [] for spec in specs}
    history = []
    for round_index in range(blocks):
        for step in range(len(specs)):
            spec = specs[(round_index + step) % len(specs)]
            load = load_average()
            started = time.perf_counter()
            result = run_block(spec)
            per_block[spec["label"]].append(result)
            history.append({"round": round_index, "label": spec["label"], "load_avg_1min": load,
                            "pid": result["pid"], "seconds": round(time.perf_counter() - started, 2)})  # fmt: skip
            if log:
                log(f"block {round_index + 1}/{blocks} {spec['label']}: load {load:.2f}")
    return {label: summarize(results) for label, results in per_block.items()}, history


def summarize(results: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Median over blocks of each per-block statistic (p50, e2e p50 if present), with the block spread."""
    out: dict[int, dict[str, Any]] = {}
    for length in results[0]["rows"]:
        rows = [r["rows"][length] for r in results]
        p50s = [row["p50_ms"] for row in rows]
        merged: dict[str, Any] = {"block_p50_ms": p50s, "spread_pct": 100 * (max(p50s) - min(p50s)) / min(p50s)}
        for key in rows[0]:
            values = [row[key] for row in rows if isinstance(row.get(key), int | float)]
            if len(values) == len(rows):
                merged[key] = statistics.median(values)
        out[int(length)] = merged
    return out


def machine_state() -> dict[str, Any]:
    """The fingerprint every published number carries, plus the load average when it was taken."""
    from edge_bert.fingerprint import fingerprint

    return {**fingerprint(), "load_avg_1min": load_average()}


# ---- the worker: runs in its own process, times one variant --------------------------------------------------


def _texts(length: int, encoder: Any) -> Any:
    from edge_bert.bench.protocol import text_of_length
    from edge_bert.textdata import builtin_texts

    return text_of_length(encoder, builtin_texts("paragraphs"), length)


def _time(run: Any, feeds: dict[str, Any], warmup: int, runs: int) -> dict[str, float]:
    from edge_bert.metrics import latency_stats

    for _ in range(warmup):
        run(feeds)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        run(feeds)
        samples.append((time.perf_counter() - start) * 1000)
    return latency_stats(samples)


def _worker_bundle(spec: dict[str, Any]) -> dict[str, Any]:
    from edge_bert.bench.protocol import bench

    result = bench(spec["path"], spec["threads"], tuple(spec["seq_lengths"]), spec["warmup"], spec["runs"])
    rows = {row["seq_length"]: _flat(row) for row in result["latency"]}
    return {"rows": rows, "cold_load_ms": result["cold_load_ms"], "peak_rss_mib": result["memory_mib"]["peak_rss"]}


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """bench's row with nested figures flattened: ``{"e2e": {"p50_ms": x}}`` -> ``e2e_p50_ms``."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update({f"{key}_{inner}": v for inner, v in value.items()})
        elif key != "seq_length":
            flat[key] = value
    return flat


def _worker_onnx(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from edge_bert.backends.ort import OrtBackend
    from edge_bert.bundle import open_bundle
    from edge_bert.session import TextEncoder, make_feeds

    encoder = TextEncoder(open_bundle(spec["tokenizer_bundle"]))
    backend = OrtBackend(Path(spec["path"]).read_bytes(), threads=spec["threads"], where=spec["path"])
    dtypes = {name: np.dtype(np.int64) for name in backend.input_names}
    rows = {}
    for length in spec["seq_lengths"]:
        encoded = _texts(length, encoder)
        feeds = make_feeds(encoded.ids, encoded.type_ids, dtypes, length)
        rows[length] = _time(backend.run, feeds, spec["warmup"], spec["runs"])
    return {"rows": rows}


def _worker_torch(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from edge_bert.bundle import open_bundle
    from edge_bert.convert.loading import load_model
    from edge_bert.convert.tasks import build_graph
    from edge_bert.session import TextEncoder

    torch.set_num_threads(spec["threads"])
    loaded = load_model(spec["path"])
    graph = build_graph(loaded.task, loaded.model, loaded.pooling, loaded.normalize)
    encoder = TextEncoder(open_bundle(spec["tokenizer_bundle"]))
    names = loaded.arch.inputs

    def run(feeds: dict[str, Any]) -> Any:
        with torch.inference_mode():
            return graph(*(feeds[n] for n in names))

    rows = {}
    for length in spec["seq_lengths"]:
        encoded = _texts(length, encoder)
        mask = np.ones_like(encoded.ids)
        arrays = {"input_ids": encoded.ids, "attention_mask": mask, "token_type_ids": encoded.type_ids}
        feeds = {n: torch.from_numpy(arrays[n][None, :]) for n in names}
        rows[length] = _time(run, feeds, spec["warmup"], spec["runs"])
    return {"rows": rows}


def _worker_openvino(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    from openvino_peer import compile_ir

    from edge_bert.bundle import open_bundle
    from edge_bert.session import TextEncoder, make_feeds

    encoder = TextEncoder(open_bundle(spec["tokenizer_bundle"]))
    compiled = compile_ir(Path(spec["path"]), spec["threads"], spec.get("precision"))
    request = compiled.create_infer_request()
    names = [i.get_any_name() for i in compiled.inputs]
    dtypes = {name: np.dtype(np.int64) for name in names}
    rows = {}
    for length in spec["seq_lengths"]:
        encoded = _texts(length, encoder)
        feeds = make_feeds(encoded.ids, encoded.type_ids, dtypes, length)
        rows[length] = _time(request.infer, feeds, spec["warmup"], spec["runs"])
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return {"rows": rows, "inference_precision": precision}


WORKERS = {"bundle": _worker_bundle, "onnx": _worker_onnx, "torch": _worker_torch, "openvino": _worker_openvino}


def worker(spec: dict[str, Any]) -> None:
    result = WORKERS[spec["kind"]](spec)
    print(json.dumps({**result, "pid": os.getpid()}))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "worker":
        raise SystemExit(__doc__)
    worker(json.loads(sys.argv[2]))
