"""Strict reading of typed dataclasses from JSON/TOML data (runner side, stdlib only).

Why our own 100 lines and not pydantic: the runner must stay small enough for a Raspberry Pi and the
checks needed are few. Every boundary object (the bundle manifest, a profile's recipe options, gates)
is a frozen dataclass read through :func:`parse`, so an unknown key, a missing key or a value of the
wrong type is one error naming the field - ``recipe.gates.min_cosine: expected a number, got 'high'`` -
instead of a KeyError deep inside validate. ``bool`` is never accepted for a number (JSON ``true`` is
not ``1``), and a field may carry a ``check`` in its metadata for ranges and formats.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")

#: ``field(metadata={CHECK: fn})``: fn(value) returns an error text, or None when the value is fine
CHECK = "check"
#: ``field(metadata={KEY: "pass"})``: the key in the data when it cannot be the field's name (a keyword)
KEY = "key"


class SchemaError(ValueError):
    """Data that does not fit its schema; ``field`` is the dotted path of the offending value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def parse(cls: type[T], data: Any, where: str = "") -> T:
    """Build ``cls`` (a dataclass) from plain data, checking keys and types all the way down."""
    return _value(cls, data, where)


def to_plain(obj: Any, drop_unset: bool = False) -> Any:
    """A dataclass tree back to JSON-ready dicts and lists (tuples become lists). ``drop_unset``: leave out an
    optional field that holds its default None, so a document keeps the keys it had before the field existed."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            _key(f): to_plain(getattr(obj, f.name), drop_unset)
            for f in dataclasses.fields(obj)
            if not (drop_unset and f.default is None and getattr(obj, f.name) is None)
        }
    if isinstance(obj, dict):
        return {str(k): to_plain(v, drop_unset) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v, drop_unset) for v in obj]
    return obj


def _dataclass(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise SchemaError(where, f"expected a table/object, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {_key(f): f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SchemaError(_join(where, unknown[0]), f"unknown key; known keys here: {', '.join(fields)}")
    values = {}
    for key, field in fields.items():
        path = _join(where, key)
        if key not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise SchemaError(path, "missing (required)")
            continue
        value = _value(hints[field.name], data[key], path)
        check: Callable[[Any], str | None] | None = field.metadata.get(CHECK)
        if check is not None and value is not None and (problem := check(value)):
            raise SchemaError(path, problem)
        values[field.name] = value
    return cls(**values)


def _value(hint: Any, data: Any, where: str) -> Any:
    if hint is Any:
        return data
    if dataclasses.is_dataclass(hint):
        return _dataclass(hint, data, where)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: the error is X's, with its own field path
            return _value(options[0], data, where)
        errors = []
        for option in options:
            try:
                return _value(option, data, where)
            except SchemaError as exc:
                errors.append(exc.message)
        raise SchemaError(where, " or ".join(dict.fromkeys(errors)))
    if origin is Literal:
        if data not in args or isinstance(data, bool) != any(isinstance(a, bool) for a in args):
            raise SchemaError(where, f"must be one of {', '.join(repr(a) for a in args)}, got {_show(data)}")
        return data
    if origin in (list, tuple):
        if not isinstance(data, list | tuple):
            raise SchemaError(where, f"expected a list, got {_show(data)}")
        item = args[0] if args else Any
        items = [_value(item, v, f"{where}[{i}]") for i, v in enumerate(data)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(data, dict):
            raise SchemaError(where, f"expected a table/object, got {_show(data)}")
        value_hint = args[1] if args else Any
        return {str(k): _value(value_hint, v, _join(where, str(k))) for k, v in data.items()}
    return _scalar(hint, data, where)


def _scalar(hint: Any, data: Any, where: str) -> Any:
    if hint is bool:
        if not isinstance(data, bool):
            raise SchemaError(where, f"expected true or false, got {_show(data)}")
        return data
    if hint is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise SchemaError(where, f"expected an integer, got {_show(data)}")
        return data
    if hint is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise SchemaError(where, f"expected a number, got {_show(data)}")
        if not math.isfinite(data):  # a gate of NaN never passes and one of Infinity never fails: refused
            raise SchemaError(where, f"expected a finite number, got {_show(data)}")
        return float(data)
    if hint is str:
        if not isinstance(data, str):
            raise SchemaError(where, f"expected a string, got {_show(data)}")
        return data
    if hint is type(None):
        if data is not None:
            raise SchemaError(where, f"expected null, got {_show(data)}")
        return None
    raise TypeError(f"schema: unsupported annotation {hint!r} at {where}")  # a bug in our own types


def _key(field: dataclasses.Field) -> str:
    return field.metadata.get(KEY, field.name)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- checks shared by several schemas ---


def at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be ≥ {low:g}, got {v!r}"


def between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be between {low:g} and {high:g}, got {v!r}"


def each(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def run(values: Any) -> str | None:
        return next((problem for v in values if (problem := check(v))), None)

    return run
