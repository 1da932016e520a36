"""Per-MatMul error of an NNCF int8 IR, for accuracy rescue (keep the worst MatMuls float via ``ignored_scope``).

NNCF keeps the fp32 IR's operation names and inserts FakeQuantize (and SmoothQuant's Multiply) nodes in front of a
MatMul's inputs, so both IRs can expose the same MatMul outputs. A MatMul's score is the relative squared error
(10^(-SQNR/10)) at its output, int8 IR against fp32 IR on the calibration texts, minus the largest such error
already present at its activation inputs: the error this MatMul's own quantization adds, as the ONNX rescue
ranks nodes (formats/onnx/sensitivity.py). Names are what ``nncf.IgnoredScope(names=...)`` takes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov

Feeds = dict[str, np.ndarray]
#: bytes a weight element costs kept fp32 instead of int8
FLOAT_EXTRA = 3


#: ops NNCF's quantizers are moved across (it quantizes a MatMul's input at the output of the op computing it)
_TRANSPARENT = ("FakeQuantize", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Convert", "Subtract", "Multiply")
_INT8 = ("i8", "u8")


def _quantized_matmuls(model: ov.Model, known: set[str]) -> dict[str, list[str]]:
    """MatMul name -> the fp32-IR names of the ops computing its activation inputs, for every MatMul with a
    FakeQuantize on an input path or int8 weights. The walk up an input goes through reshapes, NNCF's inserted
    nodes and weight decompression, to the op whose output is (a view of) the input: its error was there before
    this MatMul's quantizer."""
    found = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul" or op.get_friendly_name() not in known:
            continue
        sources, quantized = [], False
        for port in op.inputs():
            node = port.get_source_output().get_node()
            while node.get_input_size() and (
                node.get_friendly_name() not in known or node.get_type_name() in _TRANSPARENT
            ):
                quantized |= node.get_type_name() == "FakeQuantize"
                node = node.input(0).get_source_output().get_node()
            if node.get_type_name() == "Constant":
                quantized |= node.get_output_element_type(0).get_type_name() in _INT8
            elif node.get_type_name() != "Parameter" and node.get_friendly_name() in known:
                sources.append(node.get_friendly_name())
        if quantized:
            found[op.get_friendly_name()] = sources
    return found


def _weight_elements(model: ov.Model, name: str) -> int:
    """Elements of the constant weight feeding MatMul ``name`` in the fp32 IR (0 for activation x activation)."""
    op = next(o for o in model.get_ordered_ops() if o.get_friendly_name() == name)
    for port in op.inputs():
        node = port.get_source_output().get_node()
        while node.get_type_name() in ("Convert", "Transpose") and node.get_input_size():
            node = node.input(0).get_source_output().get_node()
        if node.get_type_name() == "Constant":
            return int(np.prod(list(node.get_output_shape(0))))
    return 0


def _outputs(path: Path, names: list[str], feeds: list[Feeds]) -> list[list[np.ndarray]]:
    """Output 0 of each named op, per feed (fp32 compute: the plugin's bf16 default would add its own error)."""
    model = ov.Core().read_model(str(path))
    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    model.add_outputs([ops[name].output(0) for name in names])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    extra = len(compiled.outputs) - len(names)
    rows = []
    for feed in feeds:
        result = request.infer(feed)
        rows.append([np.asarray(result[extra + i], np.float64) for i in range(len(names))])
    return rows


def rank_matmuls(fp32_path: Path, quantized_path: Path, feeds: list[Feeds]) -> list[tuple[str, float, int]]:
    """(MatMul name, error its quantization adds, bytes it costs kept float), worst first."""
    fp32 = ov.Core().read_model(str(fp32_path))
    known = {op.get_friendly_name() for op in fp32.get_ordered_ops()}
    matmuls = _quantized_matmuls(ov.Core().read_model(str(quantized_path)), known)
    names = sorted({*matmuls, *(s for sources in matmuls.values() for s in sources)})
    if not names:
        return []
    reference, quantized = _outputs(fp32_path, names, feeds), _outputs(quantized_path, names, feeds)
    error = {}
    for i, name in enumerate(names):
        noise = sum(float(np.sum((q[i] - r[i]) ** 2)) for q, r in zip(quantized, reference, strict=True))
        signal = sum(float(np.sum(r[i] ** 2)) for r in reference)
        error[name] = noise / signal if signal > 0 else 0.0
    ranking = [
        (name, error[name] - max((error[s] for s in sources), default=0.0), FLOAT_EXTRA * _weight_elements(fp32, name))
        for name, sources in matmuls.items()
    ]
    return sorted(ranking, key=lambda row: row[1], reverse=True)


def short_name(name: str) -> str:
    """``__module.encoder.layer.1.output.dense/aten::linear/MatMul`` -> ``encoder.layer.1.output.dense``."""
    head = name.split("/", 1)[0]
    return head.removeprefix("__module.") if "/aten::" in name else name
