"""Reading a result document (a file, a device's answer) into its typed object, strictly.

The ``schema`` field names the kind and its version (``edge-bert/bench/v2``). A version this edge-bert
does not read - newer (made by a later edge-bert) or older (a shape no longer read) - is refused with one
line naming it; anything else that does not fit is a SchemaError naming the dotted field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from edge_bert.results import bench, validate
from edge_bert.results.bench import BenchResult
from edge_bert.results.validate import ValidateResult
from edge_bert.schema import SchemaError, parse

Result = ValidateResult | BenchResult

#: kind -> (the version this edge-bert reads and writes, its class)
KINDS: dict[str, tuple[int, type[ValidateResult] | type[BenchResult]]] = {
    "validate": (int(validate.SCHEMA.rsplit("/v", 1)[1]), ValidateResult),
    "bench": (int(bench.SCHEMA.rsplit("/v", 1)[1]), BenchResult),
}
_SCHEMA = re.compile(r"^edge-bert/([a-z-]+)/v([0-9]{1,6})$")
#: a result file larger than this is not one of ours (a bench result is a few KB)
MAX_RESULT_BYTES = 16 << 20


def is_result(data: Any) -> bool:
    """Whether ``data`` says it is a validate or bench result (of any version): other JSON files beside
    results (a run summary, a manifest) are not results and not worth a line."""
    schema = data.get("schema") if isinstance(data, dict) else None
    found = _SCHEMA.match(schema) if isinstance(schema, str) else None
    return found is not None and found.group(1) in KINDS


def parse_result(data: Any) -> Result:
    """The typed result ``data`` holds; SchemaError naming the version or the first offending field."""
    if not isinstance(data, dict):
        raise SchemaError("", "a result must be a JSON object")
    schema = data.get("schema")
    found = _SCHEMA.match(schema) if isinstance(schema, str) else None
    if found is None or found.group(1) not in KINDS:
        raise SchemaError("schema", f"{schema!r:.60} is not an edge-bert validate or bench result")
    version, cls = KINDS[found.group(1)]
    if int(found.group(2)) != version:
        age = "newer" if int(found.group(2)) > version else "older"
        hint = "upgrade edge-bert to read it" if age == "newer" else "run it again with this edge-bert"
        raise SchemaError("schema", f"{schema} is not one this edge-bert reads ({age} than v{version}; {hint})")
    return parse(cls, data)


def load_result(path: Path) -> Result:
    """A result file, read strictly: at most 16 MiB of UTF-8 JSON (ValueError/OSError/SchemaError)."""
    if not path.is_file() or path.stat().st_size > MAX_RESULT_BYTES:
        raise ValueError(f"not a regular file of at most {MAX_RESULT_BYTES >> 20} MiB")
    return parse_result(json.loads(path.read_bytes().decode("utf-8")))


def check(result: Result) -> Result:
    """A result as a reader would see it after JSON (non-finite numbers become null): what a writer's test
    checks, so every document a writer makes is one a reader accepts."""
    text = json.dumps(result.to_dict(), allow_nan=True)
    return parse_result(json.loads(text, parse_constant=lambda _: None))
