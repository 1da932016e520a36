"""The ``edge-bert`` command line. Imports the converter (torch) only inside ``convert`` and ``run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import Progress
from rich.table import Table

from edge_bert.devices.dispatch import bench_on_device, emulated_note, is_local, validate_on_device
from edge_bert.errors import EdgeBertError, InputError
from edge_bert.profiles import list_profiles, load_profile
from edge_bert.report import (
    bench_table,
    check_output_file,
    check_report_dir,
    console,
    err_console,
    gate_label,
    machine_line,
    print_error,
    validation_table,
    write_json,
    write_reports,
)
from edge_bert.report import console as stdout_console
from edge_bert.thermal import board_lines, thread_sweep

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Convert compact BERT-family models into verified edge bundles; validate and bench them.",
)

JsonOpt = Annotated[Optional[str], typer.Option("--json", help="Write the result as JSON to PATH ('-' = stdout).")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="Runtime threads (default: the bundle's profile).")]
TextColumnOpt = Annotated[Optional[str], typer.Option(help="Text column of the data (default: text, sentence, ...).")]
LabelColumnOpt = Annotated[Optional[str], typer.Option(help="Label column of the data (default: label, intent, ...).")]
SplitOpt = Annotated[
    Optional[str], typer.Option(help="Split: a key of a .json file (e.g. test) or of a hub dataset (validation).")
]
TargetOpt = Annotated[
    str, typer.Option(help="Built-in target name, path of a .toml profile, or auto (the one matching this CPU).")
]
LimitOpt = Annotated[Optional[int], typer.Option(help="Use only the first N rows of the data.")]
DeviceOpt = Annotated[
    str, typer.Option(help="Where to run: local | ssh://user@host[:port] | emu:rpi4|rpi5|android-arm64.")
]
RemotePythonOpt = Annotated[str, typer.Option(help="ssh:// devices: the Python on the device that has edge-bert.")]


def _fail(exc: EdgeBertError) -> typer.Exit:
    """Exit 2 with one line on stderr: the input is unusable (exit 1 means a gate failed)."""
    print_error(str(exc))
    return typer.Exit(2)


def _csv_ints(value: Optional[str], option: str = "--seq-lengths") -> Optional[tuple[int, ...]]:
    if not value:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise _fail(InputError(f"{option} {value!r}: expected comma-separated integers, e.g. 16,64,128")) from None


def _preflight(json_out: Optional[str], report_dir: Optional[Path] = None) -> None:
    """Check where results go before any work: a PASS must never be lost to an unwritable path."""
    try:
        check_output_file(json_out)
        if report_dir is not None:
            check_report_dir(report_dir)
    except EdgeBertError as exc:
        raise _fail(exc) from exc


def _profile_gates(bundle: Path, profile: str):
    """``validate --profile``: the named profile's gates for this bundle's format and recipe."""
    from edge_bert.bundle import open_bundle

    manifest = open_bundle(bundle).manifest
    spec = load_profile(profile).formats.get(manifest.format)
    if spec is None:
        raise InputError(f"--profile {profile}: it has no {manifest.format} recipes for this {manifest.format} bundle")
    return spec.recipe(manifest.recipe.name).gates


@app.command()
def targets() -> None:
    """List the built-in target profiles."""
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
) -> None:
    """Export and quantize MODEL for a target; writes one verified bundle per recipe.
    --recipe auto: converts every recipe of the profile, validates and benches each on --device and
    keeps the fastest that passes."""
    outcomes = (_convert if recipe != ["auto"] else auto_convert(device, remote_python, keep_candidates))(
        model,
        target,
        out,
        task=task,
        formats=fmt,
        recipes=recipe,
        texts=texts,
        calibration_data=calibration_data,
        eval_data=_read_data(eval_data, text_column, label_column, split, eval_limit),
        max_length=max_length,
        name=name,
        revision=revision,
        normalize=normalize,
        overwrite=overwrite,
        allow_rescue=rescue,
        trust_remote_code=trust_remote_code,
    )
    if not all(o.passed for o in outcomes if o.required):
        raise typer.Exit(1)


def _read_data(location: Optional[str], text_column, label_column, split, limit):
    """Labelled data for convert --eval-data / validate --data (None when not asked for)."""
    if location is None:
        return None
    from edge_bert.evaldata import read_labelled

    try:
        return read_labelled(location, text_column, label_column, split, limit)
    except EdgeBertError as exc:
        raise _fail(exc) from exc


def _convert(model: Optional[str], target: str, out: Path, quiet: bool = False, **options) -> list:
    """Run the converter and print its table (on stderr when stdout carries JSON)."""
    from edge_bert.textdata import read_texts

    console = err_console if quiet else stdout_console
    try:
        from edge_bert.converters.convert import convert as run_convert
    except ImportError as exc:
        raise _fail(InputError(f"convert needs the converter extra ({exc.name} is missing): "
                               "pip install 'edge-bert[convert]'")) from exc  # fmt: skip
    try:
        for key in ("texts", "calibration_data"):
            if options[key] is not None:
                options[key] = read_texts(options[key])
        options["calibration_texts"] = options.pop("calibration_data")
        outcomes = run_convert(
            model, target, out, log=lambda m: console.print(f"[dim]{m}[/dim]", highlight=False), **options
        )
    except EdgeBertError as exc:
        raise _fail(exc) from exc
    table = Table(title=f"convert → {out}")
    columns = ["format", "recipe", "model MB", "mean cosine", "worst cosine", "top-1"]
    with_accuracy = any(o.accuracy for o in outcomes)
    columns += ["accuracy", "% of fp32"] if with_accuracy else []
    for column in (*columns, "verdict", "bundle"):
        table.add_column(column)
    for o in outcomes:
        p, a = o.parity or {}, o.accuracy or {}
        task_cells = [_f(a.get("accuracy", a.get("knn_accuracy"))), _f(a.get("accuracy_pct_of_fp32"), 2)]
        table.add_row(
            o.format,
            o.recipe,
            f"{(o.model_bytes or 0) / 1e6:.1f}",
            _f(p.get("mean_cosine")),
            _f(p.get("worst_cosine")),
            _f(p.get("top1_agreement")),
            *(task_cells if with_accuracy else []),
            "[green]written[/green]" if o.passed else ("[red]" if o.required else "[yellow]attempt: ") + o.error,
            str(o.bundle or "-"),
        )
    console.print(table)
    for o in outcomes:
        if o.rescue:
            console.print(_rescue_line(o.recipe, o.rescue), highlight=False)
    return outcomes


def _rescue_line(recipe: str, rescue: dict) -> str:
    size, p50 = rescue["bytes"], rescue["host_p50_ms"]
    plain, rescued = size["plain"] / 1e6, size["rescued"] / 1e6
    return (
        f"{recipe}: rescued by keeping {len(rescue['kept_float'])} node(s) float "
        f"(+{rescued - plain:.2f} MB: {plain:.1f} -> {rescued:.1f} MB; "
        f"host p50 {p50['plain']:.2f} -> {p50['rescued']:.2f} ms"
        + "".join(
            f"; without it {gate_label(name)} was {gate['value']:.4g}, gate {gate['threshold']:g}"
            for name, gate in (rescue.get("plain_failed_gates") or {}).items()
        )
        + "): "
        + ", ".join(rescue.get("kept_float_labels", rescue["kept_float"]))
    )


def _f(value: Optional[float], digits: int = 5) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


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
    from edge_bert.validate import validate as run_validate

    _preflight(json_out, report_dir)
    labelled = _read_data(data, text_column, label_column, split, limit)
    try:
        gates = _profile_gates(bundle, profile) if profile else None
        with Progress(console=console, transient=True, disable=json_out == "-" or not console.is_terminal) as progress:
            task = progress.add_task("evaluating", total=None)
            on_device = validate_on_device(
                device, remote_python, profile, data, text_column, label_column, split, limit
            )
            result = (run_validate if is_local(device) else on_device)(
                bundle,
                gates=gates,
                threads=threads,
                data=labelled,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        files = write_reports(result, report_dir, plot)
    except EdgeBertError as exc:
        raise _fail(exc) from exc
    except OSError as exc:  # e.g. the disk filled up while writing reports
        raise _fail(InputError(f"{exc.filename or report_dir}: {exc.strerror or exc}")) from exc
    if json_out != "-":
        console.print(validation_table(result))
        console.print(f"[dim]report: {', '.join(str(f) for f in files)}[/dim]", highlight=False)
    write_json(result, json_out)
    raise typer.Exit(0 if result["passed"] else 1)


@app.command()
def bench(
    bundle: Path,
    json_out: JsonOpt = None,
    threads: Annotated[
        Optional[str], typer.Option(help="Runtime threads (default: the profile's); a list such as 1,2,4 sweeps them.")
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
    from edge_bert.bench import bench as run_bench
    from edge_bert.textdata import read_texts

    _preflight(json_out)
    lengths = _csv_ints(seq_lengths)
    try:
        with Progress(console=console, transient=True, disable=json_out == "-" or not console.is_terminal) as progress:
            task = progress.add_task("bench", total=None)
            result = thread_sweep(
                run_bench if is_local(device) else bench_on_device(device, remote_python, texts),
                _csv_ints(threads, "--threads"),
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
        raise _fail(exc) from exc
    if json_out != "-":
        console.print(bench_table(result), *board_lines(result), sep="\n")
    write_json(result, json_out)


@app.command()
def inspect(bundle: Path, json_out: JsonOpt = None) -> None:
    """Show what a bundle holds (after verifying its checksums)."""
    from edge_bert.bundle import open_bundle

    _preflight(json_out)
    try:
        opened = open_bundle(bundle)
    except EdgeBertError as exc:
        raise _fail(exc) from exc
    m = opened.manifest
    if json_out:
        write_json(m.to_dict(), json_out)
        return
    table = Table(title=f"bundle {opened.name}", show_header=False)
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
        "rescue": _rescue_line(m.recipe.name, m.rescue) if m.rescue else "-",
        "tools": ", ".join(f"{k} {v}" for k, v in m.tools.items()),
    }
    for name, meta in m.files.items():
        rows[f"file {name}"] = f"{meta.bytes:,} B sha256 {meta.sha256[:16]}…"
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)


def _eval_line(info) -> str:  # manifest.EvalInfo | None
    if not info:
        return "-"
    source = info.source.get("name") or info.source.get("id")
    fp32 = ", ".join(f"{k} {v:.4f}" for k, v in info.fp32.items() if v is not None)
    return f"fp32 outputs for {info.rows} texts of {source}" + (f" (fp32 {fp32})" if fp32 else "")


@app.command()
def run(
    model: Annotated[Optional[str], typer.Argument(help="Hub id or dir (default: embedded all-MiniLM-L6-v2).")] = None,
    target: TargetOpt = "auto",
    out: Annotated[Path, typer.Option(help="Where bundles go.")] = Path("bundles"),
    runs: Annotated[int, typer.Option(help="Timed bench runs per length.")] = 30,
    json_out: JsonOpt = None,
    report_dir: Annotated[Path, typer.Option(help="Where the validate reports go.")] = Path("reports"),
    device: DeviceOpt = "local",
    remote_python: RemotePythonOpt = "python3",
    distill: Annotated[Optional[int], typer.Option(help="Distil MODEL into N layers first (+ --data).")] = None,
    data: Annotated[Optional[str], typer.Option(help="With --distill: labelled training data.")] = None,
    split: SplitOpt = None,
    eval_data: Annotated[Optional[str], typer.Option(help="With --distill: labelled evaluation data.")] = None,
    eval_split: Annotated[Optional[str], typer.Option(help="Split of --eval-data.")] = None,
) -> None:
    """The whole chain: convert every recipe, validate and bench each bundle, print one table.
    Validate reports go to REPORT_DIR as with `edge-bert validate`. Exit 0 when every required recipe was
    written and validates, 1 when one was refused or fails, 2 on unusable input."""
    from edge_bert.bench import bench as run_bench
    from edge_bert.validate import validate as run_validate

    if distill is not None:  # teacher -> student -> bundles of both, side by side (edge_bert/cli_train.py)
        from edge_bert.cli_train import run_distill

        if data is None:
            raise _fail(InputError("--distill needs --data (the texts to distil on)"))
        run_distill(model, distill, data, target, out, runs, split, eval_data, eval_split, report_dir)
    _preflight(json_out, report_dir)
    if runs < 1:
        raise _fail(InputError(f"--runs must be at least 1, got {runs}"))
    outcomes = _convert(
        model,
        target,
        out,
        task=None,
        formats=None,
        recipes=None,
        texts=None,
        calibration_data=None,
        eval_data=None,
        max_length=None,
        name=None,
        revision=None,
        normalize=None,
        overwrite=True,
        allow_rescue=True,
        trust_remote_code=False,
        quiet=json_out == "-",
    )
    written = [o for o in outcomes if o.passed]
    results = []
    try:
        for outcome in written:
            _status(json_out, f"validate + bench {outcome.bundle.name}")
            check = (run_validate if is_local(device) else validate_on_device(device, remote_python))(outcome.bundle)
            write_reports(check, report_dir)
            timing = run_bench if is_local(device) else bench_on_device(device, remote_python)
            results.append((check, timing(outcome.bundle, runs=runs, warmup=5)))
    except EdgeBertError as exc:
        raise _fail(exc) from exc
    passed = bool(results) and all(o.passed for o in outcomes if o.required) and all(c["passed"] for c, _ in results)
    write_json(_run_document(target, outcomes, results, passed), json_out)
    if results and json_out != "-":
        console.print(_run_table(target, results))
    raise typer.Exit(0 if passed else 1)


def _status(json_out: Optional[str], message: str) -> None:
    if json_out != "-":
        console.print(f"[dim]{message}[/dim]", highlight=False)


def _run_document(target: str, outcomes: list, results: list, passed: bool) -> dict:
    refused = [
        {"format": o.format, "recipe": o.recipe, "required": o.required, "reason": o.error}
        for o in outcomes
        if not o.passed
    ]
    bundles = [{"validate": check, "bench": timing} for check, timing in results]
    return {"schema": "edge-bert/run/v1", "target": target, "passed": passed, "bundles": bundles, "refused": refused}


def _run_table(target: str, results: list) -> Table:
    lengths = [row["seq_length"] for row in results[0][1]["latency"]]
    fp32 = {r["recipe"]: r for _, r in results}.get("fp32")
    table = Table(
        title=f"edge-bert run: {len(results)} bundles for target {_target_name(target)}" + emulated_note(results[0][1]),
        caption=machine_line(results[0][1]["machine"]) + f" · {results[0][1]['settings']['threads']} threads",
    )
    for column in (
        ["recipe", "MB", "validate", "mean cos", "top-1"]
        + [f"p50 @{n} ms" for n in lengths]
        + ["× fp32 @" + str(lengths[-1])]
    ):
        table.add_column(column, justify="right")
    for check, timing in results:
        p50 = [row["p50_ms"] for row in timing["latency"]]
        speedup = fp32["latency"][-1]["p50_ms"] / p50[-1] if fp32 else None
        table.add_row(
            check["recipe"],
            f"{timing['model_bytes'] / 1e6:.1f}",
            "[green]pass[/green]" if check["passed"] else "[red]fail[/red]",
            _f(check["parity"]["mean_cosine"]),
            _f(check["parity"]["top1_agreement"]),
            *[f"{v:.2f}" for v in p50],
            "-" if speedup is None else f"{speedup:.2f}",
        )
    return table


def _target_name(target: str) -> str:
    try:
        return load_profile(target).name
    except EdgeBertError:
        return target


# --- command modules: each registers its commands on ``app`` (one import + one register line each) ---
from edge_bert.cli_train import register as register_train  # noqa: E402

register_train(app)
from edge_bert.cli_device import register as register_device  # noqa: E402

register_device(app)
from edge_bert.cli_device import auto_convert  # noqa: E402


def main() -> None:
    app()


if __name__ == "__main__":
    main()
