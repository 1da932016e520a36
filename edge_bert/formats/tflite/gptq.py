"""GPTQ rounding (Frantar et al., 2022) of a float .tflite's FULLY_CONNECTED weights, before int8.

Per-channel int8 rounds each weight to the nearest of 255 levels; GPTQ picks the levels column by column
so that the error of the *product* with real activations stays small (each column's rounding error is
pushed onto the columns not yet rounded, through the inverse Hessian ``X^T X`` of the layer's inputs).
The result is written as float weights that lie exactly on the per-channel int8 grid the LiteRT
Quantizer's min-max recipe will compute (``scale = max|w_row| / 127``, each row's largest weight is
left untouched so the scale comes out the same), so its int8 file is GPTQ's: same size, same kernels,
zero runtime cost. The weights are edited in place in the flatbuffer, so buffers shared between
signatures (and ALBERT's shared layers: one Hessian summed over every use) stay shared.

On one layer of all-MiniLM-L6-v2 (tests/test_gptq.py) it cuts the output error on unseen SST-2 text to
0.67-0.71 of nearest rounding's; whole-model figures, with and without the float key/value projections,
are in the README ("Which gates decide"), from scripts/benchmark_neighbours.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_bert.formats.tflite.export import operators

#: int8 symmetric levels, as the LiteRT Quantizer's per-channel weights use them
QMAX = 127
#: diagonal damping, as a fraction of the mean Hessian diagonal. The paper's 1 % assumes thousands of
#: calibration tokens; with edge-bert's few hundred (FFN inputs are 1536-wide: X^T X is rank-deficient)
#: 10 % kept MiniLM's worst cosine on unseen SST-2 at 0.9984 / 0.9978 (two sets of 300; value projections
#: float) against 1 %'s 0.9972 / 0.9973
DAMPING = 0.1
#: columns rounded together before the lazy update of the rest (the paper's 128)
BLOCK = 128

Feeds = list[dict[str, np.ndarray]]


def hessians(model: bytes, signature: str, feeds: Feeds, tokens: list[int]) -> dict[int, np.ndarray]:
    """``X^T X`` of every float FULLY_CONNECTED weight's input, by weight buffer, over the real tokens.

    ``feeds`` are inputs of ``signature`` (padded to its length); ``tokens[i]`` is how many positions of
    feed i are real text, so padding never enters the statistics. The reference kernels run with every
    intermediate kept (XNNPACK would discard them).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=model,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    runner = interpreter.get_signature_runner(signature)
    subgraph = runner._subgraph_index  # the signature's subgraph: the tensor indices below are its own
    uses = [(op.activation, op.buffer) for op in fully_connected(model) if op.subgraph == subgraph]
    result: dict[int, np.ndarray] = {}
    for feed, count in zip(feeds, tokens, strict=True):
        runner(**feed)
        length = next(iter(feed.values())).shape[-1]
        for activation, buffer in uses:
            x = interpreter.get_tensor(activation, subgraph).astype(np.float64)
            x = x.reshape(-1, x.shape[-1])
            if len(x) == length:  # one row per position: the padding rows are not text
                x = x[:count]
            h = x.T @ x
            result[buffer] = result[buffer] + h if buffer in result else h
    return result


@dataclass(frozen=True)
class FullyConnected:
    """One FULLY_CONNECTED op with a constant 2-D float32 weight."""

    subgraph: int
    activation: int  # input tensor index in its subgraph
    buffer: int  # the weight's buffer (shared by signatures, and by ALBERT's layers)
    shape: tuple[int, int]  # [out, in]
    scope: str  # output names joined as the LiteRT Quantizer's recipe regexes see them


def fully_connected(model: bytes) -> list[FullyConnected]:
    from ai_edge_litert import schema_py_generated as schema

    flat = schema.Model.GetRootAsModel(model, 0)
    found = []
    for operator in operators(flat):
        graph, op = operator.graph, operator.op
        if operator.kind != "FULLY_CONNECTED" or op.InputsLength() < 2:
            continue
        weight = graph.Tensors(op.Inputs(1))
        if not (
            weight.Type() == schema.TensorType.FLOAT32
            and weight.ShapeLength() == 2
            and flat.Buffers(weight.Buffer()).DataLength() > 0
        ):
            continue
        shape = (int(weight.Shape(0)), int(weight.Shape(1)))
        found.append(FullyConnected(operator.subgraph, op.Inputs(0), weight.Buffer(), shape, operator.scope))
    return found


def round_weights(src: Path, dst: Path, hessian: dict[int, np.ndarray], skip: list[str]) -> int:
    """Write ``src`` to ``dst`` with each FULLY_CONNECTED weight GPTQ-rounded; returns how many weights.

    A weight any of whose ops matches a ``skip`` regex (ops kept float) is left as it is: rounding a
    weight that stays float would only add error.
    """
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(src.read_bytes())
    ops = fully_connected(bytes(data))
    patterns = [re.compile(p) for p in skip]
    kept = {op.buffer for op in ops if any(p.search(op.scope) for p in patterns)}
    shapes = {op.buffer: op.shape for op in ops if op.buffer not in kept and op.buffer in hessian}
    flat = schema.Model.GetRootAsModel(data, 0)
    for buffer, shape in shapes.items():
        view = flat.Buffers(buffer).DataAsNumpy().view(np.float32).reshape(shape)  # a view into ``data``
        view[:] = gptq(view.astype(np.float64), hessian[buffer]).astype(np.float32)
    dst.write_bytes(bytes(data))
    return len(shapes)


def gptq(weight: np.ndarray, hessian: np.ndarray) -> np.ndarray:
    """``weight`` [out, in] rounded to its per-row int8 grid by GPTQ; each row's largest |w| is kept.

    Columns are rounded in order of decreasing Hessian diagonal (the paper's "act-order"): BERT's few
    outlier input channels are rounded first, while the most columns are left to absorb their error.
    """
    order = np.argsort(-np.diag(hessian), kind="stable")
    restore = np.argsort(order)
    original = weight[:, order]
    w = original.copy()
    h = hessian[np.ix_(order, order)].copy()
    scale = np.maximum(np.abs(w).max(axis=1), 1e-9) / QMAX
    pinned = np.zeros_like(w, dtype=bool)  # each row's max |w|: kept exact so the quantizer's scale is the same
    pinned[np.arange(len(w)), np.abs(w).argmax(axis=1)] = True
    dead = np.diag(h) == 0  # inputs that are always zero: their weights do not matter
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h[np.diag_indices_from(h)] += DAMPING * np.mean(np.diag(h))
    inverse = np.linalg.cholesky(np.linalg.inv(h)).T  # upper Cholesky factor of H^-1, as in the paper
    columns = w.shape[1]
    for start in range(0, columns, BLOCK):
        end = min(start + BLOCK, columns)
        block = w[:, start:end].copy()
        errors = np.zeros_like(block)
        for i in range(end - start):
            column = start + i
            q = np.clip(np.rint(block[:, i] / scale), -QMAX, QMAX) * scale
            q = np.where(pinned[:, column], original[:, column], q)
            errors[:, i] = (block[:, i] - q) / inverse[column, column]
            block[:, i] = q
            block[:, i + 1 :] -= np.outer(errors[:, i], inverse[column, column + 1 : end])
        w[:, start:end] = block
        w[:, end:] -= errors @ inverse[start:end, end:]
    w[pinned] = original[pinned]
    return w[:, restore]
