"""Issue 17: bundles, devices and result files tried as an attacker would. Each case asserts the contract:
exit 2 (or the documented outcome), one line on stderr, no traceback, stdout pure JSON or empty, nothing read
or written outside its place, untrusted text never acting on the terminal or forging a report.

Real components only: a real tiny bundle from edge-bert's converter, the real CLI, a real sshd on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import io
import json
import resource
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_untrusted_input import TINY_PROFILE, _assert_refused, _manifest, _resign, _save
from typer.testing import CliRunner

from edge_bert import validate as validate_module
from edge_bert.bundle import open_bundle
from edge_bert.cli import app
from edge_bert.devices.ssh import SshTransport
from edge_bert.render.escape import html, markdown, plain, terminal
from edge_bert.render.markdown import validation_markdown

runner = CliRunner()
PYTHON = sys.executable


@pytest.fixture(scope="module")
def pristine(tiny_models, tmp_path_factory) -> Path:
    from edge_bert.convert.pipeline import convert

    root = tmp_path_factory.mktemp("hostile")
    model = str(tiny_models["bert"])
    (outcome,) = convert(model, TINY_PROFILE, root / "bundles", recipes=["fp32"], log=lambda _: None)
    assert outcome.passed, outcome.error
    return outcome.bundle


@pytest.fixture
def bundle(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "b" / pristine.name))


def _rewrite_npz(path: Path, member: str, raw: bytes) -> None:
    """Replace one member of an .npz with raw bytes (a forged .npy header and body)."""
    with zipfile.ZipFile(path) as old:
        members = {info.filename: old.read(info) for info in old.infolist()}
    members[member] = raw
    with zipfile.ZipFile(path, "w") as new:
        for name, data in members.items():
            new.writestr(name, data)


def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()  # magic, version and header


# ---- 3. sizes bounded by what is actually there, not by what a header claims ----


def test_npy_header_claiming_400_gib_is_refused_before_allocating(bundle):
    forged = _npy_header((212, 500_000_000)) + b"\x00" * 64
    _rewrite_npz(bundle / "golden.npz", "output.npy", forged)
    _resign(bundle, "golden.npz")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = runner.invoke(app, ["validate", str(bundle), "--report-dir", str(bundle.parent / "r")])
    _assert_refused(result, "claims shape (212, 500000000)")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200, grown_mib  # nothing near the claimed 395 GiB (nor even 1 GiB) was allocated


def test_zip_bomb_is_refused_from_the_headers(bundle, monkeypatch):
    monkeypatch.setenv("EDGE_BERT_MAX_ARRAYS_MB", "8")
    zeros = _npy_header((4, 1 << 20)) + b"\x00" * (16 << 20)  # 16 MiB of float32 zeros
    with zipfile.ZipFile(bundle / "golden.npz") as old:
        members = {info.filename: old.read(info) for info in old.infolist()}
    members["output.npy"] = zeros
    with zipfile.ZipFile(bundle / "golden.npz", "w", compression=zipfile.ZIP_DEFLATED) as new:
        for name, data in members.items():
            new.writestr(name, data)
    assert (bundle / "golden.npz").stat().st_size < 100_000  # a few KB that unpack to 16 MiB
    _resign(bundle, "golden.npz")
    result = runner.invoke(app, ["validate", str(bundle), "--report-dir", str(bundle.parent / "r")])
    _assert_refused(result, "unpacks to more than 8 MiB")


def test_oversized_tokenizer_is_refused_from_the_manifest_claim(bundle):
    tokenizer = json.loads((bundle / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    vocab.update({f"junk{i}": len(vocab) + i for i in range(1_500_000)})  # ~33 MB: over the 32 MiB text limit
    (bundle / "tokenizer.json").write_text(json.dumps(tokenizer))
    _resign(bundle, "tokenizer.json")
    result = runner.invoke(app, ["inspect", str(bundle)])
    _assert_refused(result, "tokenizer.json is")
    assert "EDGE_BERT_MAX_TEXT_MB" in result.stderr


def test_extra_listed_large_file_is_refused_without_reading_it(bundle):
    big = bundle / "extra.bin.txt"
    with big.open("wb") as handle:  # 1.5 GB claimed and present, but sparse: costs no disk
        handle.truncate(1_500_000_000)
    manifest = _manifest(bundle)
    manifest["files"]["extra.bin.txt"] = {"sha256": "0" * 64, "bytes": 1_500_000_000}
    _save(bundle, manifest)
    result = runner.invoke(app, ["bench", str(bundle), "--runs", "1"])
    _assert_refused(result, "extra.bin.txt is 1500000000 bytes, over the 32 MiB limit")


def test_file_longer_than_claimed_is_not_read_past_the_claim(bundle):
    with (bundle / "labels.txt").open("ab") as handle:
        handle.write(b"x" * 10_000)
    result = runner.invoke(app, ["inspect", str(bundle)])
    _assert_refused(result, "labels.txt: size more than")


def test_listed_directory_is_one_line_in_every_verb(bundle):
    (bundle / "adir").mkdir()
    manifest = _manifest(bundle)
    manifest["files"]["adir"] = {"sha256": "0" * 64, "bytes": 1}
    _save(bundle, manifest)
    for verb in (["validate", "--report-dir", str(bundle.parent / "r")], ["inspect"], ["bench", "--runs", "1"]):
        result = runner.invoke(app, [verb[0], str(bundle), *verb[1:]])
        _assert_refused(result, "adir")


def test_manifest_with_huge_integer_is_one_line(bundle):
    text = (bundle / "manifest.json").read_text().replace('"schema_version": 3', '"schema_version": ' + "9" * 5000)
    (bundle / "manifest.json").write_text(text)
    result = runner.invoke(app, ["inspect", str(bundle)])
    _assert_refused(result, "manifest.json: not valid JSON")


def test_deeply_nested_manifest_is_one_line(bundle):
    (bundle / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    result = runner.invoke(app, ["validate", str(bundle), "--report-dir", str(bundle.parent / "r")])
    _assert_refused(result, "manifest.json: not valid JSON")


# ---- 2. verify once, then use only what was verified ----


def test_manifest_swapped_after_verification_is_never_named(bundle, monkeypatch):
    """A second process could swap manifest.json between the check and the result header: the hook below does
    it deterministically, right after open_bundle returns. The result must name what was verified and used."""
    original = (bundle / "manifest.json").read_bytes()
    real_open = validate_module.open_bundle

    def open_then_swap(path):
        verified = real_open(path)
        forged = json.loads(original)
        forged["name"] = "swapped-bundle"
        (bundle / "manifest.json").write_text(json.dumps(forged))
        (bundle / "golden.npz").write_bytes(b"swapped")
        return verified

    monkeypatch.setattr(validate_module, "open_bundle", open_then_swap)
    result = validate_module.validate(bundle)
    digest = hashlib.sha256(original).hexdigest()
    assert result["passed"] is True  # the verified golden set was used, not the bytes written after the check
    assert result["bundle_id"] == f"{bundle.name}@{digest[:12]}"
    assert result["checksums"]["manifest.json"] == digest and result["bundle"] == bundle.name


def test_every_file_is_read_from_disk_once(bundle, monkeypatch):
    import edge_bert.bundle as bundle_module

    reads: list[str] = []
    real = bundle_module._read_regular

    def counting(root, name, size):
        reads.append(name)
        return real(root, name, size)

    monkeypatch.setattr(bundle_module, "_read_regular", counting)
    result = validate_module.validate(bundle)
    assert result["passed"]
    assert sorted(reads) == sorted({*reads}), reads  # no file twice, manifest.json included
    assert "manifest.json" in reads and "model.onnx" in reads and "golden.npz" in reads


# ---- 1. the ssh transport sends nothing open_bundle has not verified ----


def _device_files(sshd) -> dict[str, bytes]:
    root = Path(sshd.device_dir)
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_symlinked_file_never_leaves_the_host(sshd, bundle, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP-SECRET-HOST-KEY")
    (bundle / "config.json").unlink()
    (bundle / "config.json").symlink_to(secret)
    manifest = _manifest(bundle)
    manifest["files"]["config.json"] = {"sha256": hashlib.sha256(b"TOP-SECRET-HOST-KEY").hexdigest(), "bytes": 19}
    _save(bundle, manifest)
    before = _device_files(sshd)
    result = runner.invoke(app, ["validate", str(bundle), "--device", sshd.url, "--remote-python", PYTHON])
    _assert_refused(result, "config.json is a symbolic link")
    after = _device_files(sshd)
    assert not any(b"TOP-SECRET" in data for data in after.values())
    assert set(after) - set(before) <= {p for p in after if p.startswith(".ssh")}  # nothing new was sent


def test_manifest_entry_outside_the_bundle_is_never_read_or_sent(sshd, bundle, tmp_path):
    secret = bundle.parent.parent / "secret.txt"
    secret.write_bytes(b"TOP-SECRET-OUTSIDE")
    manifest = _manifest(bundle)
    manifest["files"]["../../secret.txt"] = {"sha256": hashlib.sha256(b"TOP-SECRET-OUTSIDE").hexdigest(), "bytes": 18}
    _save(bundle, manifest)
    result = runner.invoke(app, ["validate", str(bundle), "--device", sshd.url, "--remote-python", PYTHON])
    _assert_refused(result, "leaves the bundle")
    assert not any(b"TOP-SECRET" in data for data in _device_files(sshd).values())


def test_device_cache_holds_exactly_the_listed_files(sshd, pristine):
    transport = SshTransport(sshd.url, PYTHON)
    remote = Path(transport.put(pristine))
    verified = open_bundle(pristine)
    held = {str(p.relative_to(remote)) for p in remote.rglob("*") if p.is_file()}
    assert held == {*verified.manifest.files, "manifest.json"}
    for name in held:
        assert (remote / name).read_bytes() == (pristine / name).read_bytes()


@pytest.mark.parametrize("spec", ["ssh://[not-an-address]", "ssh://host:99999", "ssh://host:0", "ssh://host\n"])
def test_invalid_device_address_is_one_line(pristine, spec):
    result = runner.invoke(app, ["validate", str(pristine), "--device", spec])
    _assert_refused(result, "")


# ---- 5. untrusted text never acts on the terminal, Markdown or HTML ----

HOSTILE = (
    "[link=https://evil.example]ok[/link] [/x] \x1b[2J\x1b[31mPASS\x1b[0m | <script>alert(1)</script>\n| fake | pass |"
)


def test_escaping_functions():
    assert "\x1b" not in plain(HOSTILE) and "\n" not in plain(HOSTILE) and "\\x1b" in plain(HOSTILE)
    assert "\\[link" in terminal(HOSTILE)
    cell = markdown(HOSTILE)
    assert "<script>" not in cell and "\n" not in cell and "|" not in cell.replace("\\|", "")
    assert "<script>" not in html(HOSTILE) and "&lt;script&gt;" in html(HOSTILE)
    assert plain("Bert-Base") == "Bert-Base"  # ordinary text is untouched


def test_hostile_source_is_shown_literally(bundle):
    manifest = _manifest(bundle)
    manifest["model"]["source"] = HOSTILE
    _save(bundle, manifest)
    result = runner.invoke(app, ["inspect", str(bundle)], color=True)
    assert result.exit_code == 0, result.output
    assert "\x1b[2J" not in result.output and "evil.example" in result.output  # shown as text, not applied
    assert "\x1b]8;" not in result.output  # no OSC 8 hyperlink


def test_hostile_labels_cannot_forge_markdown_rows(pristine):
    from dataclasses import replace

    from edge_bert.results.validate import Evaluation

    result = replace(  # built in this process: the strings reach the renderer unchecked
        validate_module.validate_result(pristine),
        bundle="b<script>x</script>",
        recipe="r | pass |\n| forged | pass |",
        accuracy=Evaluation(
            data={"name": "d\n# heading"},
            rows=2,
            metrics={
                "accuracy": 1.0,
                "worst_classes": [{"label": HOSTILE, "support": 1, "fp32": 1, "bundle": 0, "drop": 1}],
            },
            notes=[HOSTILE],
        ),
    )
    text = validation_markdown(result)
    assert "<script>" not in text and "\x1b" not in text
    assert not any(line.startswith("| forged") for line in text.splitlines())
    assert not any(line.startswith("# heading") for line in text.splitlines())
    table_lines = [line for line in text.splitlines() if line.startswith("|")]
    widths = {line.replace("\\|", "").count("|") for line in table_lines}
    assert widths <= {4, 5, 6}, widths  # every row keeps its table's columns: nothing spilled into a new cell


# ---- 6. result files and JSON output ----


def test_bad_result_files_are_skipped_with_one_line_each(pristine, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    good = runner.invoke(app, ["validate", str(pristine), "--json", str(results / "good.json"), "--report-dir",
                               str(tmp_path / "r")])  # fmt: skip
    assert good.exit_code == 0, good.output
    (results / "truncated.json").write_text('{"schema": "edge-bert/validate/v1", "bundle": ')
    (results / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    (results / "keys.json").write_text(json.dumps({"schema": "edge-bert/validate/v1", "bundle": "x"}))
    (results / "bigint.json").write_text('{"schema": "edge-bert/bench/v2", "n": ' + "9" * 5000 + "}")
    future = json.loads((results / "good.json").read_text()) | {"schema": "edge-bert/validate/v9"}
    (results / "future.json").write_text(json.dumps(future))
    result = runner.invoke(app, ["results", str(results)])
    assert result.exit_code == 0, result.output
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 5, result.stderr
    assert any("edge-bert/validate/v9 is not one this edge-bert reads" in line for line in skipped)
    assert pristine.name in result.stdout


def test_json_output_has_no_nan(pristine, tmp_path):
    from edge_bert.render.terminal import write_json

    target = tmp_path / "r.json"
    write_json({"value": float("nan"), "rows": [float("inf"), 1.0]}, str(target))
    assert json.loads(target.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}")) == {
        "value": None,
        "rows": [None, 1.0],
    }


# ---- 4. errors from the libraries are the bundle's (or the input's) fault: one line, exit 2 ----


def test_json_target_that_is_not_a_regular_file_is_refused_before_the_work(pristine, tmp_path):
    import os

    fifo = tmp_path / "result.fifo"
    os.mkfifo(fifo)
    for target in (str(fifo), "/dev/full"):
        result = runner.invoke(app, ["validate", str(pristine), "--json", target, "--report-dir", str(tmp_path / "r")])
        _assert_refused(result, "not a regular file")
    assert not (tmp_path / "r").exists()  # refused before any work


def test_report_dir_that_accepts_no_files_is_refused_before_the_work(pristine):
    result = runner.invoke(app, ["validate", str(pristine), "--report-dir", "/proc/edge-bert-reports"])
    _assert_refused(result, "cannot write reports to /proc/edge-bert-reports")


def test_fifo_in_place_of_a_report_file_never_hangs(pristine, tmp_path):
    import os

    reports = tmp_path / "reports"
    reports.mkdir()
    os.mkfifo(reports / f"{pristine.name}.validate.md")
    result = runner.invoke(app, ["validate", str(pristine), "--report-dir", str(reports)])
    _assert_refused(result, ".validate.md: could not be written")  # opened non-blocking: ENXIO, no hang


def test_tokenizer_without_its_unk_token_is_the_bundles_fault(bundle):
    tokenizer = json.loads((bundle / "tokenizer.json").read_text())
    tokenizer["model"]["unk_token"] = "[NOT-IN-VOCAB]"
    (bundle / "tokenizer.json").write_text(json.dumps(tokenizer))
    _resign(bundle, "tokenizer.json")
    texts = bundle.parent / "texts.txt"
    texts.write_text("ünïcödé wörds ☃ take the tokenizers path, not the ASCII fast path\n", encoding="utf-8")
    result = runner.invoke(app, ["bench", str(bundle), "--runs", "1", "--warmup", "1", "--texts", str(texts)])
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("error: ") and "tokenizer" in line and "Traceback" not in result.output


def test_model_that_fails_at_run_time_is_one_line(bundle):
    """A graph whose node allocates a [1e6, 1e6] float tensor when it runs: onnxruntime's error is reported
    as the bundle's fault, naming the model file."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(bundle / "model.onnx"))
    graph = model.graph
    shape = helper.make_tensor("huge_shape", TensorProto.INT64, [2], [1_000_000, 1_000_000])
    graph.initializer.append(shape)
    graph.node.append(helper.make_node("ConstantOfShape", ["huge_shape"], ["huge"]))
    graph.output.append(helper.make_tensor_value_info("huge", TensorProto.FLOAT, [1_000_000, 1_000_000]))
    onnx.save(model, str(bundle / "model.onnx"))
    _resign(bundle, "model.onnx")
    result = runner.invoke(app, ["validate", str(bundle), "--report-dir", str(bundle.parent / "r")])
    _assert_refused(result, "model.onnx: onnxruntime")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("huge-int.json", b'[["a fine film", ' + b"9" * 5000 + b"]]"),
        ("nested.json", b"[" * 100_000 + b"]" * 100_000),
        ("nested.jsonl", b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"),
    ],
)
def test_hostile_data_files_are_one_line(pristine, tmp_path, name, content):
    data = tmp_path / name
    data.write_bytes(content)
    result = runner.invoke(app, ["validate", str(pristine), "--data", str(data), "--report-dir", str(tmp_path / "r")])
    _assert_refused(result, name)


def test_deeply_nested_profile_is_one_line(pristine, tmp_path):
    profile = tmp_path / "deep.toml"
    profile.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    result = runner.invoke(app, ["validate", str(pristine), "--profile", str(profile)])
    _assert_refused(result, "deep.toml: not valid TOML")


@pytest.mark.parametrize("value", ["Infinity", "NaN", "-Infinity"])
def test_non_finite_gate_is_refused_when_read(bundle, value):
    text = (bundle / "manifest.json").read_text()
    manifest = json.loads(text)
    manifest["recipe"]["gates"]["min_cosine"] = 0.5
    text = json.dumps(manifest).replace('"min_cosine": 0.5', f'"min_cosine": {value}')
    (bundle / "manifest.json").write_text(text)
    result = runner.invoke(app, ["validate", str(bundle), "--report-dir", str(bundle.parent / "r")])
    _assert_refused(result, "min_cosine: expected a finite number")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--runs", "1000000000000000"], "--runs must be between 1 and 1000000"),
        (["--threads", "10000"], "--threads must be between 1 and"),
        (["--warmup", "-1"], "--warmup must be between 0 and"),
        (["--sustained", "1e9"], "--sustained must be between 0 and 86400"),
        (["--seq-lengths", "100000"], "--seq-lengths must be between 2 and 8192"),
    ],
)
def test_numeric_options_are_bounded(pristine, argv, expected):
    result = runner.invoke(app, ["bench", str(pristine), *argv])
    _assert_refused(result, expected)


def test_a_column_name_is_never_taken_for_a_file(sshd, pristine, tmp_path, monkeypatch):
    """--text-column text beside a local file called ``text``: the name goes to the device, the file stays here."""
    monkeypatch.chdir(tmp_path)
    Path("text").write_bytes(b"TOP-SECRET-COLUMN-FILE")
    Path("data.csv").write_text("text,label\na fine film,positive\na dull film,negative\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(pristine), "--device", sshd.url, "--remote-python", PYTHON,
                                 "--data", "data.csv", "--text-column", "text", "--report-dir", "r"])  # fmt: skip
    assert result.exit_code == 0, result.output
    (report,) = Path("r").glob("*.validate.json")
    assert json.loads(report.read_text())["accuracy"]["rows"] == 2  # the column was read as a column
    assert not any(b"TOP-SECRET" in data for data in _device_files(sshd).values())


# ---- 6. a device's answer is untrusted: the host re-derives the verdict ----


def test_forged_pass_is_judged_again_from_the_metrics(pristine):
    from edge_bert.validate import judge

    honest = validate_module.validate(pristine)
    forged = json.loads(json.dumps(honest))
    forged["parity"]["mean_cosine"] = 0.5  # a collapsed model...
    forged["passed"] = True  # ...claiming a pass, with every gate verdict "pass"
    for verdict in forged["gates"].values():
        verdict["pass"] = True
    judged = judge(forged, open_bundle(pristine))
    assert judged.passed is False and judged.gates["min_cosine"].passed is False
    assert judge(honest, open_bundle(pristine)).passed is True  # an honest pass stays a pass
    forged["parity"]["mean_cosine"] = "high"
    with pytest.raises(Exception, match=r"lacks what the gates read \(parity.mean_cosine: expected a number"):
        judge(forged, open_bundle(pristine))


def test_a_device_that_forges_its_pass_gets_exit_1(sshd, pristine, tmp_path):
    """A real device (sshd on 127.0.0.1) whose Python rewrites the runner's answer: a failing cosine reported
    next to "passed": true. The host judges the metrics itself and exits 1."""
    evil = tmp_path / "evil-python"
    evil.write_text(
        f'#!/bin/sh\n{PYTHON} "$@" | sed -e \'s/"mean_cosine": [0-9.e-]*/"mean_cosine": 0.5/\' '
        '-e \'s/"pass": false/"pass": true/g\' -e \'s/"passed": false/"passed": true/\'\n'
    )
    evil.chmod(0o755)
    result = runner.invoke(app, ["validate", str(pristine), "--device", sshd.url, "--remote-python", str(evil),
                                 "--json", "-", "--report-dir", str(tmp_path / "r")])  # fmt: skip
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["passed"] is False and document["parity"]["mean_cosine"] == 0.5


def test_name_with_a_trailing_newline_is_refused(bundle):
    manifest = _manifest(bundle)
    manifest["name"] = manifest["name"] + "\n"
    _save(bundle, manifest)
    _assert_refused(runner.invoke(app, ["inspect", str(bundle)]), "name: must be")


@pytest.mark.parametrize("answer", ['{"versions": {}}', '{"machine": {}, "sensors": [], "versions": 1}', "[1, 2]"])
def test_a_hostile_probe_answer_is_one_line(sshd, tmp_path, answer):
    """``device check`` against a device whose Python answers the probe with a document that lacks what the
    tables read (once a KeyError 'machine' traceback)."""
    evil = tmp_path / "evil-python"
    evil.write_text(f"#!/bin/sh\necho '{answer}'\n")
    evil.chmod(0o755)
    result = runner.invoke(app, ["device", "check", sshd.url, "--remote-python", str(evil)])
    _assert_refused(result, "the device's answer to the probe is not usable")
