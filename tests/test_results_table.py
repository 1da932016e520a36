"""`edge-bert results` without qemu: the table is rendered from the result JSON files a real local validate and
bench wrote, and every figure in it is the one in those files."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edge_bert.cli import app
from edge_bert.convert.pipeline import convert

TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"
runner = CliRunner()


def test_results_table_from_local_validate_and_bench(tiny_models, sst2_texts, tmp_path):
    outcomes = convert(str(tiny_models["bert"]), TINY_PROFILE, tmp_path / "bundles", texts=sst2_texts[:24],
                       recipes=["fp32", "dynamic-int8"], log=lambda _: None)  # fmt: skip
    assert all(o.passed for o in outcomes), [o.error for o in outcomes]
    fp32, int8 = (o.bundle for o in outcomes)
    for bundle in (fp32, int8):
        assert runner.invoke(app, ["validate", str(bundle)]).exit_code == 0  # writes reports/BUNDLE.validate.json
    bench = runner.invoke(app, ["bench", str(int8), "--runs", "3", "--warmup", "1", "--seq-lengths", "16,32",
                                "--json", "reports/int8.bench.json"])  # fmt: skip
    assert bench.exit_code == 0, bench.output
    Path("reports", "notes.json").write_text('{"schema": "something-else/v1"}')  # not a result: ignored
    Path("reports", "broken.json").write_text("{not json")

    table = runner.invoke(app, ["results", "reports", "--json", "-"])
    assert table.exit_code == 0, table.output
    assert "skipped reports/broken.json" in table.stderr  # a bad file is one line, never the end of the table
    rows = {row["bundle"]: row for row in json.loads(table.stdout)["rows"]}
    assert set(rows) == {fp32.name, int8.name} and {r["device"] for r in rows.values()} == {"local"}
    for bundle in (fp32, int8):
        written = json.loads(Path("reports", f"{bundle.name}.validate.json").read_text())
        row = rows[bundle.name]
        assert row["passed"] is True and row["emulated"] is False and row["bundle_id"] == written["bundle_id"]
        assert row["mean_cosine"] == written["parity"]["mean_cosine"]
        texts = len(written["predictions"]["top1"])
        assert texts > 0 and row["same_top1_as_host"] == f"{texts}/{texts}"  # the host run is this run
    timing = json.loads(Path("reports/int8.bench.json").read_text())
    assert rows[int8.name]["p50_ms"] == {str(r["seq_length"]): r["p50_ms"] for r in timing["latency"]}
    assert rows[int8.name]["threads"] == timing["settings"]["threads"] and "p50_ms" not in rows[fp32.name]

    markdown = runner.invoke(app, ["results", "reports", "--as", "markdown"]).stdout.splitlines()
    assert markdown[0].startswith("| bundle | device | validate |") and markdown[0].endswith("| p50 @32 ms |")
    int8_line = next(line for line in markdown if line.startswith(f"| {int8.name} "))
    p50 = timing["latency"][0]["p50_ms"]
    assert "| local | pass |" in int8_line and f"| {p50:.2f} |" in int8_line and "emulated" not in "".join(markdown)
    terminal = runner.invoke(app, ["results", "reports"])
    assert terminal.exit_code == 0 and "2 bundles × 1 devices" in terminal.output


def test_results_refuses_a_directory_without_results(tmp_path):
    (tmp_path / "empty").mkdir()
    for directory in ("empty", "missing"):
        result = runner.invoke(app, ["results", str(tmp_path / directory)])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
