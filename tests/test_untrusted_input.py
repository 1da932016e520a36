"""A bundle, a data file and the options are untrusted input: every unusable one is refused with exit 2,
one line on stderr naming the file/field, no traceback, and nothing written outside the intended place.

Each case copies a real bundle (a tiny BERT converted by edge-bert, with an fp32 eval reference),
damages it the way a file share, an SD card or an attacker could, and runs the real CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import LABELS, sst2_dev
from typer.testing import CliRunner

from edge_bert.cli import app
from edge_bert.convert.pipeline import convert
from edge_bert.evaldata import read_labelled

TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"
runner = CliRunner()


@pytest.fixture(scope="module")
def pristine(tiny_models, tmp_path_factory) -> Path:
    """A real fp32 ONNX bundle with an eval reference (eval_reference.npz) to damage."""
    root = tmp_path_factory.mktemp("pristine")
    data = root / "eval.tsv"
    rows = sst2_dev(limit=40)
    data.write_text("text\tlabel\n" + "".join(f"{t}\t{LABELS[2 * y]}\n" for t, y in rows), encoding="utf-8")
    (outcome,) = convert(
        str(tiny_models["bert"]),
        TINY_PROFILE,
        root / "bundles",
        recipes=["fp32"],
        eval_data=read_labelled(data),
        log=lambda _: None,
    )
    assert outcome.passed, outcome.error
    return outcome.bundle


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _save(bundle: Path, manifest: dict) -> None:
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _edit(change: Callable[[dict], None]) -> Callable[[Path, Path], None]:
    def apply(bundle: Path, work: Path) -> None:
        manifest = _manifest(bundle)
        change(manifest)
        _save(bundle, manifest)

    return apply


def _resign(bundle: Path, name: str) -> None:
    """Update a file's checksum in the manifest, as a forger would: the content checks must still hold."""
    manifest = _manifest(bundle)
    data = (bundle / name).read_bytes()
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    _save(bundle, manifest)


def _replace_file(name: str, make: Callable[[Path], None]) -> Callable[[Path, Path], None]:
    def apply(bundle: Path, work: Path) -> None:
        make(bundle / name)
        _resign(bundle, name)

    return apply


def _symlink(name: str) -> Callable[[Path, Path], None]:
    def apply(bundle: Path, work: Path) -> None:
        outside = work / f"outside-{name}"
        shutil.copyfile(bundle / name, outside)  # same bytes, so only the link itself is wrong
        (bundle / name).unlink()
        (bundle / name).symlink_to(outside)

    return apply


def _dir_link(bundle: Path, work: Path) -> None:
    (bundle / "sub").symlink_to("/")
    manifest = _manifest(bundle)
    data = Path("/etc/passwd").read_bytes()
    manifest["files"]["sub/etc/passwd"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    _save(bundle, manifest)


def _external_data(listed: bool) -> Callable[[Path, Path], None]:
    """model.onnx saved with its weights in weights.bin, which onnxruntime would open on its own."""

    def apply(bundle: Path, work: Path) -> None:
        model = onnx.load(str(bundle / "model.onnx"))
        onnx.save_model(model, str(bundle / "model.onnx"), save_as_external_data=True, location="weights.bin",
                        size_threshold=0)  # fmt: skip
        _resign(bundle, "model.onnx")
        if listed:
            _resign(bundle, "weights.bin")

    return apply


def _not_zip(path: Path) -> None:
    path.write_bytes(b"this is not a zip file at all")


def _object_arrays(path: Path) -> None:
    with np.load(path) as old:
        arrays = {k: old[k] for k in old.files}
    arrays["output"] = np.array([{"evil": 1}] * len(arrays["output"]), dtype=object)
    np.savez(path, **arrays)


def _wrong_shape(path: Path) -> None:
    with np.load(path) as old:
        arrays = {k: old[k] for k in old.files}
    arrays["output"] = arrays["output"][:, :2]
    np.savez(path, **arrays)


def _drop_bytes(manifest: dict) -> None:
    del manifest["files"]["model.onnx"]["bytes"]


# (case id, damage to the bundle, CLI arguments after the bundle path, text the error line must hold)
BUNDLE_CASES = [
    ("name-absolute", _edit(lambda m: m.update(name="/tmp/edge-bert-owned/x")), ["validate"], "name: must be"),
    ("name-dotdot", _edit(lambda m: m.update(name="../../x")), ["validate"], "name: must be"),
    ("model-symlink", _symlink("model.onnx"), ["validate"], "model.onnx is a symbolic link"),
    ("tokenizer-symlink", _symlink("tokenizer.json"), ["validate"], "tokenizer.json is a symbolic link"),
    ("dir-symlink", _dir_link, ["validate"], "sub is a symbolic link"),
    ("external-data-unlisted", _external_data(listed=False), ["validate"], "weights.bin is not listed"),
    ("external-data-listed", _external_data(listed=True), ["validate"], "onnxruntime cannot load this model"),
    ("eval-file-absolute", _edit(lambda m: m["eval"].update(file="/etc/passwd")), ["validate"], "eval.file"),
    ("eval-file-dotdot", _edit(lambda m: m["eval"].update(file="../x.npz")), ["validate"], "eval.file"),
    ("unlisted-file", lambda b, w: (b / "notes.txt").write_text("hi"), ["validate"], "notes.txt is not listed"),
    ("unknown-key", _edit(lambda m: m.update(extra=1)), ["validate"], "extra: unknown key"),
    ("schema-version-true", _edit(lambda m: m.update(schema_version=True)), ["validate"], "schema_version: True"),
    ("files-list", _edit(lambda m: m.update(files=[])), ["validate"], "files: expected a table/object"),
    ("files-null", _edit(lambda m: m.update(files=None)), ["validate"], "files: expected a table/object"),
    ("max-length-str", _edit(lambda m: m["shapes"].update(max_length="abc")), ["validate"], "shapes.max_length"),
    ("gate-str", _edit(lambda m: m["recipe"]["gates"].update(min_cosine="high")), ["validate"], "min_cosine"),
    ("profile-broken", _edit(lambda m: m.update(format=3)), ["validate", "--profile", "x86"], "format: expected"),
    ("bench-no-bytes", _edit(_drop_bytes), ["bench", "--runs", "1"], "files.model.onnx.bytes: missing"),
    ("inspect-no-bytes", _edit(_drop_bytes), ["inspect"], "files.model.onnx.bytes: missing"),
    ("golden-not-zip", _replace_file("golden.npz", _not_zip), ["validate"], "golden.npz: not a readable .npz"),
    ("golden-objects", _replace_file("golden.npz", _object_arrays), ["validate"], "golden.npz: not a readable"),
    ("golden-shape", _replace_file("golden.npz", _wrong_shape), ["validate"], "do not belong together"),
    (
        "eval-ref-not-zip",
        _replace_file("eval_reference.npz", _not_zip),
        ["validate", "--data", "{eval_tsv}"],
        "eval_reference.npz: not a readable .npz",
    ),
    ("stored-profile", _edit(lambda m: m["target"]["bench"].update(runs=0)), ["bench"], "target: bench.runs"),
]

#: the one rule --seq-lengths has in every verb (limits.OPTION_BOUNDS)
SEQ = "--seq-lengths must be between 2 and 8192 (tokens), "
NON_UTF8 = b"good text\t1\nbad \xff\xfe text\t0\n"


def _data_file(suffix: str, content: bytes) -> Callable[[Path], list[str]]:
    def make(work: Path) -> list[str]:
        path = work / f"data{suffix}"
        path.write_bytes(content)
        return ["--data", str(path)]

    return make


# (case id, CLI arguments made in the work dir, the command, text the error line must hold)
OPTION_CASES = [
    ("data-tsv-utf8", _data_file(".tsv", NON_UTF8), "validate", "data.tsv: not UTF-8 text (byte 0xff at offset"),
    ("data-csv-utf8", _data_file(".csv", b"text,label\n\xff,1\n"), "validate", "not UTF-8"),
    ("data-txt-utf8", _data_file(".txt", b"ok\n\xc3\x28\n"), "validate", "not UTF-8"),
    ("data-jsonl-utf8", _data_file(".jsonl", b'{"text": "\xff", "label": 1}\n'), "validate", "not UTF-8"),
    ("data-json-null", _data_file(".json", b'[[null, "positive"]]'), "validate", "row 1: the text is null"),
    ("data-jsonl-null-label", _data_file(".jsonl", b'{"text": "a", "label": null}\n'), "validate", "label is null"),
    ("limit-0", lambda w: ["--data", str(_tsv(w)), "--limit", "0"], "validate", "--limit must be between 1 and"),
    ("limit-negative", lambda w: ["--data", str(_tsv(w)), "--limit", "-1"], "validate", "--limit must be between"),
    ("bench-texts-utf8", lambda w: ["--texts", str(_bytes(w, "t.txt", b"\xff\n"))], "bench", "not UTF-8"),
    ("bench-runs-0", lambda w: ["--runs", "0"], "bench", "--runs must be between 1 and"),
    ("bench-seq-letters", lambda w: ["--seq-lengths", "a,b"], "bench", "--seq-lengths 'a,b'"),
    ("bench-seq-negative", lambda w: ["--seq-lengths", "16,-1"], "bench", SEQ + "got -1"),
    ("bench-seq-minus-5", lambda w: ["--seq-lengths", "-5"], "bench", SEQ + "got -5"),
    ("bench-seq-zero", lambda w: ["--seq-lengths", "0"], "bench", SEQ + "got 0"),
    ("json-missing-dir", lambda w: ["--json", str(w / "nope" / "r.json")], "validate", "does not exist"),
    ("json-is-dir", lambda w: ["--json", str(w)], "validate", "is a directory"),
    ("report-dir-is-file", lambda w: ["--report-dir", str(_bytes(w, "f", b"x") / "r")], "validate", "reports to"),
    ("profile-unknown", lambda w: ["--profile", "pi9"], "validate", "unknown target 'pi9'"),
]


def _tsv(work: Path) -> Path:
    return _bytes(work, "ok.tsv", b"text\tlabel\na fine film\tpositive\n")


def _bytes(work: Path, name: str, content: bytes) -> Path:
    path = work / name
    path.write_bytes(content)
    return path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _assert_refused(result, expected: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback: handled, not crashed
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert result.stdout == "", result.stdout  # errors never go to stdout (it may carry JSON)


@pytest.mark.parametrize(
    ("damage", "argv", "expected"), [c[1:] for c in BUNDLE_CASES], ids=[c[0] for c in BUNDLE_CASES]
)
def test_damaged_bundle_is_refused(pristine, tmp_path, damage, argv, expected):
    bundle = Path(shutil.copytree(pristine, tmp_path / "b" / pristine.name))
    work = tmp_path / "work"
    work.mkdir()
    damage(bundle, work)
    argv = [arg.replace("{eval_tsv}", str(pristine.parent.parent / "eval.tsv")) for arg in argv]
    before = _tree(tmp_path)
    result = runner.invoke(app, [argv[0], str(bundle), *argv[1:], "--report-dir", str(work / "reports")]
                           if argv[0] == "validate" else [argv[0], str(bundle), *argv[1:]])  # fmt: skip
    _assert_refused(result, expected)
    assert _tree(tmp_path) - before <= {"work/reports"}, _tree(tmp_path) - before  # nothing written elsewhere
    assert not Path("/tmp/edge-bert-owned").exists()


@pytest.mark.parametrize(
    ("make", "command", "expected"), [c[1:] for c in OPTION_CASES], ids=[c[0] for c in OPTION_CASES]
)
def test_bad_option_or_data_is_refused(pristine, tmp_path, make, command, expected):
    argv = make(tmp_path)
    before = _tree(tmp_path)
    result = runner.invoke(app, [command, str(pristine), *argv])
    _assert_refused(result, expected)
    assert _tree(tmp_path) == before  # checked before any work: no report, no JSON, no partial file


def test_errors_go_to_stderr_with_json_to_stdout(pristine, tmp_path):
    result = runner.invoke(app, ["bench", str(pristine), "--json", "-", "--runs", "0"])
    _assert_refused(result, "--runs must be between 1 and")


def test_json_path_is_checked_before_the_work(pristine, tmp_path):
    """A PASS must not be lost: a good run with a good --json path writes it, a bad one stops first."""
    target = tmp_path / "result.json"
    result = runner.invoke(app, ["validate", str(pristine), "--json", str(target), "--report-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text())["passed"] is True


def test_hostile_name_cannot_leave_the_report_dir(pristine, tmp_path):
    """Even a result document from elsewhere (a device) is written under a sanitised name."""
    from dataclasses import replace

    from edge_bert.render.terminal import write_reports
    from edge_bert.results.header import DeviceInfo
    from edge_bert.results.io import parse_result

    result = runner.invoke(app, ["validate", str(pristine), "--json", "-", "--report-dir", str(tmp_path / "r")])
    # built in this process (no parse): the name checks of the typed result are not what keeps it inside
    typed = parse_result(json.loads(result.stdout))
    device = DeviceInfo(id="ssh://x/../../y", kind="ssh", emulated=False)
    hostile = replace(typed, bundle="../../escaped", device=device)
    files = write_reports(hostile, tmp_path / "reports")
    assert all(f.parent == tmp_path / "reports" for f in files), files
    assert not (tmp_path / "escaped.validate.json").exists()


def test_pristine_copy_still_passes(pristine, tmp_path):
    """The damage, not the copying, is what the cases above refuse."""
    bundle = Path(shutil.copytree(pristine, tmp_path / pristine.name))
    result = runner.invoke(app, ["validate", str(bundle), "--report-dir", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output


def test_truncation_before_tokenizing_is_exact_and_bounded(pristine):
    """A 50 MB single-line text is cut before the tokenizer sees it: same ids as tokenizing all of it."""
    from tokenizers import Tokenizer

    from edge_bert.bundle import open_bundle
    from edge_bert.session import TextEncoder

    encoder = TextEncoder(open_bundle(pristine))
    full = Tokenizer.from_file(str(pristine / "tokenizer.json"))
    full.no_truncation()
    rows = [t for t, _ in sst2_dev(limit=200)]
    for limit in (16, 128):
        for text in [*rows[:50], " ".join(rows)]:
            ids = full.encode(text).ids
            expected = ids if len(ids) <= limit else ids[: limit - 1] + ids[-1:]
            assert encoder.encode(text, limit).ids.tolist() == expected
    huge = "a fine film " * 4_500_000  # 54 MB, one line: tokenizing it whole took 65 s and 7 GB
    encoded = encoder.encode(huge)
    assert encoded.truncated and len(encoded.ids) == encoder.max_length
    assert encoded.original_length < 10_000  # only a prefix was tokenized
