"""ONNX recipes, all with onnxruntime's own tools: transformer fusions, dynamic/static int8, fp16.

Why the options exist (see targets/*.toml): without VNNI (AVX2) or Arm dot products, u8s8 int8
GEMMs can saturate, so those profiles set ``reduce_range`` (onnxruntime #5849, #6004); per-channel
weight scales fix most of the drift ORT's per-tensor default shows on MiniLM (cosine 0.958 -> 0.991
measured); static int8 with int8 activations (S8S8) ran 4x slower than U8S8 on a CPU without VNNI.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from edge_bert.convert.architectures import ArchitectureConfig
from edge_bert.formats.onnx.smooth import smooth
from edge_bert.profiles import Recipe
from edge_bert.recipes import CALIBRATION_SAMPLES

_QUANT_TYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
_CALIBRATION = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
#: optimizer output carries fused ops whose weights have no inferred type; tell the quantizer they are float
_EXTRA = {"DefaultTensorType": onnx.TensorProto.FLOAT}

Feeds = dict[str, np.ndarray]


def optimize(
    src: Path, dst: Path, arch: ArchitectureConfig, config: Any, fuse_attention: bool = True
) -> dict[str, int] | None:
    """Apply onnxruntime's transformer fusions; returns the fused-op counts, or None if not applicable."""
    if arch.ort_optimizer_type is None:
        return None
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.onnx_model import OnnxModel
    from onnxruntime.transformers.optimizer import optimize_model

    exported = OnnxModel(onnx.load(str(src)))
    _attention_branch_first(exported)
    options = FusionOptions(arch.ort_optimizer_type)
    options.enable_attention = fuse_attention
    model = optimize_model(
        exported.model,
        model_type=arch.ort_optimizer_type,
        num_heads=int(getattr(config, arch.heads_attr, 0)),
        hidden_size=int(getattr(config, arch.hidden_attr, 0)),
        optimization_options=options,
        opt_level=0,
    )
    fused = {op: n for op, n in model.get_fused_operator_statistics().items() if n}
    share_weights(model.model)  # each fused Attention gets its own copy of the packed QKV weight
    model.save_model_to_file(str(dst))
    return fused


def share_weights(model: onnx.ModelProto) -> int:
    """Make every use of a repeated weight read one plain initializer; returns how many copies were dropped.

    ALBERT's layers share one set of weights. The TorchScript export reaches the shared tensor through
    Identity nodes, which quantize_dynamic does not look through (it left those MatMuls float: 40 MB int8
    for ALBERT-base), and onnxruntime's Attention fusion packs a new QKV initializer per layer (the fused
    fp32 file grew from 44 to 122 MB). Identity nodes are dropped and initializers with equal bytes are
    merged (exact, so a no-op for models without repeated weights); the quantizers then quantize a shared
    weight once.
    """
    from onnxruntime.transformers.fusion_utils import FusionUtils
    from onnxruntime.transformers.onnx_model import OnnxModel

    wrapped = OnnxModel(model)
    FusionUtils(wrapped).remove_identity_nodes()
    graph = model.graph
    boundary = {value.name for value in [*graph.input, *graph.output]}
    first: dict[tuple[int, tuple[int, ...], str], str] = {}
    duplicates = []
    for tensor in graph.initializer:
        if tensor.name in boundary:
            continue
        digest = hashlib.sha256(numpy_helper.to_array(tensor).tobytes()).hexdigest()
        kept = first.setdefault((tensor.data_type, tuple(tensor.dims), digest), tensor.name)
        if kept != tensor.name:
            wrapped.replace_input_of_all_nodes(tensor.name, kept)
            duplicates.append(tensor)
    for tensor in duplicates:
        graph.initializer.remove(tensor)
    return len(duplicates)


#: the attention block's output as onnxruntime's Attention fusion matches it, below the output-dense bias Add
_ATTENTION_OUTPUT = (["MatMul", "Reshape", "Transpose", "MatMul"], [None, 0, 0, 0])


def _attention_branch_first(model: Any) -> None:
    """Put the attention branch first in each residual Add before a LayerNorm, as BERT's code does.

    onnxruntime's Attention fusion follows the *first* Add parent of that residual Add. ALBERT writes
    ``LayerNorm(hidden + attention)``, and before layer 0 ``hidden`` is itself an Add (the embedding
    projection's bias), so layer 0 stayed unfused and kept its own Q/K/V weights (11 of 12 Attention fused
    on ALBERT-base). Swapping the operands of an Add is exact.
    """
    producer = model.output_name_to_node()

    def is_attention(name: str) -> bool:
        node = producer.get(name)
        if node is None or node.op_type != "Add":
            return False
        return model.match_parent_path(node, *_ATTENTION_OUTPUT, producer) is not None

    for norm in model.get_nodes_by_op_type("LayerNormalization"):
        add = producer.get(norm.input[0])
        if add is not None and add.op_type == "Add" and is_attention(add.input[1]) and not is_attention(add.input[0]):
            add.input[0], add.input[1] = add.input[1], add.input[0]


class _Reader(CalibrationDataReader):
    def __init__(self, feeds: list[Feeds]) -> None:
        self._iter = iter(feeds)

    def get_next(self) -> Feeds | None:
        return next(self._iter, None)


def calibration_reader(feeds: list[Feeds]) -> CalibrationDataReader:
    """onnxruntime's reader interface over a list of feeds (one pass)."""
    return _Reader(feeds)


def _kept_float(recipe: Recipe) -> list[str]:
    """Nodes left in float (onnxruntime's ``nodes_to_exclude``): the profile's ``keep_float`` plus, on a
    rescue retry, the nodes accuracy rescue chose (it extends the same option)."""
    return list(dict.fromkeys(recipe.options.keep_float))


def fp32(recipe: Recipe, src: Path, dst: Path, calibration: list[Feeds]) -> dict[str, Any]:
    shutil.copyfile(src, dst)
    return {}


def dynamic_int8(recipe: Recipe, src: Path, dst: Path, calibration: list[Feeds]) -> dict[str, Any]:
    options = recipe.options
    settings = {
        "per_channel": options.per_channel,
        "reduce_range": options.reduce_range,
        "weight_type": options.weight_type,
        "keep_float": _kept_float(recipe),
    }
    if options.smooth_alpha is not None:
        smoothed = dst.with_name(f"smoothed-{dst.name}")
        samples = calibration[:CALIBRATION_SAMPLES]
        nodes = smooth(src, smoothed, samples, options.smooth_alpha)
        settings["smoothquant"] = {"alpha": options.smooth_alpha, "nodes": nodes, "calibration_samples": len(samples)}
        src = smoothed
    quantize_dynamic(
        src,
        dst,
        per_channel=options.per_channel,
        reduce_range=options.reduce_range,
        weight_type=_QUANT_TYPES[options.weight_type],
        nodes_to_exclude=settings["keep_float"] or None,
        extra_options=_EXTRA,
    )
    if options.smooth_alpha is not None:
        src.unlink()
    return settings


def static_int8(recipe: Recipe, src: Path, dst: Path, calibration: list[Feeds]) -> dict[str, Any]:
    options = recipe.options
    samples = calibration[: options.calibration_samples]
    settings = {
        "format": "QDQ",
        "activation_type": options.activation_type,
        "weight_type": options.weight_type,
        "per_channel": options.per_channel,
        "reduce_range": options.reduce_range,
        "op_types": list(options.op_types),
        "calibration_method": options.calibration_method,
        "calibration_samples": len(samples),
        "keep_float": _kept_float(recipe),
    }
    quantize_static(
        src,
        dst,
        _Reader(samples),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=settings["op_types"],
        per_channel=settings["per_channel"],
        reduce_range=settings["reduce_range"],
        activation_type=_QUANT_TYPES[options.activation_type],
        weight_type=_QUANT_TYPES[options.weight_type],
        calibrate_method=_CALIBRATION[options.calibration_method],
        nodes_to_exclude=settings["keep_float"] or None,
        # float biases: int32 bias quantization fails on fused LayerNorm/Gemm graphs ("Unable to get valid
        # quantization scale ... when quantizing bias") and buys nothing on CPU
        extra_options={**_EXTRA, "QuantizeBias": False},
    )
    return settings


def fp16(recipe: Recipe, src: Path, dst: Path, calibration: list[Feeds]) -> dict[str, Any]:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return {"keep_io_types": True}


def produce(recipe: Recipe, src: Path, dst: Path, calibration: list[Feeds]) -> dict[str, Any]:
    """Write ``recipe``'s model made from the fp32 model ``src`` to ``dst``; returns the settings used.

    Its kind's producer (``RecipeKind.producer``: one of the functions above) does the work."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a warning per fused tensor it skips
    try:
        return recipe.descriptor.load_producer()(recipe, src, dst, calibration)
    finally:
        root.setLevel(level)
