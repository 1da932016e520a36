"""The bundle manifest as one typed object: what convert writes and what validate/bench/inspect read.

Read strictly (schema.parse): an unknown key, a missing key, a value of the wrong type or out of range
is an error naming the field. Every path in it is a relative name that must stay inside the bundle,
and every file the runner loads must be listed in ``files`` (bundle.py enforces both when it opens a
bundle). The bundle id (``name``) is restricted to a safe alphabet because report files are named
after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from edge_bert.profiles import Gates
from edge_bert.recipes import FORMATS
from edge_bert.schema import CHECK, SchemaError, at_least, between, each, parse, to_plain
from edge_bert.tasks import TASKS

#: 3 added ``flops`` (bench's roofline): a runner that reads 2 says so instead of "unknown key flops"
SCHEMA_VERSION = 3
MANIFEST = "manifest.json"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def safe_name(value: str) -> str | None:
    """A bundle id: letters, digits, ``.``, ``_``, ``-``; no separators, no leading dot (report file names)."""
    return None if _NAME.fullmatch(value) else "must be 1-128 of A-Z a-z 0-9 . _ - and not start with . or -"


def relative_file(value: str) -> str | None:
    """A path inside the bundle: relative, POSIX, no ``..``, no empty or ``.`` parts, no backslash."""
    path = PurePosixPath(value)
    if not value or value.startswith("/") or "\\" in value or "\x00" in value:
        return f"{value!r} is not a relative path inside the bundle"
    if any(part in ("", ".", "..") for part in value.split("/")) or path.is_absolute():
        return f"{value!r} leaves the bundle or is not a plain relative path"
    return None


def _hex64(value: str) -> str | None:
    return None if _HEX64.fullmatch(value) else "must be 64 lower-case hex digits"


@dataclass(frozen=True)
class FileEntry:
    sha256: str = field(metadata={CHECK: _hex64})
    bytes: int = field(metadata={CHECK: at_least(0)})


@dataclass(frozen=True)
class ModelInfo:
    source: str
    architecture: str
    task: str = field(metadata={CHECK: lambda v: None if v in TASKS else f"must be one of {list(TASKS)}"})
    parameters: int = field(metadata={CHECK: at_least(0)})
    revision: str | None = None
    labels: tuple[str, ...] | None = None
    hidden_size: int | None = None
    pooling: Literal["mean", "cls"] | None = None
    normalize: bool | None = None


@dataclass(frozen=True)
class InputSpec:
    name: Literal["input_ids", "attention_mask", "token_type_ids"]
    dtype: Literal["int64", "int32"]
    shape: tuple[str | int, ...]


@dataclass(frozen=True)
class ShapeInfo:
    policy: Literal["dynamic", "static"]
    max_length: int = field(metadata={CHECK: between(2, 8192)})
    seq_lengths: tuple[int, ...] | None = field(default=None, metadata={CHECK: each(between(2, 8192))})
    #: LiteRT: the signatures by name, with their input/output details (informational)
    signatures: dict[str, Any] | None = None


@dataclass(frozen=True)
class RecipeInfo:
    name: str
    kind: str
    settings: dict[str, Any]
    gates: Gates


@dataclass(frozen=True)
class TokenizerInfo:
    max_length: int = field(metadata={CHECK: between(2, 8192)})
    truncation: str
    lowercase: bool


@dataclass(frozen=True)
class GoldenInfo:
    count: int = field(metadata={CHECK: at_least(1)})
    output: str
    reference: str
    truncated_texts: int = field(metadata={CHECK: at_least(0)})
    max_tokens: int = field(metadata={CHECK: at_least(1)})


@dataclass(frozen=True)
class EvalInfo:
    """The fp32 outputs on the user's labelled data, stored at convert time (texts are not stored)."""

    file: str = field(metadata={CHECK: relative_file})
    source: dict[str, Any]
    rows: int = field(metadata={CHECK: at_least(1)})
    fp32: dict[str, float | None]


def _per_length(value: dict[str, int]) -> str | None:
    for key, flops in value.items():
        if not key.isdigit() or not 1 <= int(key) <= 8192:
            return f"keys must be sequence lengths (1-8192), got {key!r}"
        if flops < 0:
            return f"FLOPs must be ≥ 0, got {flops} at {key}"
    return None


@dataclass(frozen=True)
class FlopInfo:
    """FLOPs of one batch-1 pass by sequence length, counted from the graph at convert time (a multiply-add
    is 2 FLOPs; ``method`` says what was counted). bench divides them by the measured p50 (roofline)."""

    method: str
    per_seq_length: dict[str, int] = field(metadata={CHECK: _per_length})


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    name: str = field(metadata={CHECK: safe_name})
    created: str
    model: ModelInfo
    format: str
    runtime: str
    model_file: str = field(metadata={CHECK: relative_file})
    inputs: tuple[InputSpec, ...]
    shapes: ShapeInfo
    tokenizer_file: str = field(metadata={CHECK: relative_file})
    golden_file: str = field(metadata={CHECK: relative_file})
    recipe: RecipeInfo
    #: the target profile the bundle was made for, as written (profiles.profile_from_dict reads it)
    target: dict[str, Any]
    outputs: tuple[str, ...]
    primary_output: str
    tokenizer: TokenizerInfo
    golden: GoldenInfo
    export: dict[str, Any]
    tools: dict[str, str]
    files: dict[str, FileEntry]
    eval: EvalInfo | None = None
    #: nodes accuracy rescue kept float, and what that cost
    rescue: dict[str, Any] | None = None
    #: the parity/accuracy figures of the gate the bundle passed at convert time
    conversion_check: dict[str, Any] | None = None
    #: --recipe auto: the device that chose, every candidate's figures on it and why the others lost
    selection: dict[str, Any] | None = None
    #: FLOPs per sequence length (absent in bundles made before edge-bert counted them)
    flops: FlopInfo | None = None

    @property
    def model_bytes(self) -> int:
        """The model's size: its model file, and its weights file where the format has one (OpenVINO)."""
        weights = FORMATS[self.format].weights_file
        return self.files[self.model_file].bytes + (self.files[weights].bytes if weights in self.files else 0)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)


def parse_manifest(data: Any) -> Manifest:
    """Check ``data`` against the schema; raises SchemaError naming the first offending field."""
    if not isinstance(data, dict):
        raise SchemaError("", "the manifest must be a JSON object")
    version = data.get("schema_version")
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise SchemaError(
            "schema_version",
            f"{version!r} is not supported by this edge-bert (it reads {SCHEMA_VERSION}); "
            "convert the model again with this version, or install the edge-bert that made it",
        )
    manifest = parse(Manifest, data)
    if manifest.format not in FORMATS:
        raise SchemaError("format", f"unknown format {manifest.format!r}; this edge-bert runs {sorted(FORMATS)}")
    for key in ("model_file", "tokenizer_file", "golden_file"):
        if getattr(manifest, key) not in manifest.files:
            raise SchemaError(key, f"{getattr(manifest, key)!r} is not listed in files")
    weights = FORMATS[manifest.format].weights_file
    if weights is not None and weights not in manifest.files:
        raise SchemaError("files", f"a {manifest.format} bundle needs its weights file {weights!r} listed in files")
    if manifest.eval and manifest.eval.file not in manifest.files:
        raise SchemaError("eval.file", f"{manifest.eval.file!r} is not listed in files")
    for name in manifest.files:
        if problem := relative_file(name):
            raise SchemaError(f"files.{name}", problem)
    if manifest.primary_output not in manifest.outputs:
        raise SchemaError("primary_output", f"{manifest.primary_output!r} is not one of outputs {manifest.outputs}")
    if manifest.shapes.policy == "static" and not manifest.shapes.seq_lengths:
        raise SchemaError("shapes.seq_lengths", "a static bundle must list its sequence lengths")
    if TASKS[manifest.model.task].labelled and manifest.model.labels == ():
        raise SchemaError("model.labels", "a classifier needs at least one label")
    return manifest
