"""Which ONNX nodes hurt accuracy when quantized, measured with onnxruntime's qdq_loss_debug tools.

Dynamic and QDQ quantization keep every fp32 node's output tensor name (the last Mul of
DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul, QAttention and the QDQ node itself write it),
so the fp32 and the quantized graph can expose the same intermediates and be compared by name on
real calibration text. Errors accumulate downstream, so a node is scored by the noise it *adds*:
relative noise power at its output (10^(-SQNR/10)) minus the worst at its inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization.qdq_loss_debug import (
    collect_activations,
    compute_signal_to_quantization_noice_ratio,
    modify_model_output_intermediate_tensors,
)

from edge_bert.formats.onnx.quantize import Feeds, calibration_reader

#: node types the recipes quantize
QUANT_OPS = ("MatMul", "Gemm", "Attention", "EmbedLayerNormalization", "Gather")
#: calibration sequences used for the measurement (each runs through both graphs with every output kept)
SAMPLES = 12


def float_tensors(model_path: Path) -> set[str]:
    """Float tensors of the fp32 graph. onnx's own shape inference, which modify_model_output_
    intermediate_tensors relies on, stops at onnxruntime's fused contrib ops; its symbolic one does not."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = SymbolicShapeInference.infer_shapes(onnx.load(str(model_path)), auto_merge=True)
    typed = list(model.graph.value_info) + list(model.graph.output)
    return {v.name for v in typed if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}


def _activations(model_path: Path, names: set[str], work: Path, feeds: list[Feeds]) -> dict[str, list[np.ndarray]]:
    """Every float intermediate of ``model_path`` on ``feeds`` (typed explicitly so the tool exposes them)."""
    model = onnx.load(str(model_path))
    typed = {v.name for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    produced = {out for node in model.graph.node for out in node.output}
    for name in sorted((names & produced) - typed):
        model.graph.value_info.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    augmented = work / f"sensitivity-{model_path.stem}.onnx"
    onnx.save(model, str(augmented))
    modify_model_output_intermediate_tensors(str(augmented), str(augmented))
    try:
        return collect_activations(str(augmented), calibration_reader(feeds))
    finally:
        augmented.unlink(missing_ok=True)


def _quantized_outputs(model: onnx.ModelProto, fp32_types: dict[str, str]) -> set[str]:
    """Outputs of nodes the quantizer changed: replaced by another op, or now fed by DequantizeLinear."""
    producers = {out: node for node in model.graph.node for out in node.output}
    changed = set()
    for out, op_type in fp32_types.items():
        node = producers.get(out)
        if node is None:
            continue
        if node.op_type != op_type or any(
            producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in node.input
        ):
            changed.add(out)
    return changed


def rank_nodes(fp32_path: Path, quantized_path: Path, feeds: list[Feeds], work: Path) -> list[tuple[str, float, int]]:
    """(node name, noise it adds, bytes it costs kept float) per quantized node, worst first; names
    fit ``nodes_to_exclude``."""
    fp32 = onnx.load(str(fp32_path))
    names = float_tensors(fp32_path)
    feeds = feeds[:SAMPLES]
    reference = _activations(fp32_path, names, work, feeds)
    quantized = _activations(quantized_path, names, work, feeds)
    candidates = [node for node in fp32.graph.node if node.op_type in QUANT_OPS and node.output[0] in reference]
    changed = _quantized_outputs(onnx.load(str(quantized_path)), {n.output[0]: n.op_type for n in candidates})

    def noise(tensor: str) -> float:
        if tensor not in reference or tensor not in quantized:
            return 0.0
        flat = [a.ravel() for a in reference[tensor]], [a.ravel() for a in quantized[tensor]]
        return 10 ** (-compute_signal_to_quantization_noice_ratio(*flat) / 10)

    weights = {init.name: int(np.prod(init.dims)) for init in fp32.graph.initializer}
    scores = []
    for node in candidates:
        if node.output[0] in changed:
            added = noise(node.output[0]) - max((noise(i) for i in node.input), default=0.0)
            # kept float, a node's int8 weights grow 4x: 3 more bytes per weight
            extra = 3 * sum(weights.get(i, 0) for i in node.input if weights.get(i, 0) > 1024)
            scores.append((node.name, float(added), extra))
    return sorted(scores, key=lambda item: -item[1])
