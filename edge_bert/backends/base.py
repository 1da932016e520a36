"""The small interface every runtime backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np


class Backend(ABC):
    """Loads one model file and runs it on named numpy inputs.

    Constructing the backend is the "cold load" that bench times, so do all session creation there.
    It takes the model's bytes, not a path: the bundle verified exactly these bytes, and a runtime
    given a path could open other files beside it (ONNX external data) that nobody checked. A format
    whose model is two files (``FormatDescriptor.weights_file``: OpenVINO's .xml + .bin) also takes
    ``weights=`` bytes, verified the same way; the others are never passed it.
    """

    runtime: str = ""

    @abstractmethod
    def __init__(self, model: bytes, threads: int | None = None, where: str = "model") -> None: ...

    @property
    @abstractmethod
    def input_names(self) -> list[str]: ...

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns every output by name."""

    @staticmethod
    @abstractmethod
    def probe(model: bytes, threads: int | None = None) -> Callable[[], object]:
        """Load a probe model (edge_bert/data/probes) as this runtime loads a bundle; returns one warm run of it."""

    @staticmethod
    @abstractmethod
    def versions() -> dict[str, str]:
        """Runtime library versions, recorded in every result."""
