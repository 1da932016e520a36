"""Which LiteRT ops hurt accuracy when quantized: the LiteRT Quantizer's ``validate`` per tensor.

``Quantizer.validate`` runs the float and the quantized model on the same real token sequences with
every intermediate kept and reports the SNR of each tensor. Errors accumulate downstream, so an op
is scored by the error it *introduces*: the noise-to-signal ratio of its output minus the worst of
its activation inputs. Ops are named by their output tensor, which is also what a recipe override
matches (``get_op_scope`` joins the output names with ``;``), so a name here can be kept float.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.formats.tflite.export import operators

#: ops the dynamic/weight-only recipes quantize (they carry constant weights)
WEIGHTED_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "EMBEDDING_LOOKUP")
#: test samples per validate run: it keeps every intermediate of both models, ~2 s a sample on MiniLM
SAMPLES = 8


def short_name(tensor_name: str) -> str:
    """litert-torch names carry every module's class path; keep the last four module names for logs."""
    # fused ops carry several module names ("...LayerNorm;;...Linear_query;1"): the last is the op's own
    name = [part for part in tensor_name.split(";") if part and not part.isdigit()][-1]
    parts = [part.rsplit(".", 1)[-1] for part in name.split("/")]
    return "/".join(parts[-4:])


def keep_float_regex(tensor_name: str) -> str:
    """A recipe regex matching the op whose (single) output is ``tensor_name``, in every signature.

    litert-torch numbers a module's tensors per subgraph (``...Linear_dense;3`` in ``seq_16`` is
    ``...Linear_dense;7`` in ``seq_32``), so the number is left open; the module path stays exact.
    """
    base = re.sub(r";\d+$", "", tensor_name)
    return "^" + re.escape(base) + r"(;\d+)?;$"


def weighted_ops(model_path: Path, signature: str) -> list[dict[str, Any]]:
    """Ops with constant weights in ``signature``'s subgraph: index, type, input and output tensor names."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(Path(model_path).read_bytes(), 0)
    signatures = {
        model.SignatureDefs(i).SignatureKey().decode(): model.SignatureDefs(i).SubgraphIndex()
        for i in range(model.SignatureDefsLength())
    }
    subgraph = signatures.get(signature, 0)  # one subgraph per signature
    graph = model.Subgraphs(subgraph)

    def name(i: int) -> str:
        return graph.Tensors(i).Name().decode()

    def constant(i: int) -> bool:
        return model.Buffers(graph.Tensors(i).Buffer()).DataLength() > 0

    def weight_count(i: int) -> int:
        return int(np.prod(graph.Tensors(i).ShapeAsNumpy())) if constant(i) else 0

    ops = []
    for _, index, _, op, kind in (o for o in operators(model) if o.subgraph == subgraph):
        inputs = [i for i in op.InputsAsNumpy() if i >= 0]
        if kind in WEIGHTED_OPS and any(constant(i) for i in inputs):
            ops.append({
                "index": index,
                "type": kind,
                "outputs": [name(i) for i in op.OutputsAsNumpy()],
                "activations": [name(i) for i in inputs if not constant(i)],
                "weights": sum(weight_count(i) for i in inputs),
            })  # fmt: skip
    return ops


def rank_ops(
    quantizer: Any, fp32_path: Path, test_data: dict[str, list[dict[str, np.ndarray]]]
) -> list[tuple[str, float, int]]:
    """(output tensor name, error introduced, bytes it costs kept float) per weighted op, worst first.

    ``quantizer`` is an ``litert_quantizer.quantizer.Quantizer`` that has quantized the model under test;
    ``test_data`` holds real inputs for one signature.
    """
    from litert_quantizer.utils.validation_utils import ValidationErrorMetric

    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "preserve_all_tensors is for debugging": it is
            warnings.simplefilter("ignore", RuntimeWarning)  # its SNR squares an outlier into inf: fine
            result = quantizer.validate(
                test_data=test_data, error_metrics=[ValidationErrorMetric.SNR], use_xnnpack=True, num_threads=2
            )
    finally:
        logging.disable(logging.NOTSET)
    tensors = result.get_all_tensor_results()

    def nsr(name: str) -> float:  # AEQ's snr is a power ratio; 0 when the float tensor is all zeros
        snr = tensors.get(name, {}).get("snr", np.inf)
        return 1.0 / snr if 0 < snr < np.inf else 0.0

    scores = []
    (signature,) = test_data
    for op in weighted_ops(fp32_path, signature):
        if len(op["outputs"]) != 1 or op["outputs"][0] not in tensors:
            continue
        introduced = nsr(op["outputs"][0]) - max((nsr(t) for t in op["activations"]), default=0.0)
        scores.append((op["outputs"][0], float(introduced), 3 * op["weights"]))  # int8 -> float32 weights
    return sorted(scores, key=lambda item: -item[1])
