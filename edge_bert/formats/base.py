"""Export formats: one module per format behind one small interface, looked up by name.

convert.py knows nothing format-specific: a format exports the fp32 model from the PyTorch graph
(checked against PyTorch), produces each recipe's model file, and describes its inputs and shapes
for the manifest. Modules are imported lazily: the TFLite toolchain is heavy and optional.
"""

from __future__ import annotations

import importlib
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from edge_bert.backends import backend_class
from edge_bert.backends.base import Backend
from edge_bert.convert.golden import Golden
from edge_bert.convert.loading import LoadedModel
from edge_bert.errors import ConversionError
from edge_bert.profiles import FormatSpec, Recipe, TargetProfile
from edge_bert.recipes import FORMATS, FormatDescriptor
from edge_bert.session import make_feeds
from edge_bert.tasks import Task

Log = Callable[[str], None]


@dataclass
class ExportJob:
    """Everything a format needs, computed once per conversion."""

    loaded: LoadedModel
    graph: nn.Module
    golden: Golden
    profile: TargetProfile
    spec: FormatSpec
    work: Path
    max_length: int
    #: real token sequences (ids, type ids), unpadded, for static quantization calibration
    calibration: list[tuple[np.ndarray, np.ndarray]]

    @property
    def task(self) -> Task:
        return self.loaded.spec

    def parity(self, backend: Backend, dtype: type, length: int | None = None) -> dict[str, Any]:
        """Every golden text that fits ``length`` (None: each at its own length) through ``backend``, padded
        to ``length``, against PyTorch, measured by the task (Task.parity): the check each format's export
        and fusions must pass. Empty when no text fits."""
        golden, task = self.golden, self.task
        dtypes = dict.fromkeys(self.loaded.arch.inputs, np.dtype(dtype))
        width = int(golden.lengths.max())
        outputs, refs = [], []
        for (ids, types), ref in zip(golden.samples(), golden.output, strict=True):
            if length is None or len(ids) <= length:
                result = backend.run(make_feeds(ids, types, dtypes, length or len(ids)))
                outputs.append(task.row(result[task.primary_output][0], len(ids), width))
                refs.append(ref)
        return task.parity(np.stack(outputs), np.stack(refs)) if outputs else {}


class ModelFormat(ABC):
    #: the format's descriptor (edge_bert/recipes.py) names, file name and runtime come from
    descriptor: FormatDescriptor
    input_dtype: str = "int64"
    #: how ``sensitivity`` measures a node's error (recorded in rescued bundles)
    sensitivity_method: str = ""

    def __init__(self, job: ExportJob) -> None:
        self.job = job
        self.name = self.descriptor.name
        self.runtime = self.descriptor.runtime
        self.model_file = self.descriptor.model_file
        #: the exported fp32 model (set by export); rescue stops where a model is no smaller than half of it
        self.fp32_path: Path | None = None

    @abstractmethod
    def export(self, log: Log) -> dict[str, Any]:
        """Write the fp32 model into the work dir, check it against PyTorch; returns the manifest's ``export``."""

    @abstractmethod
    def produce(self, recipe: Recipe, dst: Path) -> dict[str, Any]:
        """Write ``recipe``'s model file to ``dst``; returns the settings used (manifest ``recipe.settings``)."""

    @classmethod
    @abstractmethod
    def static_lengths(cls, profile: TargetProfile, spec: FormatSpec) -> list[int] | None:
        """Static sequence lengths the model file will accept, or None when the sequence axis is dynamic."""

    def seq_lengths(self) -> list[int] | None:
        return self.static_lengths(self.job.profile, self.job.spec)

    def sensitivity(self, recipe: Recipe, dst: Path) -> list[tuple[str, float, int]] | None:
        """For accuracy rescue: quantize ``recipe`` to ``dst`` and return (node, error it introduces, bytes it
        costs kept float), worst first, naming nodes as the recipe option ``keep_float`` takes them; None if
        the format cannot keep single nodes float for this recipe."""
        return None

    def node_label(self, node: str) -> str:
        """A node name short enough for a log line."""
        return node

    def bundle_files(self, model_file: Path) -> dict[str, Path]:
        """The produced files that make up the model, by their name in the bundle (OpenVINO: .xml and .bin)."""
        return {self.model_file: model_file}

    def model_bytes(self, model_file: Path) -> int:
        """Bytes of every file the model is made of (the rescue's size budget counts them all)."""
        return sum(path.stat().st_size for path in self.bundle_files(model_file).values())

    def copy_model(self, src: Path, dst: Path) -> None:
        """Copy a produced model with its companion files (OpenVINO's .bin) to ``dst``'s name."""
        targets = self.bundle_files(dst).values()
        for source, target in zip(self.bundle_files(src).values(), targets, strict=True):
            shutil.copyfile(source, target)

    def runner(self, model_file: Path, threads: int = 2) -> Backend:
        """The runner's backend on a produced model file, as a bundle loads it."""
        return backend_class(self.name)(model_file.read_bytes(), threads=threads, where=str(model_file))

    def write_extras(self, staging: Path, recipe: Recipe) -> dict[str, Any] | None:
        """Format-specific files next to the model (e.g. what an Android app needs); none by default.
        Returns what they measured, for the manifest's ``conversion_check`` (or None)."""
        return None

    def manifest_fields(self) -> dict[str, Any]:
        static = self.seq_lengths()
        # a single static length is a number; several are one signature each, listed under shapes
        sequence = "sequence" if static is None else static[0] if len(static) == 1 else "seq_length"
        shape = ["batch", sequence]
        return {
            "format": self.name,
            "runtime": self.runtime,
            "model_file": self.model_file,
            "inputs": [{"name": n, "dtype": self.input_dtype, "shape": shape} for n in self.job.loaded.arch.inputs],
            "shapes": {
                "policy": "dynamic" if static is None else "static",
                "seq_lengths": static,
                "max_length": self.job.max_length,
            },
        }


def format_class(name: str) -> type[ModelFormat]:
    if name not in FORMATS:
        raise ConversionError(f"this edge-bert cannot produce {name!r}; it produces {sorted(FORMATS)}")
    descriptor = FORMATS[name]
    module_name, _, class_name = descriptor.converter.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConversionError(
            f"the {name} toolchain is not installed ({exc.name}); "
            f"run: pip install 'edge-bert[{descriptor.converter_extra}]'"
        ) from exc
    return getattr(module, class_name)
