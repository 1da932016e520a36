"""The bundle: the one contract between the host-side converter and the device-side runner.

A bundle is a directory holding ``manifest.json``, the model file, the tokenizer, ``golden.npz``
and whatever else the manifest lists. The writer stages everything in a temporary sibling
directory and renames it into place, so an interrupted convert never leaves half a bundle. The
reader checks the schema version and the sha256 of every listed file before anything is loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.errors import BundleError, InputError, ProfileError
from edge_bert.manifest import MANIFEST, SCHEMA_VERSION, Manifest, parse_manifest
from edge_bert.profiles import TargetProfile, profile_from_dict
from edge_bert.schema import SchemaError

__all__ = ["MANIFEST", "SCHEMA_VERSION", "Bundle", "check_writable_dir", "open_bundle", "write_bundle"]

#: a manifest is a few KB; anything near this is not one
MAX_MANIFEST_BYTES = 4 << 20
#: uncompressed size an .npz in a bundle may unpack to (a zip bomb stops here)
MAX_NPZ_BYTES = 2 << 30


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A bundle whose manifest schema, file tree and checksums have been verified.

    Files are loaded only through :meth:`read`, which reads the bytes once, checks them against the
    manifest and hands those same bytes to the runtime/tokenizer/numpy - nothing unverified is loaded,
    and a file swapped after the check is caught.
    """

    path: Path
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def format(self) -> str:
        return self.manifest.format

    @property
    def task(self) -> str:
        return self.manifest.model.task

    @property
    def labels(self) -> list[str] | None:
        labels = self.manifest.model.labels
        return list(labels) if labels is not None else None

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model_file

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.manifest.inputs]

    @property
    def primary_output(self) -> str:
        return self.manifest.primary_output

    @property
    def seq_lengths(self) -> tuple[int, ...]:
        """Static sequence lengths the model accepts; empty when the sequence axis is dynamic."""
        return tuple(self.manifest.shapes.seq_lengths or ())

    @property
    def max_length(self) -> int:
        return self.manifest.shapes.max_length

    @cached_property
    def profile(self) -> TargetProfile:
        """The target profile stored in the manifest, read as strictly as a profile file."""
        try:
            return profile_from_dict(self.manifest.target, source=f"{self.path / MANIFEST}: target")
        except ProfileError as exc:
            raise BundleError(str(exc)) from exc

    def read(self, name: str) -> bytes:
        """The bytes of a listed file, verified against the manifest (size and sha256)."""
        meta = self.manifest.files.get(name)
        if meta is None:
            raise BundleError(f"{self.path}: {name!r} is not listed in the manifest; it will not be loaded")
        data = _read_regular(self.path, name)
        if len(data) != meta.bytes:
            raise BundleError(
                f"{self.path / name}: size {len(data)} bytes, manifest says {meta.bytes}; "
                "the file is truncated or altered"
            )
        if hashlib.sha256(data).hexdigest() != meta.sha256:
            raise BundleError(f"{self.path / name}: sha256 does not match the manifest; the file is corrupt or altered")
        return data

    def golden(self) -> dict[str, np.ndarray]:
        """The golden inputs/outputs, checked for the arrays, dtypes and shapes validate relies on."""
        arrays = self._npz(self.manifest.golden_file, ("texts", "input_ids", "token_type_ids", "lengths", "output"))
        count = self.manifest.golden.count
        where = self.path / self.manifest.golden_file
        if arrays["texts"].dtype.kind != "U" or arrays["texts"].shape != (count,):
            raise BundleError(f"{where}: 'texts' must be {count} strings (manifest golden.count)")
        for key in ("input_ids", "token_type_ids"):
            if arrays[key].dtype.kind not in "iu" or arrays[key].ndim != 2 or len(arrays[key]) != count:
                raise BundleError(f"{where}: {key!r} must be an integer array of {count} rows")
        lengths = arrays["lengths"]
        if lengths.dtype.kind not in "iu" or lengths.shape != (count,):
            raise BundleError(f"{where}: 'lengths' must be {count} integers")
        if (lengths < 1).any() or (lengths > arrays["input_ids"].shape[1]).any():
            raise BundleError(f"{where}: 'lengths' out of range for the stored token ids")
        if arrays["output"].dtype.kind != "f" or len(arrays["output"]) != count:
            raise BundleError(f"{where}: 'output' must be a float array of {count} rows")
        return arrays

    def eval_reference(self) -> dict[str, np.ndarray] | None:
        """fp32 outputs on the convert-time evaluation texts (keyed by text hash), if the bundle has them."""
        info = self.manifest.eval
        if info is None:
            return None
        arrays = self._npz(info.file, ("keys", "output"))
        where = self.path / info.file
        if arrays["keys"].dtype.kind != "U" or arrays["keys"].shape != (info.rows,):
            raise BundleError(f"{where}: 'keys' must be {info.rows} strings (manifest eval.rows)")
        if arrays["output"].dtype.kind != "f" or arrays["output"].ndim < 2 or len(arrays["output"]) != info.rows:
            raise BundleError(f"{where}: 'output' must be a float array of {info.rows} rows")
        return arrays

    def _npz(self, name: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Plain arrays from a verified .npz: never unpickled, size-bounded, exactly the expected keys."""
        data = self.read(name)
        where = self.path / name
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if sum(info.file_size for info in archive.infolist()) > MAX_NPZ_BYTES:
                    raise BundleError(f"{where}: unpacks to more than {MAX_NPZ_BYTES >> 30} GiB; refused")
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except BundleError:
            raise
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise BundleError(f"{where}: not a readable .npz of plain arrays ({exc}); convert the model again") from exc
        if sorted(arrays) != sorted(keys):
            raise BundleError(f"{where}: holds arrays {sorted(arrays)}, expected {sorted(keys)}")
        return arrays


def open_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle: manifest schema, a file tree without links or unlisted files, and the
    size and sha256 of every listed file."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory (it does not exist or is not a directory)")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file() or manifest_path.is_symlink():
        raise BundleError(f"{root}: no {MANIFEST} (a regular file); this is not an edge-bert bundle")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{manifest_path}: larger than {MAX_MANIFEST_BYTES >> 20} MiB; not a manifest")
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc}); the bundle is corrupt") from exc
    try:
        manifest = parse_manifest(raw)
    except SchemaError as exc:
        raise BundleError(f"{manifest_path}: {exc}") from exc
    root = root.resolve()
    _check_tree(root, manifest)
    bundle = Bundle(root, manifest)
    for name in manifest.files:
        bundle.read(name)
    bundle.profile  # noqa: B018 - the stored profile must parse, or gates and bench settings are unknown
    return bundle


def _check_tree(root: Path, manifest: Manifest) -> None:
    """No symlinks anywhere (a link could point outside the bundle) and no file the manifest does not list.

    Unlisted files are refused rather than ignored: a runtime may open files next to the model on its
    own (ONNX external data), and a bundle that holds more than it says is not the bundle that was made.
    """
    listed = set(manifest.files)
    for directory, dirs, files in os.walk(root, followlinks=False):
        rel_dir = Path(directory).relative_to(root)
        for entry in [*dirs, *files]:
            rel = (rel_dir / entry).as_posix()
            mode = os.lstat(Path(directory) / entry).st_mode
            if stat.S_ISLNK(mode):
                raise BundleError(f"{root}: {rel} is a symbolic link; a bundle holds only regular files")
            if entry in files and rel != MANIFEST and rel not in listed:
                raise BundleError(
                    f"{root}: {rel} is not listed in the manifest; remove it (a bundle holds only its listed files)"
                )
            if entry in files and not stat.S_ISREG(mode):
                raise BundleError(f"{root}: {rel} is not a regular file")


def _read_regular(root: Path, name: str) -> bytes:
    """Read ``root/name`` refusing symlinks at every step (O_NOFOLLOW), so the check and the read agree."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    path = root
    for part in name.split("/")[:-1]:
        path = path / part
        if path.is_symlink() or not path.is_dir():
            raise BundleError(f"{root}: {name} is not inside a plain directory of the bundle")
    try:
        fd = os.open(root / name, flags)
    except FileNotFoundError as exc:
        raise BundleError(f"{root / name}: listed in the manifest but missing; the bundle is incomplete") from exc
    except OSError as exc:
        raise BundleError(f"{root / name}: cannot be read as a regular file ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise BundleError(f"{root / name}: not a regular file")
        return handle.read()


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
            p.relative_to(staging).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(staging.rglob("*"))
            if p.is_file() and p.relative_to(staging).as_posix() != MANIFEST
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
    return Bundle(final.resolve(), parse_manifest(json.loads((final / MANIFEST).read_text(encoding="utf-8"))))


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Every manifest goes through the schema before it is written: a bundle is never made unreadable."""
    try:
        plain = parse_manifest(manifest).to_dict()
    except SchemaError as exc:
        raise BundleError(f"internal error: convert produced a manifest the runner would refuse: {exc}") from exc
    (root / MANIFEST).write_text(json.dumps(plain, indent=2) + "\n", encoding="utf-8")


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
