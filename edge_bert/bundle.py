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
import math
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.errors import BundleError, InputError, ProfileError
from edge_bert.limits import Limits
from edge_bert.manifest import MANIFEST, SCHEMA_VERSION, Manifest, parse_manifest
from edge_bert.profiles import TargetProfile, profile_from_dict
from edge_bert.schema import SchemaError

__all__ = ["MANIFEST", "SCHEMA_VERSION", "Bundle", "check_writable_dir", "open_bundle", "write_bundle"]

#: a manifest is a few KB; anything near this is not one
MAX_MANIFEST_BYTES = 4 << 20
#: bytes read (and hashed) at a time
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A bundle whose manifest schema, file tree and checksums have been verified.

    Every file is read once, when the bundle is opened, checked against the manifest and kept: :meth:`read`
    hands those same bytes to the runtime/tokenizer/numpy, and the result header names the manifest by the
    hash of the bytes that were parsed. Nothing unverified is loaded, and a file swapped on disk after the
    check changes nothing (time of check = time of use).
    """

    path: Path
    manifest: Manifest
    #: the manifest bytes that were parsed: the bundle id, result checksums and transports use these
    manifest_bytes: bytes = field(default=b"", repr=False)
    limits: Limits = field(default_factory=Limits)
    _verified: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.manifest.name

    @cached_property
    def manifest_sha256(self) -> str:
        return hashlib.sha256(self.manifest_bytes).hexdigest()

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
        """The bytes of a listed file, verified against the manifest (size and sha256) when first read and
        kept: a second read never goes back to the disk."""
        if name in self._verified:
            return self._verified[name]
        meta = self.manifest.files.get(name)
        if meta is None:
            raise BundleError(f"{self.path}: {name!r} is not listed in the manifest; it will not be loaded")
        data, digest = _read_regular(self.path, name, meta.bytes)
        if len(data) != meta.bytes:
            raise BundleError(
                f"{self.path / name}: size {'more than ' if len(data) > meta.bytes else ''}{len(data)} bytes, "
                f"manifest says {meta.bytes}; the file is truncated or altered"
            )
        if digest != meta.sha256:
            raise BundleError(f"{self.path / name}: sha256 does not match the manifest; the file is corrupt or altered")
        self._verified[name] = data
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
        """Plain arrays from a verified .npz: never unpickled, exactly the expected keys, and bounded by what
        is really there - each array's header (shape x dtype) must describe exactly the bytes that follow it,
        and all of them together stay under the arrays limit, checked before anything is allocated."""
        data = self.read(name)
        where = self.path / name
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
                if sorted(members) != sorted(keys):
                    raise BundleError(f"{where}: holds arrays {sorted(members)}, expected {sorted(keys)}")
                if sum(info.file_size for info in members.values()) > self.limits.arrays:
                    raise BundleError(
                        f"{where}: unpacks to more than {self.limits.arrays >> 20} MiB; refused "
                        "(EDGE_BERT_MAX_ARRAYS_MB raises the limit)"
                    )
                arrays = {key: _read_npy(archive, info, where) for key, info in members.items()}
        except BundleError:
            raise
        except (ValueError, OSError, zipfile.BadZipFile, EOFError, RecursionError) as exc:
            raise BundleError(f"{where}: not a readable .npz of plain arrays ({exc}); convert the model again") from exc
        return arrays


def open_bundle(path: str | Path, limits: Limits | None = None) -> Bundle:
    """Read and verify a bundle: manifest schema, a file tree without links or unlisted files, each file's
    claimed size within its limit, then the size and sha256 of every listed file, each read once and kept."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory (it does not exist or is not a directory)")
    root = root.resolve()
    manifest_path = root / MANIFEST
    if not manifest_path.is_file() or manifest_path.is_symlink():
        raise BundleError(f"{root}: no {MANIFEST} (a regular file); this is not an edge-bert bundle")
    raw_bytes, _ = _read_regular(root, MANIFEST, MAX_MANIFEST_BYTES)
    if len(raw_bytes) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{manifest_path}: larger than {MAX_MANIFEST_BYTES >> 20} MiB; not a manifest")
    try:
        raw = json.loads(raw_bytes.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # ValueError: also 4,300+ digit integers
        raise BundleError(f"{manifest_path}: not valid JSON ({str(exc)[:200]}); the bundle is corrupt") from exc
    try:
        manifest = parse_manifest(raw)
    except SchemaError as exc:
        raise BundleError(f"{manifest_path}: {exc}") from exc
    limits = limits or Limits.from_env()
    _check_sizes(root, manifest, limits)
    _check_tree(root, manifest)
    bundle = Bundle(root, manifest, raw_bytes, limits)
    for name in manifest.files:
        bundle.read(name)
    bundle.profile  # noqa: B018 - the stored profile must parse, or gates and bench settings are unknown
    return bundle


def _check_sizes(root: Path, manifest: Manifest, limits: Limits) -> None:
    """Refuse from the manifest's claims alone, before reading: a file over its limit, or too much in all."""
    for name, meta in manifest.files.items():
        limit, variable = limits.for_file(name)
        if meta.bytes > limit:
            raise BundleError(
                f"{root}: {name} is {meta.bytes} bytes, over the {limit >> 20} MiB limit for such a file "
                f"({variable} raises it)"
            )
    total = sum(meta.bytes for meta in manifest.files.values())
    if total > limits.total:
        raise BundleError(
            f"{root}: its files hold {total} bytes, over the {limits.total >> 20} MiB limit for a bundle "
            "(EDGE_BERT_MAX_BUNDLE_MB raises it)"
        )


def _read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: Path) -> np.ndarray:
    """One array of an .npz, its header checked against the bytes that follow it before allocating."""
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise BundleError(f"{where}: {info.filename} has an unsupported .npy version {version}")
        if dtype.hasobject:
            raise BundleError(f"{where}: not a readable .npz of plain arrays ({info.filename} holds Python objects)")
        claimed = math.prod(shape) * dtype.itemsize
        present = info.file_size - member.tell()
        if claimed != present:
            raise BundleError(
                f"{where}: {info.filename} claims shape {shape} ({claimed} bytes) but holds {present}; refused"
            )
    with archive.open(info) as member:  # read_array reads the header again itself
        return np.lib.format.read_array(member, allow_pickle=False)


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


def _read_regular(root: Path, name: str, size: int) -> tuple[bytes, str]:
    """Read ``root/name`` refusing symlinks at every step (O_NOFOLLOW), so the check and the read agree.

    Reads at most ``size + 1`` bytes (one more shows the file is longer than claimed) and hashes them as
    they come; returns the bytes and their sha256."""
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
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen, which refuses a directory on its own
        os.close(fd)
        raise BundleError(f"{root / name}: not a regular file")
    with os.fdopen(fd, "rb") as handle:
        digest, chunks, left = hashlib.sha256(), [], size + 1
        try:
            while left > 0 and (chunk := handle.read(min(left, CHUNK))):
                digest.update(chunk)
                chunks.append(chunk)
                left -= len(chunk)
        except OSError as exc:  # e.g. a directory opened on a platform without O_NOFOLLOW semantics
            raise BundleError(f"{root / name}: cannot be read ({exc.strerror or exc})") from exc
        return b"".join(chunks), digest.hexdigest()


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
    raw = (final / MANIFEST).read_bytes()
    return Bundle(final.resolve(), parse_manifest(json.loads(raw)), raw)


def _write_manifest(root: Path, manifest: dict[str, Any] | Manifest) -> None:
    """Every manifest goes through the typed object before it is written: a bundle is never made unreadable."""
    try:
        plain = (manifest if isinstance(manifest, Manifest) else parse_manifest(manifest)).to_dict()
    except SchemaError as exc:
        raise BundleError(f"internal error: convert produced a manifest the runner would refuse: {exc}") from exc
    (root / MANIFEST).write_text(json.dumps(plain, indent=2) + "\n", encoding="utf-8")


def with_manifest(bundle: Bundle, out: Path, manifest: Manifest, overwrite: bool = False) -> Path:
    """Copy a verified bundle's files (the verified bytes, never the disk again) to ``out`` with an edited
    typed manifest (fields outside ``files``, e.g. ``selection``), atomically (temp dir + rename)."""
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; pass --overwrite to replace it")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        staging.chmod(0o755)
        for name in bundle.manifest.files:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(bundle.read(name))
        _write_manifest(staging, parse_manifest(manifest.to_dict()))  # re-checked: an edit cannot break the schema
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


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
