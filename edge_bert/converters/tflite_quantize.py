"""LiteRT recipes with the AI Edge Quantizer: fp32, fp16, dynamic-int8, weight-only-int8, full-int8.

Every recipe keeps all ``seq_{L}`` signatures. Measured on all-MiniLM-L6-v2 (seq 128): dynamic int8
is 3.8x smaller and ~3x faster than fp32 through XNNPACK (cosine >= 0.998); fp16 and weight-only int8
only shrink the file (weights are dequantized at load); full-int8 is for NPUs and is slower on CPUs.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.backends.litert import signature_name
from edge_bert.converters.tflite_sensitivity import SAMPLES, keep_float_regex, rank_ops
from edge_bert.errors import ConversionError
from edge_bert.formats import CALIBRATION_SAMPLES
from edge_bert.profiles import Recipe
from edge_bert.session import make_feeds

Calibration = list[tuple[np.ndarray, np.ndarray]]


def quantize(
    recipe: Recipe,
    src: Path,
    dst: Path,
    inputs: tuple[str, ...],
    lengths: list[int],
    calibration: Calibration,
    sensitivity: list[tuple[str, float, int]] | None = None,
    calibrated: dict[tuple[str, int], Any] | None = None,
) -> dict[str, Any]:
    """Write ``recipe``'s model to ``dst`` from the fp32 ``src``; returns the settings used.

    ``sensitivity``: if a list is given, it is filled with (op output tensor, error introduced, bytes
    kept float) measured by AI Edge Quantizer's validate on the calibration text, worst first.
    ``calibrated``: calibration results by (kind, samples) for this ``src``, reused when given.
    """
    if recipe.kind == "fp32":
        shutil.copyfile(src, dst)
        return {"weights": "float32", "activations": "float32"}
    from ai_edge_quantizer import quantizer
    from ai_edge_quantizer import recipe as recipes
    from ai_edge_quantizer.qtyping import TFLOperationName as Op

    settings: dict[str, Any]
    samples = getattr(recipe.options, "calibration_samples", CALIBRATION_SAMPLES)
    if recipe.kind == "fp16":
        qt = quantizer.Quantizer(str(src))
        qt.add_weight_only_config(
            regex=".*", operation_name=Op.ALL_SUPPORTED, num_bits=16, algorithm_key="float_casting"
        )
        settings = {"weights": "float16", "activations": "float32", "algorithm": "float_casting"}
    elif recipe.kind == "dynamic-int8":
        qt = quantizer.Quantizer(str(src), recipes.dynamic_wi8_afp32())
        settings = {
            "weights": "int8 per-channel",
            "activations": "float32, int8 on the fly",
            "recipe": "dynamic_wi8_afp32",
        }
    elif recipe.kind == "weight-only-int8":
        qt = quantizer.Quantizer(str(src), recipes.weight_only_wi8_afp32())
        settings = {"weights": "int8", "activations": "float32", "recipe": "weight_only_wi8_afp32"}
    elif recipe.kind == "full-int8":
        qt = quantizer.Quantizer(str(src), recipes.static_wi8_ai8())
        # the static recipe leaves the vocabulary table float32 (most of the file) and quantizes the
        # outputs to int8 (apps would have to dequantize): embedding weight-only int8, outputs float
        qt.add_weight_only_config(regex=".*", operation_name=Op.EMBEDDING_LOOKUP, num_bits=8)
        qt.update_quantization_recipe(regex=".*", operation_name=Op.OUTPUT, algorithm_key="no_quantize")
        settings = {
            "weights": "int8",
            "activations": "int8 (calibrated)",
            "recipe": "static_wi8_ai8 + int8 embedding + float outputs",
            "calibration_samples": min(samples, len(calibration)),
        }
    else:
        raise ConversionError(f"unknown tflite recipe kind {recipe.kind!r}")
    keep_float = list(getattr(recipe.options, "keep_float", ()))
    for tensor in keep_float:  # accuracy rescue: these ops stay float (a later rule wins over the recipe's)
        qt.update_quantization_recipe(
            regex=keep_float_regex(tensor), operation_name=Op.ALL_SUPPORTED, algorithm_key="no_quantize"
        )
    if keep_float:
        settings["keep_float"] = keep_float
    if qt.need_calibration and not calibration:
        raise ConversionError("full-int8 needs calibration text; pass --calibration-data or golden texts")
    logging.disable(logging.WARNING)  # one root WARNING per shared buffer: noise for our users
    try:
        result = None
        if qt.need_calibration:
            cache = {} if calibrated is None else calibrated
            key = (recipe.kind, samples)
            if key not in cache:  # a rescue retries the recipe with ops kept float: same statistics
                cache[key] = qt.calibrate(calibration_data(inputs, lengths, calibration[:samples]), num_threads=2)
            result = cache[key]
        qt.quantize(result, enable_progress_report=False).export_model(str(dst), overwrite=True)
    finally:
        logging.disable(logging.NOTSET)
    if sensitivity is not None:
        sensitivity.extend(_rank(qt, src, inputs, lengths, calibration))
    return settings


def _rank(qt: Any, src: Path, inputs: tuple[str, ...], lengths: list[int], calibration: Calibration):
    """Per-op error introduced, on one signature (the shortest of >= 32 tokens: realistic and quick)."""
    length = min((n for n in lengths if n >= 32), default=max(lengths))
    test_data = calibration_data(inputs, [length], calibration[:SAMPLES])
    return rank_ops(qt, src, test_data)


def calibration_data(
    inputs: tuple[str, ...], lengths: list[int], calibration: Calibration
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Real token sequences per signature, each padded to that signature's length (longer ones truncated)."""
    dtypes = {name: np.dtype(np.int32) for name in inputs}
    data = {}
    for length in lengths:
        rows = []
        for ids, types in calibration:
            if len(ids) > length:  # keep the final [SEP], as the runner's truncation does
                ids, types = np.append(ids[: length - 1], ids[-1]), np.append(types[: length - 1], types[-1])
            rows.append(make_feeds(ids, types, dtypes, length))
        data[signature_name(length)] = rows
    return data
