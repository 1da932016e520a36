"""PyTorch -> .tflite with litert-torch: one signature per static sequence length, builtin ops only.

litert-torch (0.10) converts the PyTorch module directly (no TensorFlow) but only with static shapes
(dynamic sequence lengths fail for every family), so each profile length becomes its own signature
``seq_{L}`` in one file; the weights are shared between signatures. Inputs are int32 (mobile
delegates have no int64 path) and are named by passing them as keyword samples; outputs are named
by returning a dict from the wrapper.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from edge_bert.backends.litert import LiteRtBackend, signature_name
from edge_bert.errors import ConversionError
from edge_bert.formats.base import ExportJob
from edge_bert.session import batch_feeds

#: the builtin operator code for "custom" in the TFLite schema (Flex ops are custom ops named Flex*)
_CUSTOM = 32


class NamedOutputs(nn.Module):
    """The task graph with int32 inputs in and a dict of named outputs out (names become signature keys)."""

    def __init__(self, graph: nn.Module, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.inner = graph  # not "graph": that name is taken on torch.fx GraphModules
        self.inputs = inputs
        self.outputs = outputs

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        result = self.inner(*(feeds[name].long() for name in self.inputs))
        values = result if isinstance(result, tuple) else (result,)
        return dict(zip(self.outputs, values, strict=True))


def convert_tflite(
    graph: nn.Module, inputs: tuple[str, ...], outputs: tuple[str, ...], lengths: list[int], path: Path
) -> None:
    """Write one .tflite with a ``seq_{L}`` signature per static length."""
    import litert_torch

    wrapper = NamedOutputs(graph, inputs, outputs).eval()  # eval() on the wrapper, last: else dropout may be kept
    converter = litert_torch.Converter()
    for length in lengths:
        feeds = batch_feeds([(np.zeros(length, np.int32), None)], dict.fromkeys(inputs, np.dtype(np.int32)), length)
        sample = {name: torch.from_numpy(array) for name, array in feeds.items()}
        converter.add_signature(signature_name(length), wrapper, sample_kwargs=sample)
    logging.getLogger("litert_torch").setLevel(logging.ERROR)
    # litert-torch prints its stage timings to stdout: keep stdout for edge-bert's own output (--json -)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        converter.convert().export(str(path))


def op_inventory(path: Path) -> dict[str, list[str]]:
    """Operator names in every subgraph, from the flatbuffer itself (works even when the runtime can't load it)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
    builtin, custom = set(), set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if op == _CUSTOM:
            custom.add((code.CustomCode() or b"?").decode())
        else:
            builtin.add(names.get(op, f"BUILTIN_{op}"))
    return {
        "builtin": sorted(builtin),
        "flex": sorted(n for n in custom if n.startswith("Flex")),
        "custom": sorted(n for n in custom if not n.startswith("Flex")),
    }


def opcode_names(model: Any) -> list[str]:
    """The builtin operator name of each opcode index of a flatbuffer ``schema.Model`` (op.OpcodeIndex())."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = (model.OperatorCodes(i) for i in range(model.OperatorCodesLength()))
    return [names.get(op, f"BUILTIN_{op}") for op in (max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) for c in codes)]


class Operator(NamedTuple):
    """One operator of a flatbuffer ``schema.Model``, with where it sits and its builtin name."""

    subgraph: int  # one subgraph per signature
    index: int  # position in its subgraph
    graph: Any  # the ``schema.SubGraph``: its tensor indices are the op's
    op: Any  # the ``schema.Operator``
    kind: str  # builtin name, e.g. "FULLY_CONNECTED"

    @property
    def scope(self) -> str:
        """The op's output tensor names joined as the LiteRT Quantizer's recipe regexes see them."""
        outputs = (self.graph.Tensors(self.op.Outputs(i)) for i in range(self.op.OutputsLength()))
        return "".join(tensor.Name().decode() + ";" for tensor in outputs)


def operators(model: Any) -> Iterator[Operator]:
    """Every operator of every subgraph of a flatbuffer ``schema.Model``, in order: the one walk the
    .tflite readers share (float_ops, repair_mask_scale, weighted_ops, tflite_gptq)."""
    kinds = opcode_names(model)
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for index in range(graph.OperatorsLength()):
            op = graph.Operators(index)
            yield Operator(g, index, graph, op, kinds[op.OpcodeIndex()])


class MulLayerNorm(nn.Module):
    """``nn.LayerNorm`` with its variance written as ``mean(d * d)``: the same function, but it lowers to MUL
    where ``nn.LayerNorm`` lowers to SQUARED_DIFFERENCE, which the LiteRT Quantizer leaves float in its
    integer recipes (13 float ops per MiniLM signature, the only ones inside the encoder). Measured on
    all-MiniLM-L6-v2 a16w8, 100 SST-2 texts: cosine 0.9965 / worst 0.9906 before, 0.9967 / 0.9914 after."""

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(-1, keepdim=True)
        variance = (centred * centred).mean(-1, keepdim=True)
        return centred * torch.rsqrt(variance + self.eps) * self.weight + self.bias


def integer_friendly(graph: nn.Module) -> nn.Module:
    """A copy of ``graph`` for the full-integer recipes: every ``nn.LayerNorm`` becomes a ``MulLayerNorm``."""
    import copy

    graph = copy.deepcopy(graph)
    for module in list(graph.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.LayerNorm) and child.weight is not None and len(child.normalized_shape) == 1:
                setattr(module, name, MulLayerNorm(child))
    return graph


def float_ops(path: Path) -> dict[str, int]:
    """Operators that compute in float (a float input or output), QUANTIZE/DEQUANTIZE aside, counted over
    every signature's subgraph: what an integer-only NPU delegate would hand back to the CPU."""
    from ai_edge_litert import schema_py_generated as schema

    floats = {schema.TensorType.FLOAT32, schema.TensorType.FLOAT16, schema.TensorType.FLOAT64}
    model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
    counts: dict[str, int] = {}
    for _, _, graph, op, name in operators(model):
        tensors = [op.Inputs(i) for i in range(op.InputsLength())]
        tensors += [op.Outputs(i) for i in range(op.OutputsLength())]
        if name not in ("QUANTIZE", "DEQUANTIZE") and any(
            t >= 0 and graph.Tensors(t).Type() in floats for t in tensors
        ):
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def check_builtin_ops(path: Path) -> list[str]:
    """Refuse a model that needs the Flex delegate or custom kernels: a plain LiteRT app cannot load it."""
    ops = op_inventory(path)
    if ops["flex"] or ops["custom"]:
        parts = []
        if ops["flex"]:
            parts.append(f"Select TF (Flex) ops {ops['flex']}")
        if ops["custom"]:
            parts.append(f"custom ops {ops['custom']}")
        raise ConversionError(
            f"{path.name} needs {' and '.join(parts)}; an app without the Flex delegate or those custom "
            "kernels cannot load it, so it is not shipped"
        )
    return ops["builtin"]


def golden_parity(job: ExportJob, path: Path, lengths: list[int]) -> dict[str, Any]:
    """Every golden text through every signature it fits (padded), against PyTorch (ExportJob.parity);
    the worst signature summarised."""
    backend = LiteRtBackend(path.read_bytes(), threads=2, where=str(path))
    per_signature = {signature_name(n): m for n in lengths if (m := job.parity(backend, np.int32, n))}
    worst = max(per_signature.values(), key=lambda m: (not m["finite"], m["max_abs_error"]))
    return {**worst, "signatures": per_signature}
