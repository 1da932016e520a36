"""Bundle formats and recipe kinds, described once: file name, runtime backend, converter; per recipe kind
its options, whether it is a full-integer graph or rescuable, the peak the roofline compares it with, and
the function that produces it.

Profiles (which recipe kinds and options a ``[FORMAT]`` table may hold), the runner (which backend
loads a bundle, which peak bench compares with) and the converter (which exporter writes it, which
function produces a recipe) all read this one registry, so a new format is one descriptor here plus
its modules, and a new recipe kind is one ``RecipeKind`` here plus its producer function. Runner
side: nothing here imports a runtime or torch; the modules named are imported lazily by whoever
needs them.

Recipe options are typed, one class per recipe kind, and read strictly when a profile loads
(``fuse_atention = false`` is an error naming the key, not a silently ignored typo). One name per
concept across formats: ``keep_float`` for nodes kept float (ONNX and LiteRT), ``calibration_samples``
with one default.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from edge_bert.schema import CHECK, at_least, between, each

#: real texts used to calibrate int8 activations, unless a recipe says otherwise
CALIBRATION_SAMPLES = 64


def _node_name(value: str) -> str | None:
    return None if value.strip() else "node names must not be empty"


@dataclass(frozen=True)
class RecipeOptions:
    """Options every recipe takes.

    ``required = false`` marks an attempt: it is converted, gated and reported like any recipe, but
    its refusal does not make ``convert`` exit 1 (e.g. full-int8 for NPU delegates, which most
    models do not survive).
    """

    required: bool = True


@dataclass(frozen=True)
class AttentionFusion:
    """Options of the ONNX recipes that may start from onnxruntime's fused Attention op. Not static-int8:
    its QDQ form has no Attention operator (its attention weights would stay fp32: 66 MB instead of 23 MB
    for MiniLM), so it always starts from unfused attention."""

    #: fuse attention into onnxruntime's Attention op (false: leave it as MatMul/Softmax)
    fuse_attention: bool = True


@dataclass(frozen=True)
class OnnxFloatOptions(RecipeOptions, AttentionFusion):
    pass


@dataclass(frozen=True)
class Int8Options(RecipeOptions):
    """int8 recipes that accuracy rescue can retry with single nodes kept float."""

    #: on a failed gate, keep the most sensitive nodes float and retry
    rescue: bool = True
    #: nodes (ONNX node names, LiteRT op output tensors, OpenVINO IR op names) always kept float
    keep_float: tuple[str, ...] = field(default=(), metadata={CHECK: each(_node_name)})


@dataclass(frozen=True)
class OnnxDynamicInt8Options(Int8Options, AttentionFusion):
    per_channel: bool = True
    #: 7-bit weights: avoids u8s8 saturation on CPUs without VNNI / Arm dot products
    reduce_range: bool = False
    weight_type: Literal["int8", "uint8"] = "int8"
    #: SmoothQuant migration strength (formats/onnx/smooth.py); unset: off
    smooth_alpha: float | None = field(default=None, metadata={CHECK: between(0.0, 1.0)})


@dataclass(frozen=True)
class OnnxStaticInt8Options(Int8Options):
    activation_type: Literal["uint8", "int8"] = "uint8"
    weight_type: Literal["int8", "uint8"] = "int8"
    per_channel: bool = True
    reduce_range: bool = False
    calibration_samples: int = field(default=CALIBRATION_SAMPLES, metadata={CHECK: at_least(1)})
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    op_types: tuple[str, ...] = ("MatMul", "Gemm", "Gather")


@dataclass(frozen=True)
class TfliteDynamicInt8Options(Int8Options):
    """LiteRT dynamic int8 (int8 weights, activations quantized per row on the fly by XNNPACK)."""

    #: how weights meet the int8 grid: "nearest", or "gptq" (formats/tflite/gptq.py: rounding chosen
    #: against real activations; same file size, same kernels, calibrated on ``calibration_samples`` texts)
    rounding: Literal["nearest", "gptq"] = "nearest"
    calibration_samples: int = field(default=CALIBRATION_SAMPLES, metadata={CHECK: at_least(1)})
    #: attention projections a sentence-embedding model keeps float: search ranks texts by cosine gaps
    #: smaller than int8's error there (their input, the LayerNorm output, has outlier channels that per-row
    #: int8 rounds coarsely). Classifiers are unaffected. No "query": measured, it adds nothing next to key
    #: and value (MiniLM mean cosine 0.99934 -> 0.99936) for another third of the float cost.
    embedding_float: tuple[Literal["key", "value"], ...] = ()


@dataclass(frozen=True)
class TfliteFullInt8Options(RecipeOptions):
    """Integer activations for NPU delegates. Not rescuable (no ``keep_float``): a float op breaks the
    integer graph these recipes exist for, and their error is in the activations, not single weights."""

    calibration_samples: int = field(default=CALIBRATION_SAMPLES, metadata={CHECK: at_least(1)})


@dataclass(frozen=True)
class TfliteFullInt16x8Options(TfliteFullInt8Options):
    """int16 activations, int8 weights (a16w8, TFLite's "16x8" mode): an integer graph for NPU delegates
    with 256x finer activations than full-int8; CPU kernels for it are mostly reference (slow)."""


@dataclass(frozen=True)
class OpenvinoStaticInt8Options(Int8Options):
    """NNCF post-training static int8 (``nncf.quantize``, ModelType.TRANSFORMER): int8 activations and
    weights, run by OpenVINO's CPU plugin on VNNI/AMX int8 kernels. ``keep_float`` names IR MatMuls (NNCF's
    ``ignored_scope``); the rescue ranks them by the error their quantization adds (formats/openvino/sensitivity.py)."""

    calibration_samples: int = field(default=CALIBRATION_SAMPLES, metadata={CHECK: at_least(1)})
    #: NNCF's preset: "performance" (symmetric activations) or "mixed" (asymmetric activations)
    preset: Literal["performance", "mixed"] = "mixed"
    #: NNCF's SmoothQuant strength for MatMuls (its transformer default is 0.95 when unset); negative: off
    smooth_alpha: float | None = field(default=None, metadata={CHECK: between(-1.0, 1.0)})


@dataclass(frozen=True)
class OpenvinoWeightInt8Options(RecipeOptions):
    """``nncf.compress_weights``: int8 weights of the matrix products, activations stay float."""

    mode: Literal["int8_asym", "int8_sym"] = "int8_asym"


@dataclass(frozen=True)
class OnnxOptions:
    """The ``[onnx]`` table of a profile (besides ``recipes`` and ``recipe``)."""

    opset: int = field(default=17, metadata={CHECK: at_least(13)})
    #: onnxruntime's transformer fusions, baked into the file
    optimize: bool = False
    #: also write model.ort (ONNX Runtime Mobile) with onnxruntime's own converter
    ort_format: bool = False


@dataclass(frozen=True)
class TfliteOptions:
    """The ``[tflite]`` table of a profile: one signature per static length."""

    seq_lengths: tuple[int, ...] | None = field(default=None, metadata={CHECK: each(at_least(1))})
    #: vocab.txt, ANDROID.md and tokenizer_cases.jsonl next to the model, for app developers
    app_extras: bool = False


@dataclass(frozen=True)
class OpenvinoOptions:
    """The ``[openvino]`` table of a profile: no format-wide options yet (the sequence axis stays dynamic)."""


@dataclass(frozen=True)
class RecipeKind:
    """One recipe kind of one format; everything that treats kinds differently asks this, not a list of names."""

    name: str
    format: str
    #: its typed options: what a ``[FORMAT.recipe.NAME]`` table may hold
    options: type[RecipeOptions]
    #: ``module:function`` of the host-side producer, imported lazily: it writes the kind's model file from
    #: the format's fp32 model and returns the settings used (the manifest's ``recipe.settings``)
    producer: str
    #: the probe peak bench's roofline compares it with: "int8" where the matrix products run on integers
    #: (int8 weights with int8 or int16 activations), else "fp32" (fp16 and weight-only int8 weights are
    #: widened to fp32 at load on a CPU); "bf16" where the runtime is told to compute in bfloat16
    precision: Literal["fp32", "bf16", "int8"] = "fp32"
    #: integer activations between input and output, for NPU delegates: quantized from the integer-friendly
    #: export, and the float ops left in the written file are recorded
    full_integer: bool = False

    @property
    def rescuable(self) -> bool:
        """Accuracy rescue may keep single nodes float: the options class has ``rescue`` and ``keep_float``."""
        return issubclass(self.options, Int8Options)

    def load_producer(self) -> Callable[..., dict[str, Any]]:
        """The producer function; importing it loads the format's toolchain (host side only)."""
        module, _, function = self.producer.partition(":")
        return getattr(importlib.import_module(module), function)


_ONNX = "edge_bert.formats.onnx.quantize"
_TFLITE = "edge_bert.formats.tflite.quantize"
_OPENVINO = "edge_bert.formats.openvino.quantize"

#: every recipe kind, registered once (a profile's ``[FORMAT]`` table lists them in this order)
KINDS: tuple[RecipeKind, ...] = (
    RecipeKind("fp32", "onnx", OnnxFloatOptions, f"{_ONNX}:fp32"),
    RecipeKind("fp16", "onnx", OnnxFloatOptions, f"{_ONNX}:fp16"),
    RecipeKind("dynamic-int8", "onnx", OnnxDynamicInt8Options, f"{_ONNX}:dynamic_int8", precision="int8"),
    RecipeKind("static-int8", "onnx", OnnxStaticInt8Options, f"{_ONNX}:static_int8", precision="int8"),
    RecipeKind("fp32", "tflite", RecipeOptions, f"{_TFLITE}:fp32"),
    RecipeKind("fp16", "tflite", RecipeOptions, f"{_TFLITE}:fp16"),
    RecipeKind("dynamic-int8", "tflite", TfliteDynamicInt8Options, f"{_TFLITE}:dynamic_int8", precision="int8"),
    RecipeKind("weight-only-int8", "tflite", Int8Options, f"{_TFLITE}:weight_only_int8"),
    RecipeKind(
        "full-int8", "tflite", TfliteFullInt8Options, f"{_TFLITE}:full_int8", precision="int8", full_integer=True
    ),
    RecipeKind(
        "full-int16x8",
        "tflite",
        TfliteFullInt16x8Options,
        f"{_TFLITE}:full_int16x8",
        precision="int8",
        full_integer=True,
    ),
    RecipeKind("fp32", "openvino", RecipeOptions, f"{_OPENVINO}:fp32"),
    RecipeKind("bf16", "openvino", RecipeOptions, f"{_OPENVINO}:bf16", precision="bf16"),
    RecipeKind("static-int8", "openvino", OpenvinoStaticInt8Options, f"{_OPENVINO}:static_int8", precision="int8"),
    RecipeKind("weight-int8", "openvino", OpenvinoWeightInt8Options, f"{_OPENVINO}:weight_int8"),
)


def _kinds(fmt: str) -> dict[str, RecipeKind]:
    return {kind.name: kind for kind in KINDS if kind.format == fmt}


@dataclass(frozen=True)
class FormatDescriptor:
    name: str
    model_file: str
    runtime: str
    #: ``module:Class`` of the runner backend, and the pip extra that installs its runtime
    backend: str
    runtime_extra: str
    #: ``module:Class`` of the host-side exporter, and the pip extra that installs its toolchain
    converter: str
    converter_extra: str
    options: type
    #: its recipe kinds by name
    recipes: dict[str, RecipeKind]
    #: a second file the model needs (OpenVINO IR: the weights .bin beside the .xml), read and verified
    #: through the bundle like the model file and handed to the backend as ``weights``
    weights_file: str | None = None
    #: CPU architectures (a profile's ``arch``) this format is not offered on, with the measured reason
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def model_files(self) -> tuple[str, ...]:
        """The bundle files the model is made of."""
        return (self.model_file,) if self.weights_file is None else (self.model_file, self.weights_file)


FORMATS: dict[str, FormatDescriptor] = {
    "onnx": FormatDescriptor(
        name="onnx",
        model_file="model.onnx",
        runtime="onnxruntime",
        backend="edge_bert.backends.ort:OrtBackend",
        runtime_extra="onnx",
        converter="edge_bert.formats.onnx.format:OnnxFormat",
        converter_extra="convert",
        options=OnnxOptions,
        recipes=_kinds("onnx"),
    ),
    "tflite": FormatDescriptor(
        name="tflite",
        model_file="model.tflite",
        runtime="litert",
        backend="edge_bert.backends.litert:LiteRtBackend",
        runtime_extra="litert",
        converter="edge_bert.formats.tflite.format:TfliteFormat",
        converter_extra="tflite",
        options=TfliteOptions,
        recipes=_kinds("tflite"),
    ),
    "openvino": FormatDescriptor(
        name="openvino",
        model_file="model.xml",
        weights_file="model.bin",
        runtime="openvino",
        backend="edge_bert.backends.openvino:OpenvinoBackend",
        runtime_extra="openvino",
        converter="edge_bert.formats.openvino.format:OpenvinoFormat",
        converter_extra="openvino-convert",
        options=OpenvinoOptions,
        recipes=_kinds("openvino"),
        unavailable={
            "aarch64": (
                "the only aarch64 openvino wheel on PyPI for Python 3.11 (a Raspberry Pi's) is 2023.1.0, and under "
                "emu:rpi5 it cannot read the IR openvino 2026.4 writes (BitwiseAnd from opset13)"
            )
        },
    ),
}
