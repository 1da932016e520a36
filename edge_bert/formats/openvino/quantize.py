"""OpenVINO recipes: each writes an IR (``dst`` .xml + its .bin) from the fp32 IR ``src``.

bf16 is not a different file: OpenVINO's CPU plugin converts at compile time when told to compute in
bf16, so the recipe writes the fp32 weights with that precision in the IR's ``rt_info``
(backends/openvino.py reads it and compiles with it). On a CPU without bf16 units the plugin would
silently compute fp32, so the recipe is refused there with the reason (``bf16_refusal``): a gate passed
in fp32 would say nothing about bf16. int8 is NNCF's: ``nncf.quantize`` (static, transformer preset,
calibrated on real texts) and ``nncf.compress_weights`` (int8 weights only).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from edge_bert.backends.openvino import PRECISION_KEY
from edge_bert.fingerprint import fingerprint
from edge_bert.profiles import Recipe

Feeds = dict[str, np.ndarray]

#: the ISA flags (/proc/cpuinfo) under which OpenVINO's CPU plugin computes bf16: AVX512-BF16 or AMX
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


class Bf16Unavailable(RuntimeError):
    """The bf16 recipe refused on this CPU: reported as this recipe's failure, the conversion goes on."""


def bf16_refusal(machine: str, isa_flags: Iterable[str]) -> str | None:
    """Why this CPU cannot run the bf16 recipe as bf16 (None: it can). OpenVINO's CPU plugin computes bf16
    only on x86 with AVX512-BF16 or AMX; elsewhere it ignores the hint and runs fp32."""
    if machine.lower() not in ("x86_64", "amd64"):
        return f"OpenVINO computes bf16 only on x86-64 CPUs with AVX512-BF16 or AMX, and this machine is {machine}"
    if not set(BF16_FLAGS) & set(isa_flags):
        return (
            f"this CPU has neither AVX512-BF16 nor AMX (none of {list(BF16_FLAGS)} among its ISA flags), "
            "so OpenVINO would compute the bf16 recipe in fp32"
        )
    return None


def save(model: ov.Model, dst: Path) -> None:
    """Write ``dst`` (.xml) and its weights beside it (same stem, .bin), weights as they are (no fp16)."""
    ov.save_model(model, str(dst), compress_to_fp16=False)


def fp32(recipe: Recipe, src: Path, dst: Path, calibration: list[Feeds]) -> dict[str, Any]:
    save(ov.Core().read_model(str(src)), dst)
    return {"inference_precision": "f32"}


def bf16(recipe: Recipe, src: Path, dst: Path, calibration: list[Feeds]) -> dict[str, Any]:
    host = fingerprint()
    if reason := bf16_refusal(str(host["machine"]), host["isa_flags"]):  # type: ignore[arg-type]
        raise Bf16Unavailable(f"bf16 refused: {reason}")
    model = ov.Core().read_model(str(src))
    model.set_rt_info("bf16", PRECISION_KEY)
    save(model, dst)
    return {"inference_precision": "bf16", "recorded_in": "rt_info/" + "/".join(PRECISION_KEY)}


def static_int8(recipe: Recipe, src: Path, dst: Path, calibration: list[Feeds]) -> dict[str, Any]:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    options = recipe.options
    samples = calibration[: options.calibration_samples]
    advanced = None
    if options.smooth_alpha is not None:
        smooth = AdvancedSmoothQuantParameters(matmul=options.smooth_alpha)
        advanced = AdvancedQuantizationParameters(smooth_quant_alphas=smooth)
    with _quiet():
        model = nncf.quantize(
            ov.Core().read_model(str(src)),
            nncf.Dataset(samples),
            preset=nncf.QuantizationPreset(options.preset),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(samples),
            advanced_parameters=advanced,
            ignored_scope=nncf.IgnoredScope(names=list(options.keep_float)),
        )
    save(model, dst)
    return {
        "keep_float": list(options.keep_float),
        "quantizer": "nncf.quantize",
        "model_type": "transformer",
        "preset": options.preset,
        "smooth_alpha": options.smooth_alpha,
        "calibration_samples": len(samples),
        "inference_precision": "f32",
    }


def weight_int8(recipe: Recipe, src: Path, dst: Path, calibration: list[Feeds]) -> dict[str, Any]:
    import nncf

    mode = recipe.options.mode
    with _quiet():
        model = nncf.compress_weights(ov.Core().read_model(str(src)), mode=nncf.CompressWeightsMode(mode))
    save(model, dst)
    return {"quantizer": "nncf.compress_weights", "mode": mode, "inference_precision": "f32"}


class _quiet:
    """NNCF logs info per call and draws rich progress bars on ``sys.stdout``, which is edge-bert's own output
    (pure JSON with ``--json -``): its bars go to stderr instead - the third-party log, or the terminal with -v."""

    def __enter__(self) -> None:
        self._logger = logging.getLogger("nncf")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)
        self._stdout = contextlib.redirect_stdout(sys.stderr)
        self._stdout.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._stdout.__exit__(*exc)
        self._logger.setLevel(self._level)
