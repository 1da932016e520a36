"""The small interface every runtime backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class Backend(ABC):
    """Loads one model file and runs it on named numpy inputs.

    Constructing the backend is the "cold load" that bench times, so do all session creation there.
    """

    runtime: str = ""

    @abstractmethod
    def __init__(self, model_path: Path, threads: int | None = None) -> None: ...

    @property
    @abstractmethod
    def input_names(self) -> list[str]: ...

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns every output by name."""

    @staticmethod
    @abstractmethod
    def versions() -> dict[str, str]:
        """Runtime library versions, recorded in every result."""
