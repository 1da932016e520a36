"""bench's roofline: how much of what this device can do a bundle achieves.

The model's FLOPs per sequence length come from the manifest (counted from the graph at convert
time, a multiply-add = 2 FLOPs); the device's peak is measured here, through the same runtime and at
the same thread count as the bundle, on one BERT-sized GEMM - (128 x 384) . (384 x 1536), MiniLM's FFN
up-projection at 128 tokens - in fp32 and in int8, and in bf16 for OpenVINO (probe files shipped in
edge_bert/data/probes, made by scripts/make_probes.py; they are package data, never read from a bundle).
Achieved GFLOP/s = FLOPs / model p50; "% of peak" compares a recipe with the peak its kind's descriptor names
(``RecipeKind.precision``: int8 where the matrix products run on integers, bf16 for OpenVINO's bf16
recipe, fp32 otherwise). Both the probe figure and the model's are medians.
"""

from __future__ import annotations

import gzip
import statistics
import time
from importlib import resources
from typing import Any

from edge_bert.backends.base import Backend
from edge_bert.recipes import FORMATS

#: the probe GEMM's shape: (M x K) . (K x N)
M, K, N = 128, 384, 1536
PROBE_FLOPS = 2 * M * K * N
#: probe file per runtime and precision (edge_bert/data/probes)
PROBE_FILES = {
    "onnxruntime": {"fp32": "gemm-fp32.onnx", "int8": "gemm-int8.onnx"},
    "litert": {"fp32": "gemm-fp32.tflite.gz", "int8": "gemm-int8.tflite.gz"},
    "openvino": {
        "fp32": "gemm-fp32.openvino.onnx",
        "bf16": "gemm-bf16.openvino.onnx",
        "int8": "gemm-int8.openvino.onnx",
    },
}


def probe_bytes(runtime: str, precision: str) -> bytes:
    data = resources.files("edge_bert").joinpath(f"data/probes/{PROBE_FILES[runtime][precision]}").read_bytes()
    return gzip.decompress(data) if PROBE_FILES[runtime][precision].endswith(".gz") else data


def measure_peaks(backend: type[Backend], runtime: str, threads: int, warmup: int = 3, runs: int = 15) -> dict:
    """GFLOP/s of the runtime's probe GEMMs (fp32, int8, and bf16 where the runtime has a bf16 probe) through
    ``backend``'s runtime (median and best of ``runs``)."""
    peaks: dict[str, Any] = {}
    for precision in PROBE_FILES[runtime]:
        run = backend.probe(probe_bytes(runtime, precision), threads=threads)
        for _ in range(warmup):
            run()
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            run()
            samples.append(time.perf_counter() - start)
        del run  # release the probe session (and its thread pool) before the next one
        median, best = statistics.median(samples), min(samples)
        peaks[precision] = {
            "gflops_per_s": PROBE_FLOPS / median / 1e9,
            "best_gflops_per_s": PROBE_FLOPS / best / 1e9,
            "p50_ms": median * 1000,
        }
    return {"gemm": f"({M}x{K}).({K}x{N})", "flops": PROBE_FLOPS, "threads": threads, "runs": runs, **peaks}


def precision_of(fmt: str, recipe_kind: str) -> str:
    """Which peak a bundle of ``fmt``'s ``recipe_kind`` is compared with (fp32 for a kind this edge-bert lacks)."""
    kind = FORMATS[fmt].recipes.get(recipe_kind)
    return kind.precision if kind is not None else "fp32"


def achieved(flops: int | None, p50_ms: float, peak_gflops: float | None) -> dict[str, float | None]:
    """A latency row's roofline columns; all None when the bundle has no FLOPs for this length."""
    if flops is None or p50_ms <= 0:
        return {"flops": flops, "gflops_per_s": None, "pct_of_peak": None}
    gflops = flops / p50_ms / 1e6
    return {"flops": flops, "gflops_per_s": gflops, "pct_of_peak": 100 * gflops / peak_gflops if peak_gflops else None}
