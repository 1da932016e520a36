"""ONNX Runtime Mobile's ``.ort`` format, written by onnxruntime's own converter tool.

Android apps built against the reduced-size onnxruntime-mobile package load only .ort files; the
graph optimizations are applied once here ("Fixed" style) so the phone does not redo them.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

from edge_bert.errors import ConversionError


def write_ort(onnx_path: Path, dst: Path, target_platform: str = "arm") -> None:
    """Convert ``onnx_path`` to ``dst`` (.ort) with ``onnxruntime.tools.convert_onnx_models_to_ort``."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    with tempfile.TemporaryDirectory(prefix="edge-bert-ort-") as tmp:
        src = Path(tmp) / "model.onnx"
        shutil.copyfile(onnx_path, src)
        out = Path(tmp) / "out"
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the tool prints a line per file
                convert_onnx_models_to_ort(
                    src, output_dir=out, optimization_styles=[OptimizationStyle.Fixed], target_platform=target_platform
                )
        except Exception as exc:  # the tool raises whatever onnxruntime raised for this graph
            raise ConversionError(f"onnxruntime could not convert {onnx_path.name} to .ort: {exc}") from exc
        produced = sorted(out.glob("*.ort"))
        if not produced:
            raise ConversionError(f"onnxruntime's .ort converter wrote no .ort file for {onnx_path.name}")
        shutil.copyfile(produced[0], dst)
