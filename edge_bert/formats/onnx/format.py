"""ONNX: torch.onnx export (parity-checked), onnxruntime transformer fusions, onnxruntime recipes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.formats.base import Log, ModelFormat
from edge_bert.formats.onnx.export import EXPORT_ATOL, export_onnx, golden_parity
from edge_bert.formats.onnx.mobile import write_ort
from edge_bert.formats.onnx.quantize import optimize, produce
from edge_bert.formats.onnx.sensitivity import rank_nodes
from edge_bert.profiles import FormatSpec, Recipe, TargetProfile
from edge_bert.recipes import FORMATS, AttentionFusion
from edge_bert.session import make_feeds

#: fusions may reorder float sums; keep them only if the fused graph stays this close to PyTorch
FUSION_ATOL = 10 * EXPORT_ATOL


class OnnxFormat(ModelFormat):
    descriptor = FORMATS["onnx"]
    input_dtype = "int64"
    sensitivity_method = "onnxruntime qdq_loss_debug activations: 10^(-SQNR/10) at node output - max at its inputs"

    @classmethod
    def static_lengths(cls, profile: TargetProfile, spec: FormatSpec) -> list[int] | None:
        """ONNX keeps the sequence axis dynamic unless the profile's shape policy is static."""
        return [max(profile.shapes.seq_lengths)] if profile.shapes.policy == "static" else None

    def export(self, log: Log) -> dict[str, Any]:
        job = self.job
        self._fp32 = self.fp32_path = job.work / "model_fp32.onnx"
        self._bases: dict[bool, tuple[Path, dict[str, Any] | None]] = {}
        log(f"exporting {job.loaded.arch.model_type} ({job.loaded.task}) to ONNX")
        info = export_onnx(job, self._fp32, job.spec.options.opset, self._static)
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
        if job.spec.options.optimize:
            fused_path = job.work / f"model_fused{'' if fuse_attention else '_no_attention'}.onnx"
            fused = optimize(self._fp32, fused_path, job.loaded.arch, job.loaded.config, fuse_attention)
            if fused is not None:
                check = golden_parity(job, fused_path, self._static)
                kept = bool(check["finite"] and check["max_abs_error"] <= FUSION_ATOL)
                info = {"ops": fused, "kept": kept, "max_abs_error": check["max_abs_error"]}
                result = (fused_path if kept else self._fp32, info)
        self._bases[fuse_attention] = result
        return result

    def write_extras(self, staging: Path, recipe: Recipe) -> None:
        if self.job.spec.options.ort_format:
            write_ort(staging / self.model_file, staging / "model.ort")

    def _feeds(self) -> list[dict[str, np.ndarray]]:
        dtypes = {name: np.dtype(np.int64) for name in self.job.loaded.arch.inputs}
        return [make_feeds(ids, types, dtypes, self._static or len(ids)) for ids, types in self.job.calibration]

    def produce(self, recipe: Recipe, dst: Path) -> dict[str, Any]:
        fuse_attention = self._fuses_attention(recipe)
        base, fusions = self._base(fuse_attention)
        settings = produce(recipe, base, dst, self._feeds())
        return settings if fuse_attention else {**settings, "fusions": fusions}

    @staticmethod
    def _fuses_attention(recipe: Recipe) -> bool:
        """Attention is fused (QAttention in int8) if the recipe's options allow it (``AttentionFusion``: not QDQ
        static-int8) and it does not say ``fuse_attention = false``."""
        return isinstance(recipe.options, AttentionFusion) and recipe.options.fuse_attention

    def sensitivity(self, recipe: Recipe, dst: Path) -> list[tuple[str, float, int]] | None:
        """Rescuable kinds (onnxruntime's nodes_to_exclude): their nodes can be kept float one by one."""
        if not recipe.descriptor.rescuable:
            return None
        self.produce(recipe, dst)
        base, _ = self._base(self._fuses_attention(recipe))
        return rank_nodes(base, dst, self._feeds(), self.job.work)
