"""The optimum side of scripts/benchmark_onnx.py; runs ONLY in the separate optimum venv it creates.

Why a separate venv: optimum 2.x / optimum-onnx need transformers 4.57 and break on transformers 5,
so optimum cannot be an edge-bert dependency. This script does, with optimum's own public APIs:

(a) ``exports``: what a user would otherwise do - ``optimum-cli export onnx`` (its python API
    ``main_export``) and ORTQuantizer dynamic int8 with ``AutoQuantizationConfig.avx512_vnni`` or
    ``.avx2`` (is_static=False, optimum's default per_channel);
(b) ``checks``: load OUR bundles with ORTModelFor* (``file_name="model.onnx"``) and compare their
    outputs with a plain onnxruntime session, so optimum users can take our bundles as they are.

Input: a JSON spec (path as argv[1]); output: a JSON report written to argv[2]. It never touches the
network: HF_HUB_OFFLINE is forced and every model comes from a local directory.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

_DISTS = ("optimum", "optimum-onnx", "transformers", "torch", "onnxruntime", "onnx", "tokenizers", "numpy")


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for dist in _DISTS:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def quantization_config(isa: str) -> Any:
    """The config optimum's docs pick for this CPU; dynamic int8 with optimum's default per_channel."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    if isa == "avx512_vnni":
        return AutoQuantizationConfig.avx512_vnni(is_static=False)
    if isa == "avx2":
        return AutoQuantizationConfig.avx2(is_static=False)
    raise ValueError(f"unknown isa {isa!r}; expected avx512_vnni or avx2")


def export_and_quantize(job: dict[str, Any], isa: str) -> dict[str, Any]:
    """``optimum-cli export onnx --task TASK --library-name transformers MODEL OUT`` then ORTQuantizer."""
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTQuantizer

    out = Path(job["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # library_name="transformers": the MiniLM dir carries sentence-transformers files, from which optimum
    # would infer the sentence_transformers library and require that package; the plain transformers
    # export is what ORTModelForFeatureExtraction serves (last_hidden_state; pooling is the user's job).
    main_export(
        job["model_dir"],
        out,
        task=job["task"],
        library_name="transformers",
        local_files_only=True,
        do_validation=True,
    )
    export_s = time.perf_counter() - start
    config = quantization_config(isa)
    start = time.perf_counter()
    quantizer = ORTQuantizer.from_pretrained(out, file_name="model.onnx")
    quantized = quantizer.quantize(quantization_config=config, save_dir=out)
    files = sorted(p.name for p in out.glob("*.onnx"))
    int8 = out / "model_quantized.onnx"
    return {
        "name": job["name"],
        "task": job["task"],
        "fp32": str(out / "model.onnx"),
        "int8": str(int8) if int8.is_file() else None,
        "onnx_files": files,
        "quantizer_returned": str(quantized),
        "quantization": {
            "isa": isa,
            "is_static": config.is_static,
            "per_channel": config.per_channel,
            "reduce_range": config.reduce_range,
            "weights_dtype": str(config.weights_dtype),
            "activations_dtype": str(config.activations_dtype),
            "mode": str(config.mode),
            "operators_to_quantize": list(config.operators_to_quantize),
        },
        "seconds": {"export": export_s, "quantize": time.perf_counter() - start},
    }


def _ort_direct(model_path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def check_bundle(job: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """Load one of our bundles as optimum would and compare with onnxruntime run directly."""
    from optimum.onnxruntime import (
        ORTModelForCustomTasks,
        ORTModelForFeatureExtraction,
        ORTModelForSequenceClassification,
    )
    from transformers import AutoTokenizer

    bundle = Path(job["bundle"])
    result: dict[str, Any] = {"bundle": str(bundle), "task": job["task"], "loaded": False, "outputs": {}}
    tokenizer = AutoTokenizer.from_pretrained(bundle)
    expected = job.get("expected_ids") or []
    result["tokenizer_ids_match"] = (
        all(tokenizer(t)["input_ids"] == ids for t, ids in zip(texts, expected, strict=False)) if expected else None
    )
    session = _ort_direct(bundle / "model.onnx")
    input_names = [i.name for i in session.get_inputs()]
    output_names = [o.name for o in session.get_outputs()]
    result["graph"] = {"inputs": input_names, "outputs": output_names}

    if job["task"] == "text-classification":
        models = {"logits": (ORTModelForSequenceClassification, "logits")}
    else:
        # ORTModelForFeatureExtraction exposes only last_hidden_state; optimum's way to reach any other
        # named output (our sentence_embedding) is ORTModelForCustomTasks.
        models = {
            "last_hidden_state": (ORTModelForFeatureExtraction, "last_hidden_state"),
            "sentence_embedding": (ORTModelForCustomTasks, "sentence_embedding"),
        }
    for output, (cls, attr) in models.items():
        entry: dict[str, Any] = {"class": cls.__name__}
        try:
            model = cls.from_pretrained(bundle, file_name="model.onnx", local_files_only=True)
        except Exception as exc:  # report exactly why optimum refuses the bundle
            entry.update(loaded=False, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(-3))
            result["outputs"][output] = entry
            continue
        diffs = []
        for text in texts:
            enc = tokenizer(text, return_tensors="np")
            feeds = {name: np.asarray(enc[name], np.int64) for name in input_names}
            direct = dict(zip(output_names, session.run(output_names, feeds), strict=True))[output]
            via = getattr(model(**feeds), attr)
            via = via.numpy() if hasattr(via, "numpy") else np.asarray(via)
            if via.shape != direct.shape:
                raise ValueError(f"{cls.__name__}.{attr}: shape {via.shape} differs from onnxruntime {direct.shape}")
            diffs.append(float(np.max(np.abs(via.astype(np.float64) - direct.astype(np.float64)))))
        entry.update(loaded=True, texts=len(texts), max_abs_diff=max(diffs))
        result["outputs"][output] = entry
    result["loaded"] = all(e.get("loaded") for e in result["outputs"].values())
    return result


def main(spec_path: str, report_path: str) -> int:
    # before any transformers/optimum import (all are lazy, inside the functions above)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    report: dict[str, Any] = {"versions": versions(), "exports": [], "checks": [], "errors": []}
    for job in spec.get("exports", []):
        try:
            report["exports"].append(export_and_quantize(job, spec["isa"]))
        except Exception as exc:
            report["errors"].append({"export": job["name"], "error": f"{type(exc).__name__}: {exc}"})
            traceback.print_exc()
    for job in spec.get("checks", []):
        try:
            report["checks"].append(check_bundle(job, spec.get("texts", [])))
        except Exception as exc:
            report["errors"].append({"check": job["bundle"], "error": f"{type(exc).__name__}: {exc}"})
            traceback.print_exc()
    Path(report_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: optimum_peer.py SPEC.json REPORT.json (run by scripts/benchmark_onnx.py)")
    sys.exit(main(sys.argv[1], sys.argv[2]))
