"""The report as one self-contained HTML page: CSS inline, plots embedded as data: URIs, no script, no
network. Every string is escaped (render/escape.py); every number links to the result file it came from."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from edge_bert.render.escape import html as esc
from edge_bert.report.figures import Figure
from edge_bert.report.plots import Plot
from edge_bert.report.table import Table

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; vertical-align: top; }
th { background: #f0f3f7; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
td a { color: #0645ad; text-decoration: none; } td a:hover { text-decoration: underline; }
sup a { font-size: 0.75em; margin-left: 0.1em; }
.words { color: #444; text-align: left; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-weight: 600; margin-bottom: 0.4em; }
.scroll { overflow-x: auto; } ul.notes { font-size: 0.85em; color: #444; }
"""


def _cell(figure: Figure, href: Callable[[str], str]) -> str:
    if not figure.sources:
        cls = ' class="words"' if figure.value is None and figure.text not in ("-",) else ""
        return f"<td{cls}>{esc(figure.text)}</td>"
    first, *others = figure.sources
    more = "".join(f'<sup><a href="{esc(href(s))}" title="{esc(s)}">{i}</a></sup>'
                   for i, s in enumerate(others, start=2))  # fmt: skip
    return f'<td><a href="{esc(href(first))}" title="{esc(first)}">{esc(figure.text)}</a>{more}</td>'


def _table(table: Table, href: Callable[[str], str]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in table.headers)
    rows = "".join("<tr>" + "".join(_cell(c, href) for c in row) + "</tr>\n" for row in table.rows)
    notes = "".join(f"<li>{esc(n)}</li>" for n in table.notes)
    return (
        f'<h2>{esc(table.title)}</h2>\n<div class="scroll"><table><thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{rows}</tbody></table></div>\n" + (f'<ul class="notes">{notes}</ul>\n' if notes else "")
    )


def _image(plot: Plot, folder: Path) -> str:
    data = base64.b64encode((folder / plot.file).read_bytes()).decode("ascii")
    return (
        f"<figure><figcaption>{esc(plot.title)}</figcaption>"
        f'<img src="data:image/png;base64,{data}" alt="{esc(plot.title)}"></figure>\n'
    )


def write_html(title: str, intro: list[str], tables: list[Table], plots: list[Plot], folder: Path,
               href: Callable[[str], str]) -> str:  # fmt: skip
    """The page; ``folder`` holds the plots, ``href`` turns a results-relative source into a relative link."""
    body = [f"<h1>{esc(title)}</h1>\n", *(f"<p>{esc(line)}</p>\n" for line in intro)]
    body += [_table(table, href) for table in tables]
    body += ["<h2>Plots</h2>\n", *(_image(plot, folder) for plot in plots)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">\n"
        f'<link rel="icon" href="data:,"><title>{esc(title)}</title>\n<style>{CSS}</style></head>\n'
        f"<body>\n{''.join(body)}</body></html>\n"
    )
