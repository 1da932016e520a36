"""LiteRT backend (ai-edge-litert, or tflite_runtime on older Raspberry Pi OS images), XNNPACK on.

A .tflite bundle holds one signature per static sequence length (``seq_32``, ``seq_64`` ...). The
session pads each text to the smallest length that fits, and run() dispatches on that length.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from edge_bert.backends.base import Backend
from edge_bert.errors import BundleError
from edge_bert.limits import usable_cpus

try:
    from ai_edge_litert.interpreter import Interpreter

    _DIST = "ai-edge-litert"
except ImportError:  # older Raspberry Pi OS images only ship tflite-runtime
    from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]

    _DIST = "tflite-runtime"


def signature_name(length: int) -> str:
    """The signature key for one static sequence length: the contract between converter and runner."""
    return f"seq_{length}"


class LiteRtBackend(Backend):
    runtime = "litert"

    def __init__(self, model: bytes, threads: int | None = None, where: str = "model") -> None:
        # num_threads=None would mean 1 thread in the interpreter; default to the CPU count like onnxruntime.
        # The default op resolver applies XNNPACK (7-15x faster than the reference kernels here).
        self._where = where
        try:
            with _without_delegate_banner():
                self._model = model  # the interpreter reads from this buffer for its whole life
                self._interpreter = Interpreter(model_content=model, num_threads=threads or usable_cpus())
                self._runners = self._load_signatures()
        except Exception as exc:  # RuntimeError/ValueError for bad files and for ops this runtime lacks
            raise BundleError(f"{where}: LiteRT cannot load this model: {str(exc).strip()[:300]}") from exc

    def _load_signatures(self) -> dict[int, Any]:
        signatures = self._interpreter.get_signature_list()
        if not signatures:
            raise ValueError("the model has no signatures; convert it again with edge-bert")
        runners = {}
        for key, spec in signatures.items():
            runner = self._interpreter.get_signature_runner(key)
            runners[int(runner.get_input_details()[spec["inputs"][0]]["shape"][1])] = runner
            self._inputs = list(spec["inputs"])
        # XNNPACK sets a subgraph up on its first invoke (65 ms vs 3 ms steady for seq_32 measured): pay it
        # here, in the load that bench times as cold start, not in the first request. This is also where
        # a model with Flex or custom ops fails ("Node number 59 (FlexErf) failed to prepare").
        for length, runner in runners.items():
            runner(**{name: _warmup_input(name, length) for name in self._inputs})
        return runners

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def seq_lengths(self) -> list[int]:
        return sorted(self._runners)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        length = next(iter(feeds.values())).shape[1]
        runner = self._runners.get(length)
        if runner is None:
            raise BundleError(f"no signature for {length} tokens; the model has {self.seq_lengths}")
        # session feeds are int32 already (make_feeds builds them in the manifest's dtype): converted only if not
        try:
            return runner(
                **{name: v if v.dtype == np.int32 else np.ascontiguousarray(v, np.int32) for name, v in feeds.items()}
            )
        except Exception as exc:  # a kernel error or a failed allocation: the bundle's model is at fault
            message = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise BundleError(f"{self._where}: LiteRT failed running this model: {message}") from exc

    @staticmethod
    def probe(model: bytes, threads: int | None = None) -> Callable[[], object]:
        """One run of a probe model (bench's roofline) on random inputs, XNNPACK at the bundle's thread count."""
        interpreter = Interpreter(model_content=model, num_threads=threads or usable_cpus())
        runner = interpreter.get_signature_runner()
        rng = np.random.default_rng(0)
        feeds = {
            name: rng.standard_normal(detail["shape"]).astype(detail["dtype"])
            for name, detail in runner.get_input_details().items()
        }
        runner(**feeds)  # XNNPACK packs the weights on the first run

        def run() -> object:
            return runner(**feeds), model  # the interpreter reads from ``model`` for its whole life

        return run

    @staticmethod
    def versions() -> dict[str, str]:
        try:
            return {_DIST: importlib.metadata.version(_DIST)}
        except importlib.metadata.PackageNotFoundError:
            return {_DIST: "unknown"}


#: what LiteRT's C++ prints on stderr when it applies XNNPACK: not news, and it would make an error two lines
_BANNER = b"INFO: Created TensorFlow Lite XNNPACK delegate"


@contextlib.contextmanager
def _without_delegate_banner() -> Iterator[None]:
    """While the interpreter loads, fd 2 goes to a temporary file; afterwards everything LiteRT printed there
    but its XNNPACK banner is written to stderr again (errors and warnings still show)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (an embedding host): leave it alone
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().splitlines(keepends=True) if not line.startswith(_BANNER)]
            if kept:
                os.write(2, b"".join(kept))


def _warmup_input(name: str, length: int) -> np.ndarray:
    # a realistic mask: an all-zero mask makes mean pooling divide by zero in a full-int8 model
    return np.ones((1, length), np.int32) if name == "attention_mask" else np.zeros((1, length), np.int32)

