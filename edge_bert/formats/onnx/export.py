"""PyTorch -> ONNX, checked against PyTorch on real tokenized text before anything is written.

Each architecture's config lists the torch.onnx paths to try; the first whose outputs match the
fp32 PyTorch golden outputs within ``EXPORT_ATOL`` wins and is recorded in the manifest.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from edge_bert.backends.ort import OrtBackend
from edge_bert.convert.architectures import ArchitectureConfig
from edge_bert.convert.golden import Golden
from edge_bert.errors import ConversionError
from edge_bert.formats.base import ExportJob
from edge_bert.formats.onnx.quantize import share_weights
from edge_bert.tasks import Task

#: Max-abs difference an fp32 export may show against PyTorch (Optimum's default atol is 1e-4 to 1e-5;
#: measured here: <= 4e-7 at base size).
EXPORT_ATOL = 1e-4


def golden_parity(job: ExportJob, model_path: Path, static_length: int | None = None) -> dict[str, Any]:
    """Every golden text through an ONNX file with onnxruntime, against PyTorch (ExportJob.parity)."""
    backend = OrtBackend(Path(model_path).read_bytes(), where=str(model_path))
    return job.parity(backend, np.int64, static_length)


def export_onnx(job: ExportJob, path: Path, opset: int, static_length: int | None = None) -> dict[str, Any]:
    """Export the job's graph to ``path``; returns the exporter used and its measured parity."""
    arch = job.loaded.arch
    example = _example_inputs(job.golden, arch, static_length)
    failures = []
    for exporter in arch.exporters:
        try:
            _export(job.graph, example, arch, job.task, path, opset, exporter, static_length is None)
            model = onnx.load(str(path))
            share_weights(model)  # shared layers (ALBERT) as plain initializers the quantizers can see
            onnx.save(model, str(path))
            onnx.checker.check_model(str(path))
        except Exception as exc:  # torch.onnx raises many unrelated types; record and try the next path
            failures.append(f"{exporter}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        metrics = golden_parity(job, path, static_length)
        if metrics["finite"] and metrics["max_abs_error"] <= EXPORT_ATOL:
            return {"exporter": exporter, "opset": opset, "atol": EXPORT_ATOL, "parity": metrics}
        failures.append(f"{exporter}: max-abs error {metrics['max_abs_error']:.3g} > atol {EXPORT_ATOL}")
    raise ConversionError(f"ONNX export failed its parity check against PyTorch: {'; '.join(failures)}")


def _example_inputs(golden: Golden, arch: ArchitectureConfig, static_length: int | None) -> tuple[torch.Tensor, ...]:
    """Two real texts padded into one batch: the padding makes tracing keep the attention-mask path
    (an all-ones mask can be traced away, and then padded inputs would be silently wrong)."""
    order = np.argsort(golden.lengths)
    samples = golden.samples()
    return arch.feeds([samples[order[-1]], samples[order[0]]], static_length or int(golden.lengths[order[-1]]))


def _export(
    graph: nn.Module,
    example: tuple[torch.Tensor, ...],
    arch: ArchitectureConfig,
    task: Task,
    path: Path,
    opset: int,
    exporter: str,
    dynamic: bool,
) -> None:
    outputs = task.outputs
    kwargs: dict[str, Any] = {"input_names": list(arch.inputs), "output_names": list(outputs), "opset_version": opset}
    # batch is always dynamic; the sequence axis only when the profile does not fix the length
    if exporter == "dynamo":
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=4096)
        axes = {0: batch, 1: sequence} if dynamic else {0: batch}
        kwargs.update(dynamo=True, external_data=False, verbose=False, dynamic_shapes=tuple(axes for _ in arch.inputs))
    else:
        seq_axes = arch.input_axes(static=not dynamic)
        axes = {name: seq_axes for name in arch.inputs}
        axes.update({name: seq_axes if name in task.sequence_outputs else {0: "batch"} for name in outputs})
        kwargs.update(dynamo=False, dynamic_axes=axes)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, example, str(path), **kwargs)
