"""FLOPs of the exported graph per sequence length, for bench's roofline (manifest ``flops``).

Counted from the graph as it runs: every ATen op of one batch-1 forward pass is recorded under a
dispatch mode, ops whose results never reach the graph's outputs are dropped (what an exporter's
dead-code elimination drops: BERT's pooler when the graph returns embeddings), and the matrix
products left are counted with torch.utils.flop_counter's formulas - a multiply-add is 2 FLOPs.
Element-wise ops, softmax, LayerNorm, GELU and pooling are not counted (about 1 % of a BERT encoder
at these lengths). A classifier's head and an embedding graph's pooling are counted as exported.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry
from torch.utils.weak import WeakIdKeyDictionary

from edge_bert.convert.architectures import ArchitectureConfig

#: PyTorch's CPU attention kernel, missing from flop_registry: the same formula as the flash kernel it mirrors
_FORMULAS = {
    **flop_registry,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: flop_registry[
        torch.ops.aten._scaled_dot_product_flash_attention
    ],
}
#: how the count was made, recorded with it
METHOD = "matrix products reaching the outputs, torch.utils.flop_counter formulas; multiply-add = 2 FLOPs"


class _LiveOps(TorchDispatchMode):
    """Records (flops, input tensor ids, output tensor ids) of every op; ids are serial numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[int, set[int], set[int]]] = []
        self._ids: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self._next = 0

    def serial(self, tensor: torch.Tensor) -> int:
        """A number per tensor object, never reused (a freed tensor's id() may be)."""
        if tensor not in self._ids:
            self._next += 1
            self._ids[tensor] = self._next
        return self._ids[tensor]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = _FORMULAS.get(func._overloadpacket)
        flops = int(formula(*args, **kwargs, out_val=out)) if formula else 0
        inputs = {self.serial(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        outputs = {self.serial(t) for t in tree_leaves(out) if isinstance(t, torch.Tensor)}
        self.ops.append((flops, inputs, outputs))
        return out


def count_flops(graph: nn.Module, arch: ArchitectureConfig, length: int) -> int:
    """FLOPs of one batch-1 pass of ``graph`` at ``length`` tokens (all real: mask 1 everywhere)."""
    feeds = arch.feeds([(np.full(length, 1000), None)], length)
    mode = _LiveOps()
    with torch.no_grad(), mode:
        result = graph(*feeds)
        live = {mode.serial(t) for t in tree_leaves(result) if isinstance(t, torch.Tensor)}
    total = 0
    for flops, op_inputs, op_outputs in reversed(mode.ops):
        if op_outputs & live:
            live |= op_inputs
            total += flops
    return total


def flops_by_length(graph: nn.Module, arch: ArchitectureConfig, lengths: list[int]) -> dict[str, int]:
    """The manifest's ``flops.per_seq_length``: FLOPs at each length, keyed by the length as text."""
    return {str(n): count_flops(graph, arch, n) for n in sorted(set(lengths))}
