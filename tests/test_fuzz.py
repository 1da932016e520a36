"""Issue 17's fuzz test: manifests, result files and data files made by hypothesis, fed to the real CLI.

The contract for every input: exit 0/1 (it happened to be valid) or 2 with exactly one line on stderr, never a
traceback, stdout pure JSON with ``--json -``, nothing written outside the work directory. Bounded: a fixed
number of examples per property (about a minute in all on 2 cores), no deadline per example.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile import pristine  # noqa: F401 - the real tiny bundle the manifests are mutated from
from typer.testing import CliRunner

from edge_bert.cli import app

runner = CliRunner()
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

#: JSON values, including what breaks naive readers: huge integers, NaN, deep nesting, odd strings
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
    | st.sampled_from(["../../etc/passwd", "/etc/passwd", "[/x]", "\x1b[2J", "a|b\n|c", "model.onnx", "", "-"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _contract(result, json_stdout: bool = False) -> None:
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit) or result.exception is None, repr(result.exception)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    if json_stdout and result.exit_code != 2:
        json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))


def _paths(value, prefix=()):
    """Every path to a value inside a JSON document."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


@FUZZ
@given(data=st.data())
def test_fuzzed_manifests_keep_the_contract(pristine, tmp_path_factory, data):  # noqa: F811
    work = tmp_path_factory.mktemp("fuzz-manifest")
    bundle = Path(shutil.copytree(pristine, work / pristine.name))
    manifest = _mutate(data, json.loads((bundle / "manifest.json").read_text()), data.draw(st.integers(1, 3)))
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    verb = data.draw(st.sampled_from([["inspect"], ["validate", "--json", "-", "--report-dir", str(work / "r")]]))
    result = runner.invoke(app, [verb[0], str(bundle), *verb[1:]])
    _contract(result, json_stdout="--json" in verb)
    assert {p.name for p in work.iterdir()} <= {pristine.name, "r"}


def _has(container, key) -> bool:
    return key in container if isinstance(container, dict) else isinstance(key, int) and key < len(container)


@pytest.fixture(scope="module")
def real_results(pristine) -> list[dict]:  # noqa: F811
    from edge_bert.bench.protocol import bench
    from edge_bert.validate import validate

    return [validate(pristine), bench(pristine, runs=2, warmup=1, seq_lengths=(16,))]


def _mutate(data, document: dict, rounds: int) -> dict:
    """``document`` with up to ``rounds`` of its values (at any depth) replaced by fuzzed JSON."""
    document = json.loads(json.dumps(document))
    for _ in range(rounds):
        path = data.draw(st.sampled_from([p for p in _paths(document) if p]))
        parent = document
        for key in path[:-1]:
            parent = parent[key] if isinstance(parent, dict | list) and _has(parent, key) else None
            if parent is None:
                break
        if isinstance(parent, dict | list) and _has(parent, path[-1]):
            parent[path[-1]] = data.draw(json_values)
    return document


@FUZZ
@given(data=st.data())
def test_fuzzed_result_files_never_stop_the_table(real_results, tmp_path_factory, data):
    results = tmp_path_factory.mktemp("fuzz-results")
    for index, real in enumerate(real_results):
        document = _mutate(data, real, data.draw(st.integers(1, 3)))
        (results / f"r{index}.json").write_text(json.dumps(document))
    (results / "junk.json").write_bytes(data.draw(st.binary(max_size=100)))
    for argv in (["results", str(results)], ["results", str(results), "--json", "-"]):
        result = runner.invoke(app, argv)
        assert result.exit_code in (0, 2), (result.output, result.exception)
        assert isinstance(result.exception, SystemExit) or result.exception is None, repr(result.exception)
        assert "Traceback" not in result.output


@FUZZ
@given(
    suffix=st.sampled_from([".tsv", ".csv", ".jsonl", ".json", ".txt", ".conll"]),
    content=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_fuzzed_data_files_keep_the_contract(pristine, tmp_path_factory, suffix, content):  # noqa: F811
    work = tmp_path_factory.mktemp("fuzz-data")
    data = work / f"data{suffix}"
    data.write_bytes(content)
    result = runner.invoke(app, ["validate", str(pristine), "--data", str(data), "--report-dir", str(work / "r")])
    _contract(result)
