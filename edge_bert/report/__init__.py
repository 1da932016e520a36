"""``edge-bert report RESULTS``: a matrix's results as Markdown, one self-contained HTML page and PNG plots.

collect (strict reading, paths confined) -> table / claimed (figures with their sources) -> plots ->
markdown / html. The output folder is written whole or not at all (a temp dir beside it, then renamed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path

from edge_bert.report.claimed import claims_table, parameter_table
from edge_bert.report.collect import collect
from edge_bert.report.html import write_html
from edge_bert.report.markdown import write_markdown
from edge_bert.report.plots import write_plots
from edge_bert.report.table import devices_table, failed_table, seed_table


def write_report(results: Path, out: Path) -> Path:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` for the matrix folder ``results`` into ``out``
    (replaced atomically); returns the HTML file. InputError (one line) for malformed or hostile input."""
    collection = collect(results)
    out = out.absolute()
    root = os.path.relpath(results.absolute(), out)

    def href(source: str) -> str:
        return urllib.parse.quote(f"{root}/{source}" if root != "." else source)

    done = len(collection.entries)
    intro = [
        f"Matrix {collection.name}: {done} cells finished, {len(collection.failed)} failed, "
        f"{collection.pending} pending.",
        "Made by edge-bert report from the matrix's typed result files; every number links to its file.",
    ]
    tables = [devices_table(collection), seed_table(collection), claims_table(collection), parameter_table()]
    if (failed := failed_table(collection)) is not None:
        tables.append(failed)
    title = f"edge-bert report: {collection.name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        plots = write_plots(collection, staging)
        (staging / "report.md").write_text(write_markdown(title, intro, tables, plots, href), encoding="utf-8")
        page = write_html(title, intro, tables, plots, staging, href)
        (staging / "report.html").write_text(page, encoding="utf-8")
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / "report.html"


def _replace(staging: Path, out: Path) -> None:
    """``staging`` becomes ``out``; a previous report there is moved aside first and removed after."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / "report")
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


__all__ = ["write_report"]
