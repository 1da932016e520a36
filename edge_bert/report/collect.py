"""Reading a matrix output folder for the report: the index, every cell's typed results and its bundle manifest.

Everything here came from devices and users, so it is read strictly: the index by a typed schema (unknown
key -> error naming the dotted field), results by ``results.io.load_result``, manifests by
``manifest.parse_manifest``. Every path the index names is a plain ``results/KEY.kind.json`` confined to the
folder (no ``../``, no symlink out), and a manifest is used only if its bytes are the ones the result was
measured on (its sha256 is in the result's checksums). Any of that wrong is an InputError: one line, exit 2.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge_bert.errors import InputError
from edge_bert.manifest import Manifest, parse_manifest
from edge_bert.results.bench import BenchResult
from edge_bert.results.io import load_result
from edge_bert.results.validate import ValidateResult
from edge_bert.schema import SchemaError, parse

INDEX_SCHEMA = "edge-bert/matrix/v1"
_KEY = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{8}$")
MAX_INDEX_BYTES = 16 << 20


@dataclass(frozen=True)
class CellRecord:
    """One cell of ``matrix.json`` (matrix/run.py ``_record``); a pending cell has only key and status."""

    key: str
    status: Literal["done", "failed", "pending"]
    model: str | None = None
    required: bool | None = None
    method: Literal["distilbert", "tinybert", "albert", "mobilebert"] | None = None
    reference: bool | None = None
    target: str | None = None
    format: str | None = None
    recipe: str | None = None
    device: str | None = None
    exit_class: str | None = None
    reason: str | None = None
    validate: str | None = None
    bench: str | None = None
    seconds: float | None = None
    device_steps: list[float] | None = None


@dataclass(frozen=True)
class MatrixIndex:
    schema: str
    name: str
    cells: list[CellRecord]
    conversions: dict[str, list[float]]


@dataclass(frozen=True)
class Entry:
    """A finished cell with its results and manifest; ``files`` are paths relative to the results folder."""

    record: CellRecord
    validate: ValidateResult
    bench: BenchResult | None
    manifest: Manifest
    validate_file: str
    bench_file: str | None
    manifest_file: str

    @property
    def model(self) -> str:
        return self.record.model or self.validate.bundle

    @property
    def device(self) -> str:
        return self.validate.device.id

    @property
    def emulated(self) -> bool:
        return self.validate.emulated

    @property
    def target(self) -> str:
        """The target profile the bundle was made for (its name, as the manifest records it)."""
        name = self.manifest.target.get("name")
        return name if isinstance(name, str) else str(self.record.target)

    @property
    def runtime(self) -> str:
        return self.validate.runtime["name"]

    @property
    def file_bytes(self) -> int:
        """The whole bundle as shipped: every file its manifest lists."""
        return sum(entry.bytes for entry in self.manifest.files.values())


@dataclass(frozen=True)
class Collection:
    name: str
    entries: list[Entry]
    failed: list[CellRecord]
    pending: int


def read_index(results: Path) -> MatrixIndex:
    path = results / "matrix.json"
    try:
        if not path.is_file() or path.stat().st_size > MAX_INDEX_BYTES or path.is_symlink():
            raise InputError(f"{path}: no matrix index here (a folder written by `edge-bert matrix --out`)")
        index = parse(MatrixIndex, json.loads(path.read_bytes().decode("utf-8")))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, SchemaError):
            raise InputError(f"{path}: {exc}") from exc
        raise InputError(f"{path}: not a readable JSON index ({exc})") from exc
    if index.schema != INDEX_SCHEMA:
        raise InputError(f"{path}: schema {index.schema!r:.60} is not {INDEX_SCHEMA}")
    return index


def _confined(results: Path, relative: str, where: str) -> Path:
    """``results/relative``, refused unless it is a plain relative path that stays inside ``results``."""
    parts = relative.split("/")
    if relative.startswith("/") or "\\" in relative or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"matrix.json: {where}: {relative!r:.80} leaves the results folder")
    path = results / relative
    if not path.resolve().is_relative_to(results.resolve()):
        raise InputError(f"matrix.json: {where}: {relative!r:.80} leads outside the results folder")
    return path


def _result(results: Path, record: CellRecord, kind: str, where: str):
    name = getattr(record, kind)
    path = _confined(results, name, f"{where}.{kind}")
    if name != f"results/{record.key}.{kind}.json":
        raise InputError(f"matrix.json: {where}.{kind}: {name!r:.80} is not results/{record.key}.{kind}.json")
    try:
        result = load_result(path)
    except SchemaError as exc:
        raise InputError(f"{name}: {exc}") from exc
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{name}: not a readable result ({str(exc)[:160]})") from exc
    expected = ValidateResult if kind == "validate" else BenchResult
    if not isinstance(result, expected):
        raise InputError(f"{name}: holds a {type(result).__name__}, not a {expected.__name__}")
    if (result.recipe, result.format) != (record.recipe, record.format):
        raise InputError(f"{name}: recipe/format {result.recipe}/{result.format} differ from the index's")
    return result


def _manifest(results: Path, record: CellRecord, checked: ValidateResult, where: str) -> tuple[Manifest, str]:
    relative = f"bundles/{record.key.split('-')[0]}/{checked.bundle}/manifest.json"
    path = _confined(results, relative, f"{where}.bundle")
    try:
        data = path.read_bytes()
        manifest = parse_manifest(json.loads(data.decode("utf-8")))
    except SchemaError as exc:
        raise InputError(f"{relative}: {exc}") from exc
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{relative}: not a readable manifest ({str(exc)[:160]})") from exc
    if hashlib.sha256(data).hexdigest() != checked.checksums.get("manifest.json"):
        raise InputError(f"{relative}: not the manifest {record.validate} was measured on (sha256 differs)")
    return manifest, relative


def collect(results: Path) -> Collection:
    """Every cell of the matrix in ``results``: finished ones with their typed results, failed ones with
    their reasons; InputError (one line) for anything malformed, hostile or missing."""
    index = read_index(results)
    entries, failed = [], []
    for i, record in enumerate(index.cells):
        where = f"cells[{i}]"
        if not _KEY.fullmatch(record.key):
            raise InputError(f"matrix.json: {where}.key: {record.key!r:.80} is not a cell key")
        if record.status == "failed":
            failed.append(record)
        if record.status != "done":
            continue
        if record.validate is None:
            raise InputError(f"matrix.json: {where}: a finished cell names no validate result")
        checked = _result(results, record, "validate", where)
        timed = _result(results, record, "bench", where) if record.bench is not None else None
        if timed is not None and timed.bundle_id != checked.bundle_id:
            raise InputError(f"{record.bench}: measured bundle {timed.bundle_id} is not {checked.bundle_id}")
        manifest, manifest_file = _manifest(results, record, checked, where)
        entries.append(Entry(record, checked, timed, manifest, record.validate, record.bench, manifest_file))
    if not entries:
        raise InputError(f"{results / 'matrix.json'}: no finished cell to report")
    pending = sum(c.status == "pending" for c in index.cells)
    return Collection(index.name, entries, failed, pending)
