"""ONNX: torch.onnx export (parity-checked), onnxruntime transformer fusions, onnxruntime recipes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.converters.formats import Log, ModelFormat
from edge_bert.converters.onnx_export import EXPORT_ATOL, export_onnx, measure_parity
from edge_bert.converters.onnx_quantize import optimize, produce
from edge_bert.profiles import FormatSpec, Recipe, TargetProfile
from edge_bert.session import make_feeds

#: fusions may reorder float sums; keep them only if the fused graph stays this close to PyTorch
FUSION_ATOL = 10 * EXPORT_ATOL


class OnnxFormat(ModelFormat):
    name = "onnx"
    runtime = "onnxruntime"
    model_file = "model.onnx"
    input_dtype = "int64"

    @classmethod
    def static_lengths(cls, profile: TargetProfile, spec: FormatSpec) -> list[int] | None:
        """ONNX keeps the sequence axis dynamic unless the profile's shape policy is static."""
        return [max(profile.shapes.seq_lengths)] if profile.shapes.policy == "static" else None

    def export(self, log: Log) -> dict[str, Any]:
        job = self.job
        static = (self.seq_lengths() or [None])[0]
        fp32 = job.work / "model_fp32.onnx"
        log(f"exporting {job.loaded.arch.model_type} ({job.loaded.task}) to ONNX")
        opset = int(job.spec.options.get("opset", 17))
        info = export_onnx(
            job.graph, job.loaded.arch, job.task.outputs, job.golden, fp32, opset, job.classification, static
        )
        self._base, info["fusions"] = fp32, None
        if job.spec.options.get("optimize", False):
            fused_path = job.work / "model_fused.onnx"
            fused = optimize(fp32, fused_path, job.loaded.arch, job.loaded.config)
            if fused is not None:
                check = measure_parity(
                    fused_path, job.golden, job.loaded.arch.inputs, job.task.primary_output, job.classification, static
                )
                kept = bool(check["finite"] and check["max_abs_error"] <= FUSION_ATOL)
                info["fusions"] = {"ops": fused, "kept": kept, "max_abs_error": check["max_abs_error"]}
                self._base = fused_path if kept else fp32
        return info

    def produce(self, recipe: Recipe, dst: Path) -> dict[str, Any]:
        dtypes = {name: np.dtype(np.int64) for name in self.job.loaded.arch.inputs}
        static = (self.seq_lengths() or [None])[0]
        feeds = [make_feeds(ids, types, dtypes, static or len(ids)) for ids, types in self.job.calibration]
        return produce(recipe, self._base, dst, feeds)
