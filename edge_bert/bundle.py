"""The bundle: the one contract between the host-side converter and the device-side runner.

A bundle is a directory holding ``manifest.json``, the model file, the tokenizer, ``golden.npz``
and whatever else the manifest lists. The writer stages everything in a temporary sibling
directory and renames it into place, so an interrupted convert never leaves half a bundle. The
reader checks the schema version and the sha256 of every listed file before anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.errors import BundleError, InputError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
#: Files every bundle must list in its manifest, by manifest key.
REQUIRED_KEYS = ("model_file", "tokenizer_file", "golden_file")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A bundle whose manifest and checksums have been verified."""

    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def format(self) -> str:
        return str(self.manifest["format"])

    @property
    def task(self) -> str:
        return str(self.manifest["model"]["task"])

    @property
    def labels(self) -> list[str] | None:
        return self.manifest["model"].get("labels")

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest["model_file"]

    @property
    def tokenizer_path(self) -> Path:
        return self.path / self.manifest["tokenizer_file"]

    @property
    def input_names(self) -> list[str]:
        return [spec["name"] for spec in self.manifest["inputs"]]

    @property
    def primary_output(self) -> str:
        return str(self.manifest["primary_output"])

    @property
    def seq_lengths(self) -> tuple[int, ...]:
        """Static sequence lengths the model accepts; empty when the sequence axis is dynamic."""
        return tuple(self.manifest["shapes"].get("seq_lengths") or ())

    @property
    def max_length(self) -> int:
        return int(self.manifest["shapes"]["max_length"])

    def eval_reference(self) -> dict[str, np.ndarray] | None:
        """fp32 outputs on the convert-time evaluation texts (keyed by text hash), if the bundle has them."""
        info = self.manifest.get("eval")
        if not info:
            return None
        with np.load(self.path / info["file"], allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def golden(self) -> dict[str, np.ndarray]:
        """The golden inputs/outputs; plain arrays only (never unpickled)."""
        with np.load(self.path / self.manifest["golden_file"], allow_pickle=False) as data:
            return {key: data[key] for key in data.files}


def open_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle: schema version, required files, size and sha256 of every file."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory (it does not exist or is not a directory)")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{root}: no {MANIFEST}; this is not an edge-bert bundle")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc}); the bundle is corrupt") from exc
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path}: schema_version {version!r} is not supported by this edge-bert "
            f"(supports {SCHEMA_VERSION}); convert the model again or upgrade edge-bert"
        )
    files = manifest.get("files", {})
    for key in REQUIRED_KEYS:
        name = manifest.get(key)
        if not name or name not in files:
            raise BundleError(f"{manifest_path}: manifest names no {key.replace('_', ' ')} in its files")
    for name, meta in files.items():
        _verify_file(root, name, meta)
    return Bundle(root.resolve(), manifest)


def _verify_file(root: Path, name: str, meta: dict[str, Any]) -> None:
    file = root / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise BundleError(f"{root}: manifest lists a file outside the bundle: {name!r}")
    if not file.is_file():
        raise BundleError(f"{file}: listed in the manifest but missing; the bundle is incomplete")
    size = file.stat().st_size
    if size != meta["bytes"]:
        raise BundleError(f"{file}: size {size} bytes, manifest says {meta['bytes']}; the file is truncated or altered")
    if sha256_file(file) != meta["sha256"]:
        raise BundleError(f"{file}: sha256 does not match the manifest; the file is corrupt or altered")


def check_writable_dir(out_dir: Path) -> None:
    """Fail early, before an expensive export, if bundles cannot be written under ``out_dir``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output directory {out_dir} is not writable: it exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise InputError(f"output directory {out_dir} is not writable: {exc.strerror or exc}") from exc


def write_bundle(
    final: Path,
    populate: Callable[[Path], dict[str, Any]],
    overwrite: bool = False,
    accept: Callable[[Path], dict[str, Any] | None] | None = None,
) -> Bundle:
    """Write a bundle atomically.

    ``populate(staging)`` writes the files into a staging directory and returns the manifest
    (without ``files``). Checksums are added here. ``accept(staging)`` may inspect the finished
    staging bundle and raise to reject it (the parity gate), leaving nothing behind; what it returns
    is merged into the manifest (which is not itself checksummed).
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise InputError(f"{final} already exists; pass --overwrite to replace it")
    check_writable_dir(final.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be copied and shared
        manifest = populate(staging)
        manifest["schema_version"] = SCHEMA_VERSION
        manifest["files"] = {
            str(p.relative_to(staging)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(staging.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }
        _write_manifest(staging, manifest)
        if accept is not None and (extra := accept(staging)):
            _write_manifest(staging, {**manifest, **extra})
        _replace_dir(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # the files were just hashed (and accept() verified them); a rename changes no content, so read
    # back the manifest instead of hashing every file a second time
    return Bundle(final.resolve(), json.loads((final / MANIFEST).read_text(encoding="utf-8")))


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _replace_dir(staging: Path, final: Path) -> None:
    if not final.exists():
        os.replace(staging, final)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    os.replace(final, old)
    try:
        os.replace(staging, final)
    except OSError:
        os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)
