"""LiteRT (.tflite): litert-torch export (parity-checked, builtin ops only), LiteRT Quantizer recipes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edge_bert.backends.litert import LiteRtBackend
from edge_bert.errors import BundleError, ConversionError, ProfileError
from edge_bert.formats.base import Log, ModelFormat
from edge_bert.formats.onnx.export import EXPORT_ATOL
from edge_bert.formats.tflite.export import check_builtin_ops, convert_tflite, golden_parity, integer_friendly
from edge_bert.formats.tflite.extras import (
    android_md,
    case_texts,
    signature_details,
    write_tokenizer_cases,
    write_vocab,
)
from edge_bert.formats.tflite.mediapipe import android_section, write_mediapipe_model
from edge_bert.formats.tflite.qa_answerer import answerer_section, qa_lengths, write_qa_answerer
from edge_bert.formats.tflite.quantize import quantize
from edge_bert.formats.tflite.sensitivity import short_name
from edge_bert.profiles import FormatSpec, Recipe, TargetProfile
from edge_bert.recipes import FORMATS, TfliteDynamicInt8Options


class TfliteFormat(ModelFormat):
    descriptor = FORMATS["tflite"]
    input_dtype = "int32"
    sensitivity_method = "LiteRT Quantizer validate (SNR per tensor): NSR(op output) - max NSR(op inputs)"

    @classmethod
    def static_lengths(cls, profile: TargetProfile, spec: FormatSpec) -> list[int] | None:
        """litert-torch cannot export a dynamic sequence axis: the profile's lengths, one signature each."""
        lengths = list(spec.options.seq_lengths or [profile.shapes.max_length])
        try:
            return sorted({int(n) for n in lengths})
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"[tflite] seq_lengths must be a list of integers, not {lengths!r}") from exc

    def export(self, log: Log) -> dict[str, Any]:
        job = self.job
        lengths = self._export_lengths()
        # the golden set is truncated to the longest signature (convert.py caps max_length at it)
        fp32 = job.work / "model_fp32.tflite"
        log(f"exporting {job.loaded.arch.model_type} ({job.loaded.task}) to LiteRT, signatures {lengths}")
        ops, metrics = self._export(job.graph, fp32, lengths)
        self._base = self.fp32_path = fp32
        self._integer_base: Path | None = None  # exported when a full-integer recipe is first produced
        self._calibrated: dict[tuple[str, int], object] = {}  # calibration of the bases, per kind and samples
        self._signatures = signature_details(fp32)
        return {"exporter": "litert-torch", "atol": EXPORT_ATOL, "parity": metrics, "ops": ops}

    def _export_lengths(self) -> list[int]:
        """The profile's signatures, and BertQuestionAnswerer's 384 for a QA bundle with app extras."""
        return qa_lengths(self.job.loaded.task, self.seq_lengths() or [], bool(self.job.spec.options.app_extras))

    def _export(self, graph: object, path: Path, lengths: list[int]) -> tuple[list[str], dict[str, Any]]:
        """litert-torch export of ``graph`` to ``path``, refused unless builtin-only and within atol of PyTorch."""
        job = self.job
        try:
            convert_tflite(graph, job.loaded.arch.inputs, job.task.outputs, lengths, path)
        except Exception as exc:  # litert-torch raises many unrelated types (torch.export, MLIR lowering)
            raise ConversionError(
                f"litert-torch could not convert this model: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            ) from exc
        ops = check_builtin_ops(path)
        metrics = golden_parity(job, path, lengths)
        if not (metrics["finite"] and metrics["max_abs_error"] <= EXPORT_ATOL):
            raise ConversionError(
                f"LiteRT export failed its parity check against PyTorch: max-abs error "
                f"{metrics['max_abs_error']:.3g} > atol {EXPORT_ATOL} (worst signature); nothing written"
            )
        return ops, metrics

    def _base_for(self, recipe: Recipe) -> Path:
        """The float model ``recipe`` quantizes: the full-integer kinds get LayerNorm as MUL (MulLayerNorm)."""
        if not recipe.descriptor.full_integer:
            return self._base
        if self._integer_base is None:
            self._integer_base = self.job.work / "model_fp32_integer.tflite"
            self._export(integer_friendly(self.job.graph), self._integer_base, self._export_lengths())
        return self._integer_base

    def produce(self, recipe: Recipe, dst: Path) -> dict[str, Any]:
        job = self.job
        settings = quantize(
            recipe, self._base_for(recipe), dst, job.loaded.arch.inputs, self._export_lengths(), job.calibration,
            calibrated=self._calibrated, float_scopes=self.float_scopes(recipe),
        )  # fmt: skip
        check_builtin_ops(dst)  # the quantized ops must be builtin too
        try:  # loads and runs every signature once; a failure here ends this recipe only
            LiteRtBackend(dst.read_bytes(), threads=2, where=str(dst))
        except BundleError as exc:
            raise RuntimeError(f"the {recipe.name} model does not run: {exc}") from exc
        return settings

    def sensitivity(self, recipe: Recipe, dst: Path) -> list[tuple[str, float, int]] | None:
        """Rescuable kinds (LiteRT Quantizer recipe overrides): their ops can be kept float one by one."""
        if not recipe.descriptor.rescuable:
            return None
        job, ranking = self.job, []
        quantize(
            recipe, self._base_for(recipe), dst, job.loaded.arch.inputs, self._export_lengths(), job.calibration,
            ranking, calibrated=self._calibrated, float_scopes=self.float_scopes(recipe),
        )  # fmt: skip
        return ranking

    def float_scopes(self, recipe: Recipe) -> tuple[str, ...]:
        """Ops this task keeps float under ``recipe``: an embedding model's attention key/value projections."""
        options = recipe.options
        embedding = self.job.task.keeps_attention_float and isinstance(options, TfliteDynamicInt8Options)
        roles = options.embedding_float if embedding else ()
        names = dict(zip(("query", "key", "value"), self.job.loaded.arch.qkv_projections, strict=True))
        return tuple(rf"\.Linear_{re.escape(names[role])};" for role in roles)

    def node_label(self, node: str) -> str:
        return short_name(node)

    def manifest_fields(self) -> dict[str, Any]:
        fields = super().manifest_fields()
        # batch is fixed at 1 in every signature
        for spec in fields["inputs"]:
            spec["shape"] = [1, spec["shape"][1]]
        fields["shapes"]["signatures"] = self._signatures
        return fields

    def write_extras(self, staging: Path, recipe: Recipe) -> dict[str, Any] | None:
        if not self.job.spec.options.app_extras:
            return None
        job = self.job
        write_vocab(job.loaded.tokenizer, staging / "vocab.txt")
        texts = case_texts(job.golden.texts)
        write_tokenizer_cases(job.loaded.tokenizer, texts, job.max_length, staging / "tokenizer_cases.jsonl")
        lowercase = bool(getattr(job.loaded.tokenizer, "do_lower_case", False))
        signatures = signature_details(staging / self.model_file)
        title = staging.name[1:].rsplit(".", 2)[0]  # write_bundle stages in ".{bundle name}.{random}.tmp"
        mediapipe = write_mediapipe_model(self, staging, recipe.gates, title)
        answerer = write_qa_answerer(self, staging, title)
        guide = android_md(title, signatures, lowercase, job.max_length) + android_section(mediapipe)
        (staging / "ANDROID.md").write_text(guide + answerer_section(answerer), encoding="utf-8")
        return {"mediapipe": mediapipe, **({"qa_answerer": answerer} if answerer is not None else {})}
