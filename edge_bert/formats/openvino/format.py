"""OpenVINO IR: openvino.convert_model from the traced graph (parity-checked), NNCF recipes."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch

from edge_bert.backends.openvino import OpenvinoBackend
from edge_bert.errors import ConversionError
from edge_bert.formats.base import Log, ModelFormat
from edge_bert.formats.onnx.export import EXPORT_ATOL
from edge_bert.formats.openvino.quantize import save
from edge_bert.formats.openvino.sensitivity import rank_matmuls, short_name
from edge_bert.profiles import FormatSpec, Recipe, TargetProfile
from edge_bert.recipes import FORMATS
from edge_bert.session import make_feeds


class OpenvinoFormat(ModelFormat):
    descriptor = FORMATS["openvino"]
    input_dtype = "int64"
    sensitivity_method = (
        "OpenVINO intermediate outputs, NNCF int8 IR vs fp32 IR: 10^(-SQNR/10) at the MatMul output - max at its "
        "activation inputs"
    )

    @classmethod
    def static_lengths(cls, profile: TargetProfile, spec: FormatSpec) -> list[int] | None:
        """The IR keeps batch and sequence axes dynamic (the CPU plugin compiles shapes on first use)."""
        return None

    def export(self, log: Log) -> dict[str, Any]:
        job = self.job
        self._fp32 = self.fp32_path = job.work / "model_fp32.xml"
        log(f"exporting {job.loaded.arch.model_type} ({job.loaded.task}) to OpenVINO IR")
        try:
            save(self._convert(), self._fp32)
        except Exception as exc:  # the PyTorch frontend raises many types (tracing, unsupported ops)
            raise ConversionError(f"OpenVINO export failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
        metrics = job.parity(self.backend(self._fp32), np.int64)
        if not (metrics["finite"] and metrics["max_abs_error"] <= EXPORT_ATOL):
            raise ConversionError(
                f"OpenVINO export failed its parity check against PyTorch: max-abs error "
                f"{metrics['max_abs_error']:.3g} > atol {EXPORT_ATOL}"
            )
        return {"exporter": "openvino.convert_model", "atol": EXPORT_ATOL, "parity": metrics}

    def _convert(self) -> ov.Model:
        """Trace the job's graph on two real texts padded into one batch (keeps the mask path, as the ONNX
        export does); batch and sequence axes dynamic; outputs named as the task names them."""
        job, arch = self.job, self.job.loaded.arch
        order = np.argsort(job.golden.lengths)
        samples = job.golden.samples()
        tensors = arch.feeds([samples[order[-1]], samples[order[0]]], int(job.golden.lengths[order[-1]]))
        example = dict(zip(arch.inputs, tensors, strict=True))
        shapes = [(name, ov.PartialShape([-1, -1]), ov.Type.i64) for name in arch.inputs]
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            model = ov.convert_model(job.graph, example_input=example, input=shapes)
        for output, name in zip(model.outputs, job.task.outputs, strict=True):
            output.get_tensor().set_names({name})
        return model

    @staticmethod
    def backend(path: Path, threads: int = 2) -> OpenvinoBackend:
        """The runner's backend on an IR file and its weights beside it, as a bundle loads them."""
        return OpenvinoBackend(
            path.read_bytes(), threads=threads, where=str(path), weights=path.with_suffix(".bin").read_bytes()
        )

    def produce(self, recipe: Recipe, dst: Path) -> dict[str, Any]:
        feeds = self._feeds()
        return recipe.descriptor.load_producer()(recipe, self._fp32, dst, feeds)

    def sensitivity(self, recipe: Recipe, dst: Path) -> list[tuple[str, float, int]] | None:
        """Rescuable kinds (NNCF's ignored_scope): their MatMuls can be kept float one by one."""
        if not recipe.descriptor.rescuable:
            return None
        self.produce(recipe, dst)
        return rank_matmuls(self._fp32, dst, self._feeds())

    def node_label(self, node: str) -> str:
        return short_name(node)

    def runner(self, model_file: Path, threads: int = 2) -> OpenvinoBackend:
        return self.backend(model_file, threads)

    def _feeds(self) -> list[dict[str, np.ndarray]]:
        dtypes = {name: np.dtype(np.int64) for name in self.job.loaded.arch.inputs}
        return [make_feeds(ids, types, dtypes, len(ids)) for ids, types in self.job.calibration]

    def bundle_files(self, model_file: Path) -> dict[str, Path]:
        return {**super().bundle_files(model_file), self.descriptor.weights_file: model_file.with_suffix(".bin")}
