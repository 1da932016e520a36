"""Real text for golden sets, calibration and benchmarks: built-in samples or the user's own file."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from edge_bert.errors import InputError


def builtin_texts(name: str = "sentences") -> list[str]:
    """Texts shipped with edge-bert (written for it): ``sentences`` (golden set) or ``paragraphs`` (bench)."""
    text = resources.files("edge_bert").joinpath(f"data/{name}.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def read_texts(path: str | Path, column: str = "text", limit: int | None = None) -> list[str]:
    """Texts from a .txt (one per line), .tsv (text before the last tab; a ``text`` header is skipped)
    or .jsonl (the ``column`` field) file."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"text file not found: {file}")
    if limit is not None and limit < 1:
        raise InputError(f"the number of texts to use must be at least 1, got {limit}")
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{file}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from exc
    except OSError as exc:
        raise InputError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    suffix = file.suffix.lower()
    if suffix == ".jsonl":
        texts = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)[column]
            except (ValueError, RecursionError, KeyError, TypeError) as exc:
                raise InputError(f"{file}:{number}: not a JSON object with a {column!r} field ({exc})") from exc
            if not isinstance(value, str):
                raise InputError(f"{file}:{number}: {column!r} is {json.dumps(value)[:30]}, not a string")
            texts.append(value)
    elif suffix == ".tsv":
        rows = [line.rpartition("\t")[0] if "\t" in line else line for line in lines]
        texts = rows[1:] if rows and rows[0].strip().lower() == column else rows
    else:
        texts = lines
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise InputError(f"{file}: contains no texts")
    return texts[:limit] if limit else texts
