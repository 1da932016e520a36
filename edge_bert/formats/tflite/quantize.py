"""LiteRT recipes with the LiteRT Quantizer (formerly AI Edge Quantizer): fp32, fp16, dynamic-int8,
weight-only-int8, full-int8, full-int16x8.

Every recipe keeps all ``seq_{L}`` signatures. Measured on all-MiniLM-L6-v2 (seq 128): dynamic int8
is 3.8x smaller and ~3x faster than fp32 through XNNPACK (cosine >= 0.998); fp16 and weight-only int8
only shrink the file (weights are dequantized at load); full-int8 and full-int16x8 (int16 activations)
are for NPUs: slower on CPUs (int16 kernels are mostly reference), and their manifest settings say
which ops still compute in float. dynamic-int8 may round its weights by GPTQ first (gptq.py) and
keep ops the task needs float (``float_scopes``: an embedding model's key/value projections).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.backends.litert import signature_name
from edge_bert.errors import ConversionError
from edge_bert.formats.tflite.export import float_ops, operators
from edge_bert.formats.tflite.flatbuffer import share_quantization
from edge_bert.formats.tflite.sensitivity import SAMPLES, keep_float_regex, rank_ops
from edge_bert.profiles import Recipe
from edge_bert.recipes import CALIBRATION_SAMPLES, Int8Options, TfliteDynamicInt8Options, TfliteFullInt8Options
from edge_bert.session import make_feeds

Calibration = list[tuple[np.ndarray, np.ndarray]]

#: ops of edge-bert's own sentence-embedding head (mean pooling, L2 normalisation: tasks.py), kept float
#: after the integer encoder. Quantized, the norm saturates at its calibrated range on unseen texts
#: (measured: output norm 1.35, rel error 0.43 on MiniLM); float, it costs ~10 small ops per signature.
FLOAT_HEAD = (r".*SentenceEmbeddingGraph_inner;\d+;$", r".*_sentence_embedding_output;$")


@dataclass
class Quantization:
    """One recipe's model file to write from a fp32 ``src``: what every LiteRT producer is given."""

    recipe: Recipe
    src: Path
    dst: Path
    inputs: tuple[str, ...]
    lengths: list[int]
    calibration: Calibration
    #: filled with the per-op ranking if a list (see ``quantize``)
    sensitivity: list[tuple[str, float, int]] | None
    #: calibration results by (kind, samples) and GPTQ Hessians for this ``src``
    cache: dict[tuple[str, int], Any]
    float_scopes: tuple[str, ...]

    def float_regexes(self, keep_float: tuple[str, ...]) -> list[str]:
        """The task's float ops, then the profile's and the rescue's (``keep_float`` tensors)."""
        return [*self.float_scopes, *(keep_float_regex(tensor) for tensor in keep_float)]


def quantize(
    recipe: Recipe,
    src: Path,
    dst: Path,
    inputs: tuple[str, ...],
    lengths: list[int],
    calibration: Calibration,
    sensitivity: list[tuple[str, float, int]] | None = None,
    calibrated: dict[tuple[str, int], Any] | None = None,
    float_scopes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Write ``recipe``'s model to ``dst`` from the fp32 ``src`` with its kind's producer (``RecipeKind.producer``:
    one of the functions below); returns the settings used.

    ``float_scopes``: recipe regexes of ops the task keeps float (the format decides: embedding models'
    key/value projections, see ``TfliteDynamicInt8Options``).
    ``sensitivity``: if a list is given, it is filled with (op output tensor, error introduced, bytes
    kept float) measured by the LiteRT Quantizer's validate on the calibration text, worst first.
    ``calibrated``: calibration results by (kind, samples) for this ``src``, reused when given.
    """
    cache = {} if calibrated is None else calibrated
    job = Quantization(recipe, src, dst, inputs, lengths, calibration, sensitivity, cache, float_scopes)
    return recipe.descriptor.load_producer()(job)


def fp32(job: Quantization) -> dict[str, Any]:
    shutil.copyfile(job.src, job.dst)
    return {"weights": "float32", "activations": "float32"}


def fp16(job: Quantization) -> dict[str, Any]:
    from litert_quantizer import quantizer
    from litert_quantizer.qtyping import TFLOperationName as Op

    qt = quantizer.Quantizer(str(job.src))
    qt.add_weight_only_config(regex=".*", operation_name=Op.ALL_SUPPORTED, num_bits=16, algorithm_key="float_casting")
    return _run(job, qt, {"weights": "float16", "activations": "float32", "algorithm": "float_casting"})


def weight_only_int8(job: Quantization) -> dict[str, Any]:
    from litert_quantizer import quantizer
    from litert_quantizer import recipe as recipes

    options: Int8Options = job.recipe.options
    qt = quantizer.Quantizer(str(job.src), recipes.weight_only_wi8_afp32())
    settings = {"weights": "int8", "activations": "float32", "recipe": "weight_only_wi8_afp32"}
    return _run(job, qt, settings, options.keep_float)


def dynamic_int8(job: Quantization) -> dict[str, Any]:
    """dynamic_wi8_afp32; with ``rounding = "gptq"`` the weights are GPTQ-rounded first, into a float copy
    with int8-grid weights that is then quantized (and removed)."""
    from litert_quantizer import quantizer
    from litert_quantizer import recipe as recipes

    options: TfliteDynamicInt8Options = job.recipe.options
    samples, src, rounded = options.calibration_samples, job.src, None
    settings: dict[str, Any] = {
        "weights": "int8 per-channel",
        "activations": "float32, int8 on the fly",
        "recipe": "dynamic_wi8_afp32",
    }
    try:
        if options.rounding == "gptq":
            if not job.calibration:
                raise ConversionError("gptq rounding needs calibration text; pass --calibration-data or golden texts")
            src = rounded = job.dst.with_name(job.dst.name + ".gptq")
            regexes = job.float_regexes(options.keep_float)
            count, length = _gptq_round(
                job.src, rounded, job.inputs, job.lengths, job.calibration[:samples], regexes, job.cache
            )
            settings |= {"rounding": "gptq", "gptq_weights": count, "gptq_signature": signature_name(length)}
            settings["calibration_samples"] = min(samples, len(job.calibration))
        qt = quantizer.Quantizer(str(src), recipes.dynamic_wi8_afp32())
        return _run(job, qt, settings, options.keep_float, samples)
    finally:
        if rounded is not None:
            rounded.unlink(missing_ok=True)


def full_int8(job: Quantization) -> dict[str, Any]:
    return _full_integer(job, 8)


def full_int16x8(job: Quantization) -> dict[str, Any]:
    return _full_integer(job, 16)


def _full_integer(job: Quantization, bits: int) -> dict[str, Any]:
    """static_wi8_ai8/ai16 for NPU delegates, then the claim a delegate relies on, read back from the written
    file: which ops still compute in float."""
    from litert_quantizer import quantizer
    from litert_quantizer import recipe as recipes
    from litert_quantizer.qtyping import TFLOperationName as Op

    options: TfliteFullInt8Options = job.recipe.options
    qt = quantizer.Quantizer(str(job.src), recipes.static_wi8_ai16() if bits == 16 else recipes.static_wi8_ai8())
    # the static recipes leave the vocabulary table float32 (most of the file) and quantize the
    # outputs (apps would have to dequantize): embedding weight-only int8, outputs float
    qt.add_weight_only_config(regex=".*", operation_name=Op.EMBEDDING_LOOKUP, num_bits=8)
    qt.update_quantization_recipe(regex=".*", operation_name=Op.OUTPUT, algorithm_key="no_quantize")
    for regex in FLOAT_HEAD:
        qt.update_quantization_recipe(regex=regex, operation_name=Op.ALL_SUPPORTED, algorithm_key="no_quantize")
    settings = {
        "weights": "int8 per-channel",
        "activations": f"int{bits} (calibrated{', symmetric' if bits == 16 else ''})",
        "recipe": f"static_wi8_ai{bits} + int8 embedding + float outputs",
        "calibration_samples": min(options.calibration_samples, len(job.calibration)),
    }
    settings = _run(job, qt, settings, samples=options.calibration_samples)
    if repaired := repair_mask_scale(job.dst):
        settings["attention_mask_rescaled"] = repaired
    floats = float_ops(job.dst)
    settings["integer_graph"] = not floats
    settings["float_ops"] = floats  # op -> count over all signatures; {} = integer between I/O
    return settings


def _run(
    job: Quantization,
    qt: Any,
    settings: dict[str, Any],
    keep_float: tuple[str, ...] = (),
    samples: int = CALIBRATION_SAMPLES,
) -> dict[str, Any]:
    """What every quantizing producer ends with: ops kept float, calibration (cached), the written file, and
    the per-op ranking if asked for."""
    from litert_quantizer.qtyping import TFLOperationName as Op

    for regex in job.float_regexes(keep_float):  # the task's and the rescue's (a later rule wins over the recipe's)
        qt.update_quantization_recipe(regex=regex, operation_name=Op.ALL_SUPPORTED, algorithm_key="no_quantize")
    if job.float_scopes:
        settings["float_scopes"] = list(job.float_scopes)
    if keep_float:
        settings["keep_float"] = list(keep_float)
    if qt.need_calibration and not job.calibration:
        raise ConversionError(f"{job.recipe.kind} needs calibration text; pass --calibration-data or golden texts")
    logging.disable(logging.WARNING)  # one root WARNING per shared buffer: noise for our users
    try:
        result = None
        if qt.need_calibration:
            key = (job.recipe.kind, samples)
            if key not in job.cache:  # a rescue retries the recipe with ops kept float: same statistics
                data = calibration_data(job.inputs, job.lengths, job.calibration[:samples])
                job.cache[key] = qt.calibrate(data, num_threads=2)
            result = job.cache[key]
        qt.quantize(result, enable_progress_report=False).export_model(str(job.dst), overwrite=True)
    finally:
        logging.disable(logging.NOTSET)
    if saved := share_quantization(job.dst):  # per-row embedding scales once, not once per signature
        settings["quantization_tables_shared_bytes"] = saved
    if job.sensitivity is not None:
        job.sensitivity.extend(_rank(qt, job.src, job.inputs, job.lengths, job.calibration))
    return settings


#: a collapsed int16 attention-mask select gets this many times its consumers' (the score ADDs') largest
#: output scale: its masked value lies below every ADD's range, which saturates there (softmax weight
#: ~0), while each ADD's rescale multiplier stays < 1 (at 1.0 TFLite aborted on a small-range MobileBERT)
MASK_SCALE_FACTOR = 2.0


def repair_mask_scale(path: Path) -> int:
    """Give the attention-mask SELECT_V2 a usable int16 scale again; returns how many were repaired.

    The mask is ``where(mask, 0, finfo.min)``, a select of two constants; the quantizer calibrates it to
    a degenerate scale (3e-14: it recorded only zeros), so finfo.min dequantizes to -1e-9 and padded tokens are
    attended to. Measured on all-MiniLM-L6-v2 a16w8: cosine 0.91 (worst 0.77) before, 0.997 after.
    The scale is edited in place in the flatbuffer (inputs and output keep the same scale, as the
    kernel requires). int8 (full-int8) cannot be repaired this way: both constants round to the zero
    point there, so the stored values themselves are lost.
    """
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(path.read_bytes())
    model = schema.Model.GetRootAsModel(data, 0)
    repaired = 0
    for _, _, graph, op, kind in operators(model):
        out = graph.Tensors(op.Outputs(0)) if op.OutputsLength() else None
        if kind != "SELECT_V2" or out.Type() != schema.TensorType.INT16:
            continue
        quant = out.Quantization()
        if quant is None or quant.ScaleLength() != 1 or quant.Scale(0) > 1e-9:
            continue
        values = (graph.Tensors(op.Inputs(1)), graph.Tensors(op.Inputs(2)))
        if not all(model.Buffers(t.Buffer()).DataLength() for t in values):  # the mask: two constants
            continue
        mask = op.Outputs(0)
        consumers = [graph.Operators(c) for c in range(graph.OperatorsLength())]
        scales = [
            graph.Tensors(c.Outputs(0)).Quantization().Scale(0)
            for c in consumers
            if mask in [c.Inputs(i) for i in range(c.InputsLength())] and graph.Tensors(c.Outputs(0)).Quantization()
        ]
        if not scales:
            continue
        for tensor in (op.Inputs(1), op.Inputs(2), mask):  # numpy views into ``data``: edited in place
            graph.Tensors(tensor).Quantization().ScaleAsNumpy()[:] = MASK_SCALE_FACTOR * max(scales)
        repaired += 1
    if repaired:
        path.write_bytes(bytes(data))
    return repaired


def _gptq_round(
    src: Path,
    dst: Path,
    inputs: tuple[str, ...],
    lengths: list[int],
    calibration: Calibration,
    floats: list[str],
    cache: dict[tuple[str, int], Any],
) -> tuple[int, int]:
    """GPTQ-round ``src``'s weights, but not those of ops kept float, into ``dst``.

    Returns (weights rounded, signature length).

    The Hessians come from the longest signature, real tokens only, and are cached per ``src``: a rescue
    retry only rounds fewer weights.
    """
    from edge_bert.formats.tflite.gptq import hessians, round_weights

    length = max(lengths)
    key = ("gptq", len(calibration))
    if key not in cache:
        feeds = calibration_data(inputs, [length], calibration)[signature_name(length)]
        tokens = [min(len(ids), length) for ids, _ in calibration]
        cache[key] = hessians(src.read_bytes(), signature_name(length), feeds, tokens)
    return round_weights(src, dst, cache[key], floats), length


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
