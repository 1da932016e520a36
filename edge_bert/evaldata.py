"""Labelled evaluation data: the user's TSV/CSV/JSONL/JSON file, or a Hugging Face dataset id.

Runner side (no torch). Labels stay as the file spells them until ``match_labels`` maps them onto
the model's ``id2label`` - by name, or by index when the file holds numbers (GLUE's 0/1) - so a
label the model does not know is caught before anything runs, with examples in the message.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.errors import InputError
from edge_bert.limits import check_option
from edge_bert.ner import read_conll
from edge_bert.qa import read_squad

#: column names tried, in order, when the user names none
TEXT_COLUMNS = ("text", "sentence", "utterance", "query", "question", "content")
LABEL_COLUMNS = ("label", "intent", "labels", "category", "class")


@dataclass
class LabelledData:
    """Texts with their labels (``None`` when the data has no label column: parity/retrieval only).

    Token classification (CoNLL files): a text is the sentence's words joined by single spaces, its label
    their tags, one per word, space-separated. Question answering (SQuAD JSON): a text is the question,
    ``contexts`` holds its context and ``answers`` its gold answers."""

    texts: list[str]
    labels: list[str] | None
    source: dict[str, Any] = field(default_factory=dict)
    contexts: list[str] | None = None
    answers: list[list[str]] | None = None
    answer_starts: list[list[int]] | None = None  # the gold answers' character offsets (training labels)

    def __len__(self) -> int:
        return len(self.texts)

    def items(self) -> list[str] | list[tuple[str, str]]:
        """What the model is given per row: a text, or a (question, context) pair."""
        if self.contexts is None:
            return list(self.texts)
        return list(zip(self.texts, self.contexts, strict=True))

    def key_texts(self) -> list[str]:
        """Per row, the text whose hash matches it to the bundle's fp32 reference (question and context)."""
        if self.contexts is None:
            return list(self.texts)
        return [f"{question}\n\n{context}" for question, context in zip(self.texts, self.contexts, strict=True)]

    def references(self) -> list[Any] | None:
        """What the task is scored against: the labels, or (context, gold answers) per question."""
        if self.answers is None or self.contexts is None:
            return self.labels
        return list(zip(self.contexts, self.answers, strict=True))

    def subset(self, rows: list[int]) -> LabelledData:
        """The given rows (same source)."""
        pick = lambda values: None if values is None else [values[i] for i in rows]  # noqa: E731
        return LabelledData(
            pick(self.texts), pick(self.labels), self.source, pick(self.contexts), pick(self.answers),
            pick(self.answer_starts),
        )  # fmt: skip


def read_labelled(
    location: str | Path,
    text_column: str | None = None,
    label_column: str | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> LabelledData:
    """Read ``location``: a .tsv/.csv/.jsonl/.json/.txt file, or else a Hugging Face dataset id.

    Every row is kept or refused out loud: a row without text is skipped and counted (``source``'s
    ``empty_rows``), a null text or label is an error naming the row, and bytes that are not UTF-8 are
    an error naming the offset."""
    check_option("--limit", limit)
    path = Path(location)
    structured = _read_structured(path, split) if path.is_file() else None
    if structured is not None:
        rows = structured.subset(list(range(min(limit or len(structured), len(structured)))))
        rows.source = {"kind": "file", "path": str(path), "name": path.name, "split": split, "rows": len(rows)}
        return rows
    if path.is_file():
        readers = {".tsv": _read_tsv, ".csv": _read_csv, ".jsonl": _read_jsonl, ".json": _read_json, ".txt": _read_txt}
        reader = readers.get(path.suffix.lower())
        if reader is None:
            raise InputError(f"{path}: unknown data format {path.suffix!r}; use .tsv, .csv, .jsonl, .json or .txt")
        try:
            texts, labels = reader(path, text_column, label_column, split)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                "save the file as UTF-8"
            ) from exc
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        source = {"kind": "file", "path": str(path), "name": path.name, "split": split}
    elif path.exists() or _looks_like_path(str(location)):
        raise InputError(f"evaluation data not found: {path} (not a file)")
    else:
        texts, labels = _read_hub(str(location), text_column, label_column, split or "validation")
        source = {"kind": "hub", "id": str(location), "split": split or "validation"}
    _check_values(texts, labels, str(location))
    pairs = list(zip(texts, labels or [None] * len(texts), strict=True))
    rows = [(t.strip(), lab) for t, lab in pairs if t.strip()]
    empty = len(pairs) - len(rows)
    if not rows:
        raise InputError(f"{location}: contains no texts")
    rows = rows[:limit] if limit else rows
    has_labels = labels is not None
    return LabelledData(
        [t for t, _ in rows],
        [str(lab).strip() for _, lab in rows] if has_labels else None,
        {**source, "rows": len(rows), **({"empty_rows": empty} if empty else {})},
    )


def _read_structured(path: Path, split: str | None = None) -> LabelledData | None:
    """A CoNLL token/tag file (.conll) or a SQuAD-format JSON file; None for any other file."""
    try:
        if path.suffix.lower() == ".conll":
            words, tags = read_conll(path)
            return LabelledData([" ".join(w) for w in words], [" ".join(t) for t in tags])
        squad = read_squad(path, split) if path.suffix.lower() == ".json" else None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (offset {exc.start}); save the file as UTF-8") from exc
    if squad is None:
        return None
    if not squad.questions:
        raise InputError(f"{path}: contains no questions")
    return LabelledData(
        squad.questions, None, contexts=squad.contexts, answers=squad.answers, answer_starts=squad.starts
    )


def _check_values(texts: list[Any], labels: list[Any] | None, where: str) -> None:
    """A JSON null is not the text "None": name the first row whose text or label is not a string."""
    for number, text in enumerate(texts, 1):
        if not isinstance(text, str):
            raise InputError(f"{where}: row {number}: the text is {_kind(text)}, not a string")
    for number, label in enumerate(labels or [], 1):
        if label is None or isinstance(label, dict | list | float):
            raise InputError(f"{where}: row {number}: the label is {_kind(label)}; labels are names or indices")


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__} ({str(value)[:30]!r})"


def match_labels(labels: list[str], label_names: list[str]) -> np.ndarray:
    """Class indices of ``labels`` in the model's ``label_names``: by name, else by index (``0``, ``1``...)."""
    by_name = {name: i for i, name in enumerate(label_names)}
    by_folded = {name.casefold(): i for i, name in enumerate(label_names)}
    if all(label in by_name for label in labels):
        return np.asarray([by_name[label] for label in labels], np.int64)
    if all(label.casefold() in by_folded for label in labels):
        return np.asarray([by_folded[label.casefold()] for label in labels], np.int64)
    if all(_is_index(label, len(label_names)) for label in labels):
        return np.asarray([int(label) for label in labels], np.int64)
    unknown = Counter(label for label in labels if label.casefold() not in by_folded)
    examples = ", ".join(f"{label!r} ({n} rows)" for label, n in unknown.most_common(5))
    known = ", ".join(repr(n) for n in label_names[:8]) + (" ..." if len(label_names) > 8 else "")
    raise InputError(
        f"{len(unknown)} label(s) in the data are not labels of the model: {examples}. "
        f"The model's {len(label_names)} labels are {known} (matched by name, or by index 0..{len(label_names) - 1})"
    )


def _label(value: Any) -> Any:
    """Labels are compared as text (``1`` and ``"1"`` are the same label); null stays null for the check."""
    return value if value is None or isinstance(value, dict | list | float) else str(value)


def _is_index(label: str, count: int) -> bool:
    return label.lstrip("-").isdigit() and 0 <= int(label) < count


def _looks_like_path(location: str) -> bool:
    """A dataset id is ``name`` or ``owner/name``; anything with a suffix or more slashes is a path."""
    return location.startswith((".", "/", "~")) or location.count("/") > 1 or Path(location).suffix != ""


def _pick(columns: list[str], wanted: str | None, defaults: tuple[str, ...], what: str, where: str) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise InputError(f"{where}: no {what} column {wanted!r}; its columns are {columns}")
        return wanted
    return next((c for c in defaults if c in columns), None)


def _columns(rows: list[dict[str, Any]], text_column: str | None, label_column: str | None, where: str):
    columns = list(rows[0]) if rows else []
    text = _pick(columns, text_column, TEXT_COLUMNS, "text", where)
    if text is None:
        raise InputError(f"{where}: no text column (tried {list(TEXT_COLUMNS)}); name it with --text-column")
    label = _pick(columns, label_column, LABEL_COLUMNS, "label", where)
    try:
        texts = [row[text] for row in rows]
        labels = [_label(row[label]) for row in rows] if label else None
    except KeyError as exc:
        raise InputError(f"{where}: a row lacks the {exc.args[0]!r} field") from exc
    return texts, labels


def _read_tsv(path: Path, text_column: str | None, label_column: str | None, split: str | None):
    """GLUE-style TSV, header or not: with two columns split on the *last* tab (texts may hold tabs);
    with a header naming more columns, pick them by name."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise InputError(f"{path}: contains no texts")
    header = lines[0].split("\t")
    named = text_column or label_column or len(header) > 2
    if named and (set(header) & {*TEXT_COLUMNS, *LABEL_COLUMNS, text_column, label_column}):
        rows = [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:]]
        return _columns(rows, text_column, label_column, str(path))
    pairs = [line.rpartition("\t") for line in lines]
    if pairs and "\t" not in lines[0]:
        return [line for line in lines], None
    first_text, _, first_label = pairs[0]
    if first_text.strip().lower() in TEXT_COLUMNS and first_label.strip().lower() in LABEL_COLUMNS:
        pairs = pairs[1:]
    return [text for text, _, _ in pairs], [label for _, _, label in pairs]


def _read_csv(path: Path, text_column: str | None, label_column: str | None, split: str | None):
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return _columns(rows, text_column, label_column, str(path))


def _read_jsonl(path: Path, text_column: str | None, label_column: str | None, split: str | None):
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except (ValueError, RecursionError) as exc:  # ValueError: also 4,300+ digit integers
                raise InputError(f"{path}:{number}: not a JSON object ({exc})") from exc
    if any(not isinstance(row, dict) for row in rows):
        raise InputError(f"{path}: each line must be a JSON object with text and label fields")
    return _columns(rows, text_column, label_column, str(path))


def _read_json(path: Path, text_column: str | None, label_column: str | None, split: str | None):
    """A list of ``[text, label]`` pairs or of objects, or a dict of such lists keyed by split
    (CLINC150's ``data_full.json``: pass ``--split test``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # ValueError: also 4,300+ digit integers
        raise InputError(f"{path}: not valid JSON ({str(exc)[:200]})") from exc
    if isinstance(data, dict):
        if split is None or split not in data:
            raise InputError(f"{path} holds splits {sorted(data)}; choose one with --split (got {split!r})")
        data = data[split]
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty list of [text, label] pairs or objects")
    if all(isinstance(row, list | tuple) and len(row) == 2 for row in data):
        return [t for t, _ in data], [_label(label) for _, label in data]
    if all(isinstance(row, dict) for row in data):
        return _columns(data, text_column, label_column, str(path))
    raise InputError(f"{path}: expected a list of [text, label] pairs or of objects")


def _read_txt(path: Path, text_column: str | None, label_column: str | None, split: str | None):
    return path.read_text(encoding="utf-8").splitlines(), None


def _read_hub(dataset_id: str, text_column: str | None, label_column: str | None, split: str):
    """A Hugging Face dataset (needs the ``datasets`` package and the hub); class labels become names."""
    try:
        from datasets import load_dataset
    except ImportError as exc:
        raise InputError(
            f"{dataset_id!r} is not a file; reading a Hugging Face dataset needs `pip install datasets`"
        ) from exc
    name, _, config = dataset_id.partition(":")
    try:
        dataset = load_dataset(name, config or None, split=split)
    except Exception as exc:  # datasets raises many types (connection, missing split, missing config)
        raise InputError(f"cannot load the Hugging Face dataset {dataset_id!r} split {split!r}: {exc}") from exc
    text = _pick(dataset.column_names, text_column, TEXT_COLUMNS, "text", dataset_id)
    if text is None:
        raise InputError(f"{dataset_id}: no text column among {dataset.column_names}; name it with --text-column")
    label = _pick(dataset.column_names, label_column, LABEL_COLUMNS, "label", dataset_id)
    names = getattr(dataset.features.get(label), "names", None) if label else None
    values = dataset[label] if label else None
    return list(dataset[text]), [names[v] if names else v for v in values] if values is not None else None
