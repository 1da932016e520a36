"""The optimum-intel peer: what ``optimum-cli export openvino`` + its default int8 quantization produce, rebuilt
with the same public OpenVINO/NNCF calls, because optimum-intel itself cannot live next to edge-bert.

Why not optimum-intel itself: optimum-intel 2.2.0 (the newest on PyPI) requires ``transformers<5.6`` and
``optimum~=2.3``; ``pip install --dry-run optimum-intel==2.2.0`` in edge-bert's venv would replace
transformers 5.25.0 by 5.5.4 and torch 2.13.0+cpu by 2.14.1 with the CUDA 13 stack (measured 2026-12-04).
So this script does what optimum-intel 2.2.0 does under the hood (read from its source,
optimum/intel/openvino/{quantization,configuration,modeling_base}.py and exporters/openvino/convert.py):

- export: the Hugging Face model (``AutoModel`` for feature extraction: output ``last_hidden_state``, the pooling
  is the user's job, as with ``OVModelForFeatureExtraction``; ``AutoModelForSequenceClassification``: ``logits``)
  through ``openvino.convert_model`` with batch and sequence axes dynamic, saved without fp16 compression;
- int8: ``OVQuantizationConfig()``'s defaults turned into ``nncf.quantize`` arguments by its ``to_nncf_dict``:
  preset MIXED (sym=False), model_type TRANSFORMER, fast_bias_correction True, overflow_fix DISABLE,
  subset_size = the calibration samples given (300 SST-2 *train* sentences, one per sample, as in
  optimum-intel's quantization example), no ignored scope;
- compile: ``{"PERFORMANCE_HINT": "LATENCY"}`` as ``OVBaseModel`` sets it, and nothing else: on a CPU with
  AVX512-BF16/AMX the plugin's default inference precision is then bf16 - that is optimum-intel's "bf16" (its fp32
  IR compiled as it ships) and the precision of the non-int8 parts of its int8 IR. Threads are pinned to the
  benchmark's count for every variant (ours and the peers').

Used by scripts/benchmark_bundles.py (``--peer-openvino``); its IRs are timed by scripts/isolated_timing.py's
``openvino`` worker.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

SST2 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sst2"
CALIBRATION_SAMPLES = 300
MAX_LENGTH = 128
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def sst2(split: str, limit: int) -> list[str]:
    """The first ``limit`` texts of an SST-2 split (header-agnostic: the label is after the last tab)."""
    lines = (SST2 / f"{split}.tsv").resolve().read_text(encoding="utf-8").splitlines()
    rows = [line.rpartition("\t") for line in lines]
    return [text.strip() for text, _, label in rows if label.strip().isdigit()][:limit]


def compile_config(threads: int, precision: str | None) -> dict[str, Any]:
    """optimum-intel's compile config (LATENCY hint only) plus the benchmark's thread count; ``precision``
    pins INFERENCE_PRECISION_HINT (None: the plugin's default, as optimum-intel leaves it)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    return config


def compile_ir(xml: Path, threads: int, precision: str | None) -> Any:
    import openvino as ov

    return ov.Core().compile_model(str(xml), "CPU", compile_config(threads, precision))


def _tokenizer(model_dir: Path) -> Any:
    import transformers

    return transformers.AutoTokenizer.from_pretrained(model_dir)


def _feeds(tokenizer: Any, text: str, names: list[str]) -> dict[str, np.ndarray]:
    encoded = tokenizer(text, return_tensors="np", truncation=True, max_length=MAX_LENGTH)
    return {name: np.asarray(encoded[name], np.int64) for name in names}


def export(model_dir: Path, task: str, out: Path) -> Path:
    """``optimum-cli export openvino --task TASK MODEL OUT`` (fp32 weights): the HF model through convert_model."""
    import openvino as ov
    import torch
    import transformers

    auto = transformers.AutoModel if task == "feature-extraction" else transformers.AutoModelForSequenceClassification
    model = auto.from_pretrained(model_dir).eval()
    tokenizer = _tokenizer(model_dir)
    names = [name for name in INPUTS if name in tokenizer.model_input_names]
    pair = ["a short text", "a somewhat longer text to pad the other one"]
    batch = tokenizer(pair, return_tensors="pt", padding=True)
    example = {name: batch[name] for name in names}
    shapes = [(name, ov.PartialShape([-1, -1]), ov.Type.i64) for name in names]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        converted = ov.convert_model(model, example_input=example, input=shapes)
    converted.outputs[0].get_tensor().set_names({"last_hidden_state" if task == "feature-extraction" else "logits"})
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(converted, str(out / "openvino_model.xml"), compress_to_fp16=False)
    return out / "openvino_model.xml"


def quantize_default_int8(model_dir: Path, fp32_xml: Path, out: Path, texts: list[str]) -> Path:
    """``OVQuantizer.quantize(ov_config=OVConfig(quantization_config=OVQuantizationConfig()),
    calibration_dataset=...)``: nncf.quantize with OVQuantizationConfig's defaults (see the module docstring)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32_xml))
    names = [i.get_any_name() for i in model.inputs]
    tokenizer = _tokenizer(model_dir)
    samples = [_feeds(tokenizer, text, names) for text in texts]
    advanced = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.DISABLE)
    quantized = nncf.quantize(
        model,
        calibration_dataset=nncf.Dataset(samples),
        mode=None,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(samples),
        fast_bias_correction=True,
        model_type=nncf.ModelType.TRANSFORMER,
        ignored_scope=nncf.IgnoredScope(),
        advanced_parameters=advanced,
    )
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out / "openvino_model.xml"), compress_to_fp16=False)
    return out / "openvino_model.xml"


def build(model_dir: Path, task: str, cache: Path, log: Any) -> dict[str, dict[str, Any]]:
    """The peer's variants (label -> IR, pinned precision), exported and quantized once into ``cache``."""
    record = cache / "peer.json"
    if record.is_file() and json.loads(record.read_text()).get("model_dir") == str(model_dir):
        log(f"reusing the optimum-intel peer in {cache}")
        return json.loads(record.read_text())["variants"]
    log(f"optimum-intel path: openvino.convert_model of {model_dir}")
    fp32 = export(model_dir, task, cache / "fp32")
    log(f"optimum-intel path: nncf.quantize (OVQuantizationConfig defaults) on {CALIBRATION_SAMPLES} SST-2 train texts")
    int8 = quantize_default_int8(model_dir, fp32, cache / "int8", sst2("train", CALIBRATION_SAMPLES))
    variants = {
        "optimum-intel fp32": {"xml": str(fp32), "precision": "f32"},
        "optimum-intel default": {"xml": str(fp32), "precision": None},
        "optimum-intel int8": {"xml": str(int8), "precision": None},
    }
    record.write_text(json.dumps({"model_dir": str(model_dir), "task": task, "variants": variants}, indent=2) + "\n")
    return variants


def embeddings(model_dir: Path, xml: Path, precision: str | None, texts: list[str], threads: int) -> np.ndarray:
    """An optimum-intel user's sentence embeddings: last_hidden_state mean-pooled over the mask, L2-normalized."""
    compiled = compile_ir(xml, threads, precision)
    names = [i.get_any_name() for i in compiled.inputs]
    tokenizer = _tokenizer(model_dir)
    request = compiled.create_infer_request()
    rows = []
    for text in texts:
        feeds = _feeds(tokenizer, text, names)
        hidden = request.infer(feeds)[0]
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        rows.append(pooled[0] / np.linalg.norm(pooled[0]))
    return np.stack(rows)


def reference_embeddings(model_dir: Path, texts: list[str]) -> np.ndarray:
    """What sentence-transformers computes for this model (mean pooling over the mask, L2 norm), in PyTorch fp32."""
    import torch
    import transformers

    tokenizer = _tokenizer(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            batch = tokenizer(text, return_tensors="pt", truncation=True, max_length=MAX_LENGTH)
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            rows.append(torch.nn.functional.normalize(pooled, dim=1)[0].numpy())
    return np.stack(rows)
