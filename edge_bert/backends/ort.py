"""ONNX Runtime backend (CPU execution provider)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from edge_bert.backends.base import Backend
from edge_bert.errors import BundleError


class OrtBackend(Backend):
    runtime = "onnxruntime"

    def __init__(self, model: bytes, threads: int | None = None, where: str = "model") -> None:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            # from bytes: a model that refers to external data files fails here instead of loading them
            self._session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise BundleError(f"{where}: onnxruntime cannot load this model: {_first_line(exc)}") from exc
        self._outputs = [o.name for o in self._session.get_outputs()]

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self._session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._outputs, self._session.run(self._outputs, feeds), strict=True))

    @staticmethod
    def versions() -> dict[str, str]:
        return {"onnxruntime": ort.__version__}


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
