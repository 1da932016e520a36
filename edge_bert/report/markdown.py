"""The report as Markdown: every string escaped (render/escape.py), every number with a footnote id naming
the result file it came from (the footnotes link to the files, relative to the report)."""

from __future__ import annotations

from collections.abc import Callable

from edge_bert.render.escape import markdown as md
from edge_bert.report.figures import Figure
from edge_bert.report.plots import Plot
from edge_bert.report.table import Table


class Footnotes:
    """One footnote id per source file, numbered in order of first use."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def cite(self, figure: Figure) -> str:
        refs = "".join(f"[^{self.ids.setdefault(s, len(self.ids) + 1)}]" for s in figure.sources)
        return md(figure.text) + refs


def _table(table: Table, notes: Footnotes) -> list[str]:
    lines = [f"## {md(table.title)}", ""]
    lines.append("| " + " | ".join(md(h) for h in table.headers) + " |")
    lines.append("|" + "---|" * len(table.headers))
    lines += ["| " + " | ".join(notes.cite(cell) for cell in row) + " |" for row in table.rows]
    lines.append("")
    lines += [f"- {md(note)}" for note in table.notes]
    return [*lines, ""] if table.notes else lines


def write_markdown(title: str, intro: list[str], tables: list[Table], plots: list[Plot],
                   href: Callable[[str], str]) -> str:  # fmt: skip
    """The whole Markdown page; ``href`` turns a results-relative source into a link from the report."""
    notes = Footnotes()
    lines = [f"# {md(title)}", "", *(f"{md(line)}  " for line in intro), ""]
    for table in tables:
        lines += _table(table, notes)
    lines += ["## Plots", ""]
    for plot in plots:
        lines += [f"### {md(plot.title)}", "", f"![{md(plot.title)}]({plot.file})", ""]
    lines += ["## Sources", "", "Every number above carries the id of the result file it was read from.", ""]
    lines += [f"[^{n}]: [{md(source)}]({href(source)})" for source, n in notes.ids.items()]
    return "\n".join(lines) + "\n"
