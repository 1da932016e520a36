"""The ``edge-bert`` command line. Imports the converter (torch) only inside ``convert`` and ``run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import Progress
from rich.table import Table

from edge_bert.bench.thermal import board_lines
from edge_bert.bench.thermal import thread_sweep as sweep_threads
from edge_bert.cli import compare as cli_compare
from edge_bert.cli import device as cli_device
from edge_bert.cli import matrix as cli_matrix
from edge_bert.cli import report as cli_report
from edge_bert.cli import run as cli_run
from edge_bert.cli import text as cli_text
from edge_bert.cli import train as cli_train
from edge_bert.cli.common import (
    DeviceOpt,
    JsonOpt,
    LabelColumnOpt,
    LimitOpt,
    RemotePythonOpt,
    SplitOpt,
    TargetOpt,
    TextColumnOpt,
    ThreadsOpt,
    convert_and_show,
    convert_document,
    csv_ints,
    deprecated,
    fail,
    open_transport,
    preflight,
    profile_gates,
    read_data,
    rescue_line,
    runner_for,
)
from edge_bert.cli.logs import quiet_verb, set_verbose
from edge_bert.errors import EdgeBertError, InputError
from edge_bert.profiles import list_profiles
from edge_bert.render.escape import terminal
from edge_bert.render.terminal import (
    bench_table,
    console,
    roofline_line,
    validation_table,
    write_json,
    write_reports,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Convert compact BERT-family models into verified edge bundles; validate and bench them.",
)


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Third-party warnings and logs on stderr, not in OUT.log.")
    ] = False,
) -> None:
    """Options for every verb."""
    set_verbose(verbose)


@app.command()
def targets(json_out: JsonOpt = None) -> None:
    """List the built-in target profiles."""
    preflight(json_out)
    # each profile as its TOML data (what a bundle's manifest stores as ``target``)
    write_json({"schema": "edge-bert/targets/v1", "targets": [p.raw for p in list_profiles()]}, json_out)
    if json_out == "-":
        return
    table = Table(title="target profiles (targets/*.toml)")
    for column in ("name", "description", "formats", "recipes (first = default)", "shapes", "threads"):
        table.add_column(column)
    for profile in list_profiles():
        recipes = "; ".join(f"{f}: {', '.join(r.name for r in spec.recipes)}" for f, spec in profile.formats.items())
        shapes = profile.shapes.policy + (f" {list(profile.shapes.seq_lengths)}" if profile.shapes.seq_lengths else "")
        table.add_row(
            profile.name, profile.description, ", ".join(profile.formats), recipes, shapes, str(profile.bench.threads)
        )
    console.print(table)


@app.command()
@quiet_verb()
def convert(
    model: Annotated[
        Optional[str], typer.Argument(help="Hub id or save_pretrained dir (default: embedded MiniLM).")
    ] = None,
    target: TargetOpt = "auto",
    out: Annotated[Path, typer.Option(help="Directory to write bundles into.")] = Path("bundles"),
    task: Annotated[
        Optional[str], typer.Option(help="text-classification | feature-extraction (default: from config).")
    ] = None,
    fmt: Annotated[Optional[list[str]], typer.Option("--format", help="Only these formats (repeatable).")] = None,
    recipe: Annotated[Optional[list[str]], typer.Option(help="Only these recipes (repeatable).")] = None,
    texts: Annotated[Optional[Path], typer.Option(help="Golden texts (.txt/.tsv/.jsonl); default: built-in.")] = None,
    calibration_data: Annotated[Optional[Path], typer.Option(help="Texts for static int8 calibration.")] = None,
    eval_data: Annotated[
        Optional[str],
        typer.Option(help="Labelled data (.tsv/.csv/.jsonl/.json or hub dataset id): gate task accuracy vs fp32."),
    ] = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    split: SplitOpt = None,
    eval_limit: LimitOpt = None,
    max_length: Annotated[Optional[int], typer.Option(help="Token limit (default: the profile's).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Bundle name prefix (default: from MODEL).")] = None,
    revision: Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit).")] = None,
    normalize: Annotated[
        Optional[bool], typer.Option(help="L2-normalise embeddings (default: from the model).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing bundles.")] = False,
    rescue: Annotated[
        bool, typer.Option(help="If an int8 recipe fails its gate, keep its most sensitive nodes float and retry.")
    ] = True,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the checkpoint's own Python code to run.")] = False,
    device: Annotated[
        str, typer.Option(help="With --recipe auto: the device that picks (local | ssh://user@host[:port]).")
    ] = "local",
    remote_python: RemotePythonOpt = "python3",
    keep_candidates: Annotated[
        bool, typer.Option(help="With --recipe auto: keep the losing bundles under OUT/candidates.")
    ] = False,
    json_out: JsonOpt = None,
) -> None:
    """Export and quantize MODEL for a target; writes one verified bundle per recipe.
    --recipe auto: converts every recipe of the profile, validates and benches each on --device and
    keeps the fastest that passes. Exit 0 when every required recipe was written, 1 when one was refused
    by its gate, 2 on unusable input."""
    preflight(json_out)
    auto = recipe == ["auto"]
    outcomes = (cli_device.auto_convert(device, remote_python, keep_candidates) if auto else convert_and_show)(
        model,
        target,
        out,
        task=task,
        formats=fmt,
        recipes=recipe,
        texts=texts,
        calibration_data=calibration_data,
        eval_data=read_data(eval_data, text_column, label_column, split, eval_limit),
        max_length=max_length,
        name=name,
        revision=revision,
        normalize=normalize,
        overwrite=overwrite,
        allow_rescue=rescue,
        trust_remote_code=trust_remote_code,
        quiet=json_out == "-",
    )
    document = convert_document(target, out, outcomes)
    write_json(document, json_out)
    raise typer.Exit(0 if document["passed"] else 1)


@app.command()
def validate(
    bundle: Path,
    json_out: JsonOpt = None,
    threads: ThreadsOpt = None,
    profile: Annotated[
        Optional[str], typer.Option(help="Gate with this profile's recipe gates instead of the bundle's.")
    ] = None,
    data: Annotated[
        Optional[str], typer.Option(help="Labelled data (.tsv/.csv/.jsonl/.json or hub id): task accuracy vs fp32.")
    ] = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    report_dir: Annotated[Path, typer.Option(help="Where the JSON + Markdown report go.")] = Path("reports"),
    plot: Annotated[bool, typer.Option(help="Also draw PNG charts (needs matplotlib).")] = False,
    device: DeviceOpt = "local",
    remote_python: RemotePythonOpt = "python3",
) -> None:
    """On the device: checksums, tokenizer, parity against the golden outputs and, with --data, task accuracy
    as % of fp32. Writes REPORT_DIR/BUNDLE.validate.{json,md}. Exit 0 pass, 1 fail, 2 unusable."""
    preflight(json_out, report_dir)
    labelled = read_data(data, text_column, label_column, split, limit)
    typed = {"profile": profile, "data": data, "text_column": text_column, "label_column": label_column}
    run_validate = runner_for("validate", open_transport(device, remote_python), **typed, split=split, limit=limit)
    try:
        gates = profile_gates(bundle, profile) if profile else None
        with Progress(console=console, transient=True, disable=json_out == "-" or not console.is_terminal) as progress:
            task = progress.add_task("evaluating", total=None)
            result = run_validate(
                bundle,
                gates=gates,
                threads=threads,
                data=labelled,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        files = write_reports(result, report_dir, plot)
    except EdgeBertError as exc:
        raise fail(exc) from exc
    except OSError as exc:  # e.g. the disk filled up while writing reports
        raise fail(InputError(f"{exc.filename or report_dir}: {exc.strerror or exc}")) from exc
    if json_out != "-":
        console.print(validation_table(result))
        console.print(f"[dim]report: {', '.join(str(f) for f in files)}[/dim]", highlight=False)
    write_json(result.to_dict(), json_out)
    raise typer.Exit(0 if result.passed else 1)


@app.command()
def bench(
    bundle: Path,
    json_out: JsonOpt = None,
    threads: Annotated[
        Optional[str], typer.Option(help="Runtime threads (default: the profile's). A list here is deprecated.")
    ] = None,
    thread_sweep: Annotated[
        Optional[str], typer.Option(help="Bench once per thread count, e.g. 1,2,4; the fastest one's result wins.")
    ] = None,
    seq_lengths: Annotated[Optional[str], typer.Option(help="Comma-separated, e.g. 16,64,128.")] = None,
    runs: Annotated[Optional[int], typer.Option(help="Timed runs per length.")] = None,
    warmup: Annotated[Optional[int], typer.Option(help="Untimed runs per length.")] = None,
    texts: Annotated[Optional[Path], typer.Option(help="Real texts to cut to each length (default: built-in).")] = None,
    device: DeviceOpt = "local",
    remote_python: RemotePythonOpt = "python3",
    sustained: Annotated[
        Optional[float],
        typer.Option(
            help="Also run the longest length for SECONDS: burst vs sustained p50, and whether the clock dropped."
        ),
    ] = None,
) -> None:
    """On the device: cold load, first inference, warm p50/p90/p99, throughput, peak memory."""
    from edge_bert.textdata import read_texts

    preflight(json_out)
    lengths = csv_ints(seq_lengths)
    if threads and "," in threads:  # the old spelling of a sweep
        thread_sweep, threads = deprecated(thread_sweep, threads, "--threads 1,2,...", "--thread-sweep"), None
    if threads and thread_sweep:
        raise fail(InputError("--threads N runs one thread count, --thread-sweep several: give one of them"))
    counts = csv_ints(thread_sweep, "--thread-sweep") or csv_ints(threads, "--threads")
    run_bench = runner_for("bench", open_transport(device, remote_python), texts=texts)
    try:
        with Progress(console=console, transient=True, disable=json_out == "-" or not console.is_terminal) as progress:
            task = progress.add_task("bench", total=None)
            result = sweep_threads(
                run_bench,
                counts,
                bundle,
                sustained=sustained,
                seq_lengths=lengths,
                runs=runs,
                warmup=warmup,
                texts=read_texts(texts) if texts else None,
                progress=lambda label, done, total: progress.update(
                    task, description=label, completed=done, total=total
                ),
            )
    except EdgeBertError as exc:
        raise fail(exc) from exc
    if json_out != "-":
        lines = [line for line in (roofline_line(result), *board_lines(result)) if line]
        console.print(bench_table(result), *lines, sep="\n")
    write_json(result.to_dict(), json_out)


@app.command()
def inspect(bundle: Path, json_out: JsonOpt = None) -> None:
    """Show what a bundle holds (after verifying its checksums)."""
    from edge_bert.bundle import open_bundle

    preflight(json_out)
    try:
        opened = open_bundle(bundle)
    except EdgeBertError as exc:
        raise fail(exc) from exc
    m = opened.manifest
    if json_out:  # the checksums held: the manifest, as read
        write_json({"schema": "edge-bert/inspect/v1", "bundle": opened.name, "manifest": m.to_dict()}, json_out)
        return
    table = Table(title=f"bundle {terminal(opened.name)}", show_header=False)
    model = m.model
    rows = {
        "model": f"{model.source} ({model.architecture}, {model.parameters:,} parameters)",
        "task": model.task + (f", {len(model.labels)} labels" if model.labels else ""),
        "format / recipe": f"{m.format} / {m.recipe.name} {m.recipe.settings}",
        "target": opened.profile.name,
        "inputs": ", ".join(f"{i.name}:{i.dtype}{list(i.shape)}" for i in m.inputs),
        "outputs": ", ".join(m.outputs) + f" (gated: {m.primary_output})",
        "shapes": f"{m.shapes.policy}, max {m.shapes.max_length} tokens",
        "export": ", ".join(f"{k} {m.export[k]}" for k in ("exporter", "opset", "fusions") if m.export.get(k)),
        "signatures": ", ".join(sorted(m.shapes.signatures or [])) or "-",
        "golden": f"{m.golden.count} texts",
        "eval reference": _eval_line(m.eval),
        "rescue": rescue_line(m.recipe.name, m.rescue) if m.rescue else "-",
        "tools": ", ".join(f"{k} {v}" for k, v in m.tools.items()),
    }
    for name, meta in m.files.items():
        rows[f"file {name}"] = f"{meta.bytes:,} B sha256 {meta.sha256[:16]}…"
    for key, value in rows.items():  # manifest strings are untrusted: shown as text, never as markup
        table.add_row(terminal(key), terminal(value))
    console.print(table)


def _eval_line(info) -> str:  # manifest.EvalInfo | None
    if not info:
        return "-"
    source = info.source.get("name") or info.source.get("id")
    fp32 = ", ".join(f"{k} {v:.4f}" for k, v in info.fp32.items() if v is not None)
    return f"fp32 outputs for {info.rows} texts of {source}" + (f" (fp32 {fp32})" if fp32 else "")


# commands that live in their own modules (none of them imports this one)
for _module in (cli_run, cli_train, cli_device, cli_text, cli_matrix, cli_report, cli_compare):
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
