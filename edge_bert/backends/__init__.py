"""Runtime backends, one module per runtime, looked up by the bundle's format.

Modules are imported lazily so a device needs only the runtime its bundles use
(onnxruntime for .onnx, ai-edge-litert for .tflite).
"""

from __future__ import annotations

import importlib

from edge_bert.backends.base import Backend
from edge_bert.errors import BundleError
from edge_bert.recipes import FORMATS


def backend_class(fmt: str) -> type[Backend]:
    """Return the backend class for a bundle format, with an install hint if its runtime is missing."""
    if fmt not in FORMATS:
        raise BundleError(f"no runtime backend for format {fmt!r}; this edge-bert runs: {sorted(FORMATS)}")
    module_name, _, class_name = FORMATS[fmt].backend.partition(":")
    extra = FORMATS[fmt].runtime_extra
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BundleError(
            f"the {fmt} runtime is not installed ({exc.name}); run: pip install 'edge-bert[{extra}]'"
        ) from exc
    return getattr(module, class_name)
