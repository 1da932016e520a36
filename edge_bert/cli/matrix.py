"""``edge-bert matrix MATRIX.toml``: every model × target × recipe × device, resumable and failure-isolated.

The output folder holds only standard result files (``results/KEY.validate.json``, ``KEY.bench.json``), the
bundles, the validate reports and ``matrix.json`` (the index: every cell, its status, reason and files).
``--ray`` runs the same steps as Ray tasks (edge_bert/matrix/ray_executor.py); the driver still writes all of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edge_bert.cli.common import fail
from edge_bert.errors import EdgeBertError
from edge_bert.limits import usable_cpus
from edge_bert.render.escape import terminal
from edge_bert.render.terminal import err_console


def register(app: typer.Typer) -> None:
    app.command()(matrix)


def matrix(
    spec_file: Annotated[Path, typer.Argument(metavar="MATRIX.toml", help="The matrix (see examples/offline.toml).")],
    out: Annotated[Path, typer.Option(help="Where results, bundles and the index go.")] = Path("matrix-results"),
    jobs: Annotated[
        Optional[int], typer.Option(help="Conversions at once (default: usable cores, at most 2; each needs ~2 GB).")
    ] = None,
    ray: Annotated[
        Optional[str],
        typer.Option(help="Run the steps as Ray tasks: 'local' (an instance of our own) or a cluster's HEAD:6379."),
    ] = None,
) -> None:
    """Convert, validate and bench every cell; finished cells are never redone (kill it and start it again).
    Exit 0 when every required cell finished, 1 when one failed (each failure is in the index), 2 bad input."""
    from edge_bert.matrix.run import failed_required, run_matrix
    from edge_bert.matrix.spec import cells, read_matrix

    if jobs is not None and not 1 <= jobs <= 64:
        raise fail(EdgeBertError("--jobs must be between 1 and 64"))
    try:
        spec, base = read_matrix(spec_file)
        all_cells = cells(spec, base)
        out.mkdir(parents=True, exist_ok=True)
        executor = None
        if ray is not None:
            from edge_bert.matrix.ray_executor import RayExecutor

            executor = RayExecutor(ray, spec.devices)
    except EdgeBertError as exc:
        raise fail(exc) from exc
    except OSError as exc:
        raise fail(EdgeBertError(f"{out}: {exc.strerror or exc}")) from exc
    counts = {"done": 0, "failed": 0}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=err_console, disable=not err_console.is_terminal) as progress:
        bar = progress.add_task("matrix", total=len(all_cells))

        def report(event: str, cell, info) -> None:
            if event == "start":
                counts["done"] = info["done"]
                progress.update(bar, completed=info["done"])
            elif event == "finished":
                counts["done" if info["status"] == "done" else "failed"] += 1
                progress.advance(bar)
                if info["status"] != "done":
                    reason = f"{cell.label}: {info['exit_class']}: {info['reason']}"  # a step's stderr: untrusted
                    err_console.print(f"failed {terminal(reason)}", highlight=False)
            left = len(all_cells) - counts["done"] - counts["failed"]
            now = f" · {event} {terminal(cell.label)}" if cell is not None and event != "finished" else ""
            progress.update(bar, description=f"done {counts['done']} · failed {counts['failed']} · left {left}{now}")

        try:
            index = run_matrix(spec, base, all_cells, out, jobs or min(2, usable_cpus()), report, executor)
        finally:
            if executor is not None:
                executor.close()
    failed = failed_required(index)
    done = sum(c["status"] == "done" for c in index["cells"])
    summary = f"{done} of {len(index['cells'])} cells done, {len(failed)} required failed"
    index_path = terminal(out / "matrix.json")
    err_console.print(f"matrix {terminal(spec.name)}: {summary}; index {index_path}", highlight=False)
    raise typer.Exit(1 if failed else 0)


__all__ = ["matrix", "register"]
