"""ONNX: torch.onnx export (parity-checked), onnxruntime transformer fusions, onnxruntime recipes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.converters.formats import Log, ModelFormat
from edge_bert.converters.onnx_export import EXPORT_ATOL, export_onnx, measure_parity
from edge_bert.converters.onnx_mobile import write_ort
from edge_bert.converters.onnx_quantize import optimize, produce
from edge_bert.profiles import FormatSpec, Recipe, TargetProfile
from edge_bert.session import make_feeds

#: fusions may reorder float sums; keep them only if the fused graph stays this close to PyTorch
FUSION_ATOL = 10 * EXPORT_ATOL
#: recipes that quantize to QDQ form, whose operator registry lacks onnxruntime's fused Attention
QDQ_KINDS = ("static-int8",)


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
        self._fp32 = job.work / "model_fp32.onnx"
        self._bases: dict[bool, tuple[Path, dict[str, Any] | None]] = {}
        log(f"exporting {job.loaded.arch.model_type} ({job.loaded.task}) to ONNX")
        opset = int(job.spec.options.get("opset", 17))
        info = export_onnx(
            job.graph,
            job.loaded.arch,
            job.task.outputs,
            job.golden,
            self._fp32,
            opset,
            job.classification,
            self._static,
        )
        info["fusions"] = self._base(fuse_attention=True)[1]
        return info

    @property
    def _static(self) -> int | None:
        return (self.seq_lengths() or [None])[0]

    def _base(self, fuse_attention: bool) -> tuple[Path, dict[str, Any] | None]:
        """The model recipes start from: fused by onnxruntime's optimizer if the profile asks and parity
        holds, else the plain export. Cached per attention setting."""
        if fuse_attention in self._bases:
            return self._bases[fuse_attention]
        job, result = self.job, (self._fp32, None)
        if job.spec.options.get("optimize", False):
            fused_path = job.work / f"model_fused{'' if fuse_attention else '_no_attention'}.onnx"
            fused = optimize(self._fp32, fused_path, job.loaded.arch, job.loaded.config, fuse_attention)
            if fused is not None:
                check = measure_parity(
                    fused_path,
                    job.golden,
                    job.loaded.arch.inputs,
                    job.task.primary_output,
                    job.classification,
                    self._static,
                )
                kept = bool(check["finite"] and check["max_abs_error"] <= FUSION_ATOL)
                info = {"ops": fused, "kept": kept, "max_abs_error": check["max_abs_error"]}
                result = (fused_path if kept else self._fp32, info)
        self._bases[fuse_attention] = result
        return result

    def write_extras(self, staging: Path) -> None:
        if self.job.spec.options.get("ort_format", False):
            write_ort(staging / self.model_file, staging / "model.ort")

    def produce(self, recipe: Recipe, dst: Path) -> dict[str, Any]:
        dtypes = {name: np.dtype(np.int64) for name in self.job.loaded.arch.inputs}
        feeds = [make_feeds(ids, types, dtypes, self._static or len(ids)) for ids, types in self.job.calibration]
        # QDQ (static) quantization has no Attention operator: start it from a graph whose attention
        # stays unfused, or its attention weights would stay fp32 (66 MB instead of 23 MB for MiniLM)
        fuse_attention = recipe.kind not in QDQ_KINDS
        base, fusions = self._base(fuse_attention)
        settings = produce(recipe, base, dst, feeds)
        return settings if fuse_attention else {**settings, "fusions": fusions}
