"""``edge-bert report``: the report of a real matrix run (a tiny random BERT as the reference and a tiny random
DistilBERT, ONNX fp32 and dynamic-int8, validated on 60 SST-2 dev rows and benched here). Its numbers equal
the result files, its PNGs decode and are not blank, the parameter claims match the configs, hostile input is
one line and exit 2, and the page passes a real headless Chromium (file://, no network)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import IN_CI, requires, run_cli_without_frameworks, sst2_dev
from PIL import Image
from typer.testing import CliRunner

from edge_bert.cli import app
from edge_bert.manifest import parse_manifest
from edge_bert.results.io import load_result

ROOT = Path(__file__).parent.parent
TINY_PROFILE = ROOT / "tests" / "profiles" / "tiny-random.toml"
CHROMIUM = Path("/usr/bin/chromium")
runner = CliRunner()


@pytest.fixture(scope="session")
def matrix_out(tiny_models, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report-matrix")
    rows = [(text, ("negative", "positive")[label]) for text, label in sst2_dev(limit=60)]
    data = root / "sst2-60.jsonl"
    data.write_text("".join(json.dumps({"sentence": t, "label": y}) + "\n" for t, y in rows), encoding="utf-8")
    spec = root / "tiny.toml"
    spec.write_text(
        f'name = "tiny"\ntargets = ["{TINY_PROFILE}"]\nformats = ["onnx"]\nrecipes = ["fp32", "dynamic-int8"]\n'
        'devices = ["local"]\nseq_lengths = [16, 32]\nruns = 5\nwarmup = 1\nthreads = 1\ntimeout_s = 600\n'
        f'[data]\nlocation = "{data}"\n\n'
        f'[[models]]\nid = "teacher"\nsource = "{tiny_models["bert"]}"\nreference = true\n\n'
        f'[[models]]\nid = "student"\nsource = "{tiny_models["distilbert"]}"\nmethod = "distilbert"\n',
        encoding="utf-8",
    )
    out = root / "out"
    result = runner.invoke(app, ["matrix", str(spec), "--out", str(out), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def report(matrix_out) -> Path:
    result = runner.invoke(app, ["report", str(matrix_out)])
    assert result.exit_code == 0, result.output
    return matrix_out / "report"


def _rows(markdown: str, title: str) -> list[list[str]]:
    """The rows of the Markdown table under ``## title``, cells with their footnote ids removed."""
    section = markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [[re.sub(r"\[\^\d+\]", "", c).strip() for c in line.strip("|").split(" | ")] for line in lines]


def _cells(out: Path) -> dict[tuple[str, str], dict]:
    index = json.loads((out / "matrix.json").read_text())
    return {(c["model"], c["recipe"]): c for c in index["cells"]}


def test_the_table_holds_the_result_files_numbers(matrix_out, report):
    markdown = (report / "report.md").read_text()
    section = markdown.split("## The seed's table, measured\n", 1)[1]
    header = [h.strip() for h in section.splitlines()[1].strip("|").split(" | ")]
    assert header[:7] == ["model", "method", "runtime", "recipe", "device", "parameters", "bundle MB"]
    rows = {(r[0], r[3]): dict(zip(header, r, strict=True)) for r in _rows(markdown, "The seed's table, measured")}
    assert len(rows) == 4
    cells = _cells(matrix_out)
    for (model, recipe), row in rows.items():
        cell = cells[(model, recipe)]
        checked, timed = load_result(matrix_out / cell["validate"]), load_result(matrix_out / cell["bench"])
        unit = cell["key"].split("-")[0]
        manifest_file = matrix_out / "bundles" / unit / checked.bundle / "manifest.json"
        manifest = parse_manifest(json.loads(manifest_file.read_text()))
        assert row["parameters"] == f"{manifest.model.parameters / 1e6:.2f}M"
        assert row["bundle MB"] == f"{sum(f.bytes for f in manifest.files.values()) / 1e6:.2f}"
        for length in (16, 32):
            latency = next(r for r in timed.latency if r.seq_length == length)
            assert row[f"p50 ms @{length}"] == f"{latency.p50_ms:.2f}"
            assert row[f"p90 ms @{length}"] == f"{latency.p90_ms:.2f}"
        assert row["peak RSS MiB"] == f"{timed.memory_mib.peak_rss:.0f}"
        reference = load_result(matrix_out / cells[("teacher", recipe)]["bench"])
        assert row["speed-up vs teacher @32"] == f"{reference.p50_ms()[32] / timed.p50_ms()[32]:.2f} x"
        # random weights: validated on labelled data, yet at chance - never an accuracy number
        assert checked.accuracy is not None and checked.accuracy.metrics["rows"] == 60
        assert row["accuracy % of teacher"] == row["accuracy % of fp32"] == "random weights"
        assert row["method"] == ("reference" if model == "teacher" else "distilbert")
    # every number is traceable: each footnote names a result or manifest file that exists
    notes = re.findall(r"^\[\^(\d+)\]: \[([^\]]+)\]\(([^)]+)\)$", markdown, re.M)
    assert notes and all((report / href).resolve().is_file() for _, _, href in notes)
    assert {n for n, _, _ in notes} == set(re.findall(r"\[\^(\d+)\](?!:)", markdown))
    page = (report / "report.html").read_text()
    hrefs = re.findall(r'<a href="([^"]+)"', page)
    assert hrefs and all((report / h).resolve().is_relative_to(matrix_out.resolve()) for h in hrefs)
    assert all((report / h).is_file() for h in hrefs)
    p50 = load_result(matrix_out / cells[("student", "fp32")]["bench"]).p50_ms()[16]
    assert f'title="{cells[("student", "fp32")]["bench"]}">{p50:.2f}</a>' in page


def test_plots_decode_and_are_not_blank(report):
    pngs = sorted((report / "plots").glob("*.png"))
    names = {p.name.split("-0-")[0] for p in pngs}
    assert names >= {"accuracy-vs-p50", "file-size.png", "latency-vs-length", "distribution", "devices.png"}
    page = (report / "report.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == len(pngs)
    for png in pngs:
        pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
        assert pixels.shape[0] > 200 and pixels.std() > 10, png.name  # drawn, not a blank canvas
    decoded = {base64.b64decode(data) for data in embedded}
    assert decoded == {p.read_bytes() for p in pngs}  # the page embeds exactly the PNGs written
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_parameter_claims_are_computed_from_the_configs(report):
    import torch
    import transformers

    configs = {
        "bert-base": transformers.BertConfig(),
        "distilbert": transformers.DistilBertConfig(),
        "tinybert-4": transformers.BertConfig(num_hidden_layers=4, hidden_size=312, intermediate_size=1200),
        "mobilebert": transformers.MobileBertConfig(),
        "albert-base": transformers.AlbertConfig(hidden_size=768, num_attention_heads=12, intermediate_size=3072),
    }
    claimed = {"bert-base": 110e6, "distilbert": 66e6, "tinybert-4": 14.5e6, "mobilebert": 25.3e6, "albert-base": 12e6}
    rows = {r[0]: r for r in _rows((report / "report.md").read_text(), "Parameter claims vs the shipped configs")}
    assert set(rows) == set(configs)
    for name, config in configs.items():
        with torch.device("meta"):
            count = sum(p.numel() for p in transformers.AutoModel.from_config(config).parameters())
        assert rows[name][2] == f"{count:,}" and rows[name][3] == f"{count / claimed[name]:.3f}"
    # the student stands for DistilBERT: its measured parameter count sits next to the 66M claim
    claims = _rows((report / "report.md").read_text(), "Claimed vs measured")
    student = [r for r in claims if r[0] == "distilbert: parameters"]
    assert len(student) == 1 and student[0][4] == "student" and student[0][6].endswith("M")
    assert any(r[0] == "albert-base: speed-up" and r[4] == "no albert model in this matrix" for r in claims)


def _hostile(matrix_out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "hostile"
    shutil.copytree(matrix_out, copy, ignore=shutil.ignore_patterns("report", "*.onnx", "reports"))
    return copy


def _edit_index(folder: Path, change) -> None:
    index = json.loads((folder / "matrix.json").read_text())
    change(index["cells"][0])
    (folder / "matrix.json").write_text(json.dumps(index))


def _add_result_field(folder: Path) -> None:
    path = next((folder / "results").glob("*.bench.json"))
    path.write_text(json.dumps({**json.loads(path.read_text()), "x": 1}))


def _symlink_out(folder: Path) -> None:
    """A result file that is a symlink to a (valid) copy outside the folder."""
    path = next((folder / "results").glob("*.validate.json"))
    outside = folder.parent / "outside.json"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)


def _change_manifest(folder: Path) -> None:
    path = next(folder.glob("bundles/*/*/manifest.json"))
    path.write_text(path.read_text() + "\n")


HOSTILE = {
    "parent path": (lambda f: _edit_index(f, lambda c: c.update(validate="results/../../etc/passwd")), "leaves"),
    "absolute path": (lambda f: _edit_index(f, lambda c: c.update(bench="/etc/passwd")), "bench"),
    "unknown key": (lambda f: _edit_index(f, lambda c: c.update(extra=1)), "cells[0].extra: unknown key"),
    "bad key": (lambda f: _edit_index(f, lambda c: c.update(key="../x")), "is not a cell key"),
    "result field": (_add_result_field, "x: unknown key"),
    "not json": (lambda f: (f / "matrix.json").write_text("{nope"), "not a readable JSON index"),
    "deep json": (lambda f: (f / "matrix.json").write_text("[" * 100_000 + "]" * 100_000), "not a readable JSON"),
    "symlink out": (_symlink_out, "leads outside the results folder"),
    "manifest changed": (_change_manifest, "sha256 differs"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_is_one_line_and_exit_2(matrix_out, tmp_path, case):
    folder = _hostile(matrix_out, tmp_path)
    change, expected = HOSTILE[case]
    change(folder)
    result = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "r")])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and expected in lines[0], result.output
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_untrusted_names_are_escaped(matrix_out, tmp_path):
    folder = _hostile(matrix_out, tmp_path)
    evil = "<script>alert(1)</script>|[x](http://evil.example)"
    _edit_index(folder, lambda c: c.update(model=evil))
    result = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    page, markdown = (tmp_path / "r" / "report.html").read_text(), (tmp_path / "r" / "report.md").read_text()
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in markdown and "\\|\\[x\\](http://evil.example)" in markdown


def _playwright_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return CHROMIUM.is_file()


@requires(_playwright_available(), "needs /usr/bin/chromium (apt) and playwright (pip)")
def test_the_page_works_in_headless_chromium(report, tmp_path):
    """A real browser: file://, network off, a screenshot that is not blank, every image decoded, no errors."""
    assert CHROMIUM.is_file() or not IN_CI
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
        page.goto((report / "report.html").as_uri(), wait_until="load")
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        shot = page.screenshot(full_page=True)
        browser.close()
    assert len(widths) == len(list((report / "plots").glob("*.png"))) and all(w > 0 for w in widths), widths
    assert errors == []
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=float)
    assert pixels.shape[0] > 1000 and pixels.std() > 10  # the page rendered text, tables and plots


@pytest.mark.slow
def test_the_offline_example_reports(tmp_path):
    """examples/offline.toml as shipped (the embedded MiniLM: real weights, no labelled data), then its report."""
    out = tmp_path / "out"
    assert runner.invoke(app, ["matrix", str(ROOT / "examples" / "offline.toml"), "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "report" / "report.md").read_text()
    rows = _rows(markdown, "The seed's table, measured")
    assert [(r[0], r[3]) for r in rows] == [("minilm", "dynamic-int8"), ("minilm", "fp32")]
    for row in rows:
        bench = load_result(out / _cells(out)[("minilm", row[3])]["bench"])
        assert row[7] == row[8] == "no labelled data"  # a real model, but nothing to measure accuracy on
        assert row[10] == f"{bench.p50_ms()[16]:.2f}" and row[9].endswith(" cos")
    assert len(list((tmp_path / "report" / "plots").glob("*.png"))) == 5


@pytest.mark.slow
def test_an_emulated_board_shows_parity_never_latency(tiny_models, tmp_path):
    """The same bundle on this machine and on the emulated Raspberry Pi 5 (qemu): latency only for the first."""
    spec = tmp_path / "emu.toml"
    spec.write_text(
        f'name = "emu"\ntargets = ["{TINY_PROFILE}"]\nformats = ["onnx"]\nrecipes = ["fp32"]\n'
        'devices = ["local", "emu:rpi5"]\nseq_lengths = [16]\nruns = 3\nwarmup = 1\nthreads = 1\n\n'
        f'[[models]]\nid = "tiny"\nsource = "{tiny_models["bert"]}"\nreference = true\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    matrix = runner.invoke(app, ["matrix", str(spec), "--out", str(out)])
    assert matrix.exit_code == 0, matrix.output
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    markdown = (out / "report" / "report.md").read_text()
    rows = {r[4]: r for r in _rows(markdown, "The seed's table, measured")}
    assert set(rows) == {"local", "emu:rpi5"}
    emulated, local = rows["emu:rpi5"], rows["local"]
    assert emulated[10:14] == ["emulated: no latency", "emulated: no latency", "emulated", "emulated: no latency"]
    assert emulated[9].endswith(" top-1") and local[10] != "emulated: no latency"
    plots = [p.name for p in (out / "report" / "plots").glob("*.png")]
    assert not any("rpi5" in name for name in plots)  # no latency plot for the emulated board


def test_the_report_runs_without_torch(matrix_out, report, tmp_path):
    """A machine with only the runner: the same report; the claims stand, their configs uncounted."""
    run_cli_without_frameworks(["report", str(matrix_out), "--out", str(tmp_path / "r")])
    markdown = (tmp_path / "r" / "report.md").read_text()
    rows = _rows(markdown, "Parameter claims vs the shipped configs")
    assert len(rows) == 5 and {r[2] for r in rows} == {"torch not installed: not computed"}
    table = "The seed's table, measured"
    assert _rows(markdown, table) == _rows((report / "report.md").read_text(), table)
