"""OpenVINO backend (CPU plugin): an IR model (.xml) and its weights (.bin), both from verified bytes.

Compiled with the settings stated, not the plugin's defaults: PERFORMANCE_HINT=LATENCY (batch 1,
one stream), INFERENCE_NUM_THREADS, and the inference precision the model's own IR asks for
(``rt_info/runtime_options/INFERENCE_PRECISION_HINT``, written by the bf16 recipe) or f32. The pin
matters: on a CPU with AMX the plugin's default is bf16, which would turn an fp32 recipe into bf16.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import openvino as ov

from edge_bert.backends.base import Backend
from edge_bert.errors import BundleError

#: where the bf16 recipe records its precision inside the IR (read by compile_model and by us)
PRECISION_KEY = ["runtime_options", "INFERENCE_PRECISION_HINT"]
_PROBE_PRECISION = ["framework", "INFERENCE_PRECISION_HINT"]


class OpenvinoBackend(Backend):
    runtime = "openvino"

    def __init__(
        self, model: bytes, threads: int | None = None, where: str = "model", weights: bytes | None = None
    ) -> None:
        try:
            self._compiled = _compile(_read(model, weights), threads)
        except Exception as exc:  # OpenVINO raises RuntimeError/Exception subclasses for bad IR
            raise BundleError(f"{where}: openvino cannot load this model: {_first_line(exc)}") from exc
        self._where = where
        self._request = self._compiled.create_infer_request()
        # a saved IR can keep a traced op's numeric tensor name next to the one export gave ("228" and
        # "span_logits"): the task's name is the non-numeric one
        self._outputs = [_output_name(o.get_any_name(), o.get_names()) for o in self._compiled.outputs]
        #: the precision the plugin computes in (``bf16`` only where the IR asked for it and the CPU has it)
        self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    @property
    def input_names(self) -> list[str]:
        return [i.get_any_name() for i in self._compiled.inputs]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            results = self._request.infer(feeds)
        except Exception as exc:  # a shape or type the model cannot take: the bundle's model is at fault
            raise BundleError(f"{self._where}: openvino failed running this model: {_first_line(exc)}") from exc
        return {name: results[i] for i, name in enumerate(self._outputs)}

    @staticmethod
    def probe(model: bytes, threads: int | None = None) -> Callable[[], object]:
        """One run of a probe model (bench's roofline; ONNX, read by OpenVINO's ONNX frontend) on random
        inputs, compiled as a bundle is."""
        probe = _read(model, None)
        # the bf16 probe asks for bf16 in its ONNX metadata, which OpenVINO reads into rt_info/framework
        if probe.has_rt_info(_PROBE_PRECISION):
            probe.set_rt_info(probe.get_rt_info(_PROBE_PRECISION).astype(str), PRECISION_KEY)
        compiled = _compile(probe, threads)
        request = compiled.create_infer_request()
        rng = np.random.default_rng(0)
        feeds = {i.get_any_name(): rng.standard_normal(list(i.get_shape())).astype(np.float32) for i in compiled.inputs}
        return lambda: request.infer(feeds)

    @staticmethod
    def versions() -> dict[str, str]:
        return {"openvino": ov.__version__.split("-")[0]}


def _read(model: bytes, weights: bytes | None) -> ov.Model:
    core = ov.Core()
    if weights is None:
        return core.read_model(model=model)
    return core.read_model(model=model, weights=ov.Tensor(np.frombuffer(weights, np.uint8).copy()))


def model_precision(model: ov.Model) -> str:
    """The inference precision the IR asks for ("bf16" from the bf16 recipe), else "f32"."""
    return model.get_rt_info(PRECISION_KEY).astype(str) if model.has_rt_info(PRECISION_KEY) else "f32"


def _compile(model: ov.Model, threads: int | None) -> ov.CompiledModel:
    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": model_precision(model)}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return ov.Core().compile_model(model, "CPU", config)


def _first_line(exc: Exception) -> str:
    """OpenVINO's reason is its message's last line (the first ones name its own source files)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return (lines or [type(exc).__name__])[-1][:300]


def _output_name(name: str, names: set[str]) -> str:
    """``name``, unless it is a tracer's numeric name and the output also has a given one (the first)."""
    given = sorted(other for other in names if not other.isdigit())
    return given[0] if name.isdigit() and given else name
