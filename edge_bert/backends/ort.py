"""ONNX Runtime backend (CPU execution provider)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from edge_bert.backends.base import Backend
from edge_bert.errors import BundleError


class OrtBackend(Backend):
    runtime = "onnxruntime"

    def __init__(self, model: bytes, threads: int | None = None, where: str = "model") -> None:
        try:
            # from bytes: a model that refers to external data files fails here instead of loading them
            self._session = _session(model, threads)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise BundleError(f"{where}: onnxruntime cannot load this model: {_first_line(exc)}") from exc
        self._where = where
        self._outputs = [o.name for o in self._session.get_outputs()]
        self._run = self._session.run

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self._session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:  # zero-cost unless raised: the timed path is unchanged
            return dict(zip(self._outputs, self._run(self._outputs, feeds), strict=True))
        except Exception as exc:  # InvalidArgument, a node's allocation failure...: the bundle's model is at fault
            raise BundleError(f"{self._where}: onnxruntime failed running this model: {_first_line(exc)}") from exc

    @staticmethod
    def probe(model: bytes, threads: int | None = None) -> Callable[[], object]:
        """One run of a probe model (bench's roofline) on random inputs, with the bundle's session options."""
        session = _session(model, threads)
        rng = np.random.default_rng(0)
        feeds = {i.name: _random(rng, i.type, i.shape) for i in session.get_inputs()}
        return lambda: session.run(None, feeds)

    @staticmethod
    def versions() -> dict[str, str]:
        return {"onnxruntime": ort.__version__}


def _session(model: bytes, threads: int | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


_DTYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def _random(rng: np.random.Generator, kind: str, shape: list) -> np.ndarray:
    dtype = np.dtype(_DTYPES[kind])
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
