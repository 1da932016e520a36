"""``edge-bert report RESULTS [--out DIR]``: a matrix output folder as a report people open.

Markdown, one self-contained HTML page (plots embedded, no script, no network) and PNG plots; every number
links to the result file it came from. The folder's files come from devices and users: read strictly, paths
confined to RESULTS, every string escaped; bad input is exit 2 with one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_bert.cli.common import fail
from edge_bert.errors import EdgeBertError
from edge_bert.render.escape import terminal
from edge_bert.render.terminal import err_console


def register(app: typer.Typer) -> None:
    app.command()(report)


def report(
    results: Annotated[Path, typer.Argument(metavar="RESULTS", help="A matrix output folder (matrix --out).")],
    out: Annotated[
        Optional[Path], typer.Option(help="Where report.md, report.html and plots/ go (default: RESULTS/report).")
    ] = None,
) -> None:
    """Write the report of a matrix: the seed's table measured, claimed vs measured, plots. Exit 2 bad input."""
    from edge_bert.cli.logs import third_party_output
    from edge_bert.report import write_report

    folder = out if out is not None else results / "report"
    try:
        with third_party_output(folder):  # torch's import chatter (parameter counts) goes to a log, not here
            page = write_report(results, folder)
    except EdgeBertError as exc:
        raise fail(exc) from exc
    except OSError as exc:
        raise fail(EdgeBertError(f"{exc.filename or results}: {exc.strerror or exc}")) from exc
    err_console.print(f"report {terminal(page)}", highlight=False)


__all__ = ["register", "report"]
