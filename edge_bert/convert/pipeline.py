"""``convert``: checkpoint -> golden references -> per format: export, recipes -> one bundle per recipe.

A recipe's bundle is written only if the runner's own ``validate`` passes on the staged bundle
under the profile's gates; otherwise the report says by how much it failed and nothing is written.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_bert import __version__
from edge_bert.accuracy import summary
from edge_bert.bundle import Bundle, check_writable_dir, write_bundle
from edge_bert.convert.architectures import ArchitectureConfig
from edge_bert.convert.eval_reference import EvalReference, check_labels, make_eval_reference
from edge_bert.convert.flops import METHOD, flops_by_length
from edge_bert.convert.golden import make_golden, tokenize
from edge_bert.convert.loading import DEFAULT_MODEL_NAME, default_model_path, load_model
from edge_bert.convert.rescue import rescue
from edge_bert.convert.tasks import build_graph, host_task
from edge_bert.errors import ConversionError, EdgeBertError, InputError
from edge_bert.evaldata import LabelledData
from edge_bert.formats.base import ExportJob, ModelFormat, format_class
from edge_bert.profiles import FormatSpec, Recipe, TargetProfile, load_profile
from edge_bert.recipes import FORMATS
from edge_bert.results.validate import ValidateResult
from edge_bert.schema import to_plain
from edge_bert.textdata import builtin_texts
from edge_bert.validate import validate_result

_TOOLS = (
    "torch",
    "transformers",
    "onnx",
    "onnxruntime",
    "tokenizers",
    "numpy",
    "litert-torch",
    "litert-quantizer",
    "ai-edge-litert",
    "openvino",
    "nncf",
)

Log = Callable[[str], None]
#: golden texts taken from --eval-data when no --texts are given
GOLDEN_FROM_EVAL = 64


def _figure(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


class GateFailure(EdgeBertError):
    def __init__(self, result: ValidateResult) -> None:
        failed = {name: result.gates[name] for name in result.failed_gates()}
        self.failed = {k: {"value": v.value, "threshold": v.threshold} for k, v in failed.items()}
        detail = ", ".join(f"{k}: {_figure(v.value)} vs {v.threshold}" for k, v in failed.items())
        if not result.checks.tokenizer.passed:
            detail = "tokenizer mismatch; " + detail
        super().__init__(f"failed its parity gate ({detail}); bundle not written")
        self.result = result


@dataclass
class RecipeOutcome:
    format: str
    recipe: str
    bundle: Path | None
    passed: bool
    parity: dict[str, Any] | None
    model_bytes: int | None
    seconds: float
    error: str | None = None
    accuracy: dict[str, Any] | None = None  # headline task metrics on --eval-data
    rescue: dict[str, Any] | None = None  # nodes kept float to pass the gate, and their cost
    #: False for a profile's attempts (``required = false``): a refusal is reported, not an error
    required: bool = True
    #: what the recipe produced (the manifest's recipe settings), also when the gate refused it
    settings: dict[str, Any] | None = None


def convert(
    source: str | None = None,
    target: str | Path = "x86",
    out_dir: str | Path = "bundles",
    *,
    task: str | None = None,
    formats: list[str] | None = None,
    recipes: list[str] | None = None,
    texts: list[str] | None = None,
    calibration_texts: list[str] | None = None,
    eval_data: LabelledData | None = None,
    max_length: int | None = None,
    name: str | None = None,
    overwrite: bool = False,
    allow_rescue: bool = True,
    trust_remote_code: bool = False,
    revision: str | None = None,
    normalize: bool | None = None,
    log: Log = print,
) -> list[RecipeOutcome]:
    """Convert ``source`` (hub id or dir; None = the embedded MiniLM) for ``target``; one outcome per recipe."""
    profile = load_profile(target)
    out = Path(out_dir)
    check_writable_dir(out)
    specs = _formats_to_produce(profile, formats, recipes)
    if task is not None:
        host_task(task)
    builtin = texts is None and eval_data is None
    if texts is None:
        texts = golden_sample(eval_data) if eval_data is not None else builtin_texts("sentences")
    if not texts:
        raise InputError("the text list is empty: golden references need at least one text")
    if source is None:
        source, name = str(default_model_path()), name or DEFAULT_MODEL_NAME
    log(f"loading {source}")
    loaded = load_model(source, task, revision, trust_remote_code, normalize)
    name = _slug(name or source)
    classes = {spec.name: format_class(spec.name) for spec in specs}
    static = [max(n) for spec in specs if (n := classes[spec.name].static_lengths(profile, spec))]
    limits = [max_length, profile.shapes.max_length, getattr(loaded.config, "max_position_embeddings", None), *static]
    limit = min(int(n) for n in limits if n)
    if eval_data is not None:
        check_labels(eval_data, loaded.spec, loaded.labels)
    calibration_texts = calibration_texts or texts + builtin_texts("paragraphs")
    if builtin:
        texts = texts + [text for extra in loaded.spec.golden_extra for text in builtin_texts(extra)]
    graph = build_graph(loaded.task, loaded.model, loaded.pooling, loaded.normalize)
    golden = make_golden(graph, loaded.tokenizer, texts, loaded.arch, loaded.spec, limit)
    if golden.truncated:
        log(f"{len(golden.truncated)} golden text(s) longer than {limit} tokens were truncated")
    ids, types, _ = tokenize(loaded.tokenizer, calibration_texts, limit)
    calibration = [(np.asarray(i, np.int64), np.asarray(t, np.int64)) for i, t in zip(ids, types, strict=True)]
    reference = None
    if eval_data is not None:
        log(f"fp32 reference on {len(eval_data)} evaluation texts ({eval_data.source.get('name') or eval_data.source})")
        reference = make_eval_reference(
            graph, loaded.tokenizer, eval_data, loaded.arch, limit, loaded.spec, loaded.labels
        )
        log(f"fp32 on the evaluation data: {reference.fp32 or 'no labels'}")

    flops = _count_flops(
        graph, loaded.arch, profile, [n for spec in specs for n in _static(classes, spec, profile)], limit, log
    )

    extra = {"flops": flops} if flops else {}
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="edge-bert-") as work_dir:
        for spec in specs:
            work = Path(work_dir) / spec.name
            work.mkdir()
            fmt = classes[spec.name](ExportJob(loaded, graph, golden, profile, spec, work, limit, calibration))
            export = fmt.export(log)
            for recipe in _recipes(spec, recipes):
                final = out / _safe_id(f"{name}-{profile.name}-{spec.name}-{recipe.name}")
                outcomes.append(
                    _produce_bundle(fmt, recipe, export, final, reference, overwrite, allow_rescue, log, extra)
                )
    return outcomes


#: lengths FLOPs are always counted at (besides the profile's bench and static lengths and the max length)
FLOP_LENGTHS = (16, 32, 64, 128, 256, 512)


def _static(classes: dict, spec: FormatSpec, profile: TargetProfile) -> list[int]:
    return classes[spec.name].static_lengths(profile, spec) or []


def _count_flops(
    graph: Any, arch: ArchitectureConfig, profile: TargetProfile, static: list[int], limit: int, log: Log
) -> dict[str, Any] | None:
    """The manifest's ``flops`` for bench's roofline; None (and a note) if the graph cannot be counted."""
    lengths = [n for n in (*FLOP_LENGTHS, *profile.bench.seq_lengths, *static, limit) if 2 <= n <= limit]
    try:
        return {"method": METHOD, "per_seq_length": flops_by_length(graph, arch, lengths)}
    except Exception as exc:  # a counting failure costs the roofline columns, not the conversion
        log(f"note: FLOPs not counted ({type(exc).__name__}: {str(exc)[:120]}); bench prints no roofline")
        return None


def golden_sample(data: LabelledData, count: int = GOLDEN_FROM_EVAL) -> list[str]:
    """Golden texts from the user's evaluation data (evenly spread rows): parity is then measured on the
    task's own inputs. A classifier is unsure on text from another domain, and one flipped argmax of a
    near-tie there would fail a top-1 gate that says nothing about the task."""
    rows = np.unique(np.linspace(0, len(data) - 1, min(count, len(data))).astype(int))
    return [data.texts[i] for i in rows]


def _formats_to_produce(
    profile: TargetProfile, formats: list[str] | None, recipes: list[str] | None
) -> list[FormatSpec]:
    """The profile's formats, or those of them asked for (every format a profile may name is producible:
    profiles name only formats in ``recipes.FORMATS``); with named recipes, only the formats that have one
    of them - a recipe no chosen format has is refused here, before anything is exported."""
    for fmt in formats or ():
        if fmt not in profile.formats:
            reason = FORMATS[fmt].unavailable.get(profile.arch) if fmt in FORMATS else None
            why = f" ({fmt} is not offered on {profile.arch}: {reason})" if reason else ""
            raise ConversionError(f"target {profile.name} names no {fmt!r} format; it has {list(profile.formats)}{why}")
    chosen = [profile.formats[f] for f in formats or profile.formats]
    for name in recipes or ():
        if not any(name in _names(spec) for spec in chosen):
            offered = {spec.name: sorted(_names(spec)) for spec in chosen}
            raise ConversionError(f"recipe {name!r} is in none of target {profile.name}'s formats: {offered}")
    return [spec for spec in chosen if not recipes or _names(spec) & set(recipes)]


def _names(spec: FormatSpec) -> set[str]:
    return {recipe.name for recipe in spec.recipes}


def _recipes(spec: FormatSpec, names: list[str] | None) -> list[Recipe]:
    return [spec.recipe(n) for n in names if n in _names(spec)] if names else list(spec.recipes)


def _produce_bundle(
    fmt: ModelFormat,
    recipe: Recipe,
    export: dict[str, Any],
    final: Path,
    reference: EvalReference | None,
    overwrite: bool,
    allow_rescue: bool,
    log: Log,
    manifest_extra: dict[str, Any] | None = None,
) -> RecipeOutcome:
    start = time.perf_counter()
    log(f"recipe {recipe.name}: producing {final.name}")
    settings: dict[str, Any] | None = None
    model_file = fmt.job.work / f"{recipe.name}-{fmt.model_file}"

    def outcome(
        bundle: Path | None, check: dict[str, Any] | None, error: str | None = None, rescued: dict | None = None
    ) -> RecipeOutcome:
        files = fmt.bundle_files(model_file).values()
        size = sum(f.stat().st_size for f in files) if all(f.exists() for f in files) else None
        parity, accuracy = (check or {}).get("parity"), (check or {}).get("accuracy")
        seconds = time.perf_counter() - start
        return RecipeOutcome(
            fmt.name, recipe.name, bundle, error is None, parity, size, seconds, error, accuracy, rescued,
            recipe.required, settings,
        )  # fmt: skip

    try:
        settings = fmt.produce(recipe, model_file)
    except EdgeBertError:
        raise
    except Exception as exc:  # a quantizer failure ends this recipe, not the whole conversion
        message = f"recipe {recipe.name}: the {fmt.name} quantizer failed: {type(exc).__name__}: {exc}"
        log(message)
        return outcome(None, None, message)

    def attempt(trial: Recipe, trial_settings: dict[str, Any], extra: dict[str, Any]) -> Bundle:
        extra = {**(manifest_extra or {}), **extra}
        return _write(fmt, trial, trial_settings, export, final, reference, model_file, overwrite, extra)

    try:
        bundle = attempt(recipe, settings, {})
    except GateFailure as failure:
        log(f"recipe {recipe.name}: {failure}")
        fp32_bytes = fmt.model_bytes(fmt.fp32_path) if fmt.fp32_path else 0
        bundle = (
            rescue(fmt, recipe, model_file, fp32_bytes, attempt, GateFailure, log, failure.failed)
            if allow_rescue
            else None
        )
        if bundle is None:
            result = failure.result
            metrics = result.accuracy.metrics if result.accuracy else None
            accuracy = summary(metrics) if metrics else None
            parity = to_plain(result.parity, drop_unset=True)
            return outcome(None, {"parity": parity, "accuracy": accuracy}, str(failure))
    settings = bundle.manifest.recipe.settings  # a rescued bundle's: with the nodes it kept float
    return outcome(bundle.path, bundle.manifest.conversion_check, rescued=bundle.manifest.rescue)


def _write(
    fmt: ModelFormat,
    recipe: Recipe,
    settings: dict[str, Any],
    export: dict[str, Any],
    final: Path,
    reference: EvalReference | None,
    model_file: Path,
    overwrite: bool,
    extra: dict[str, Any],
) -> Bundle:
    """Stage the bundle, gate it with the runner's validate (raises GateFailure), rename it into place."""
    checks: dict[str, Any] = {}  # what the format measured on its extra files (e.g. the MediaPipe model)

    def populate(staging: Path) -> dict[str, Any]:
        loaded = fmt.job.loaded
        for name, produced in fmt.bundle_files(model_file).items():
            shutil.copyfile(produced, staging / name)
        loaded.config.save_pretrained(staging)
        loaded.tokenizer.save_pretrained(staging)
        fmt.job.golden.save(staging / "golden.npz")
        if loaded.labels:
            (staging / "labels.txt").write_text("\n".join(loaded.labels) + "\n", encoding="utf-8")
        checks.update(fmt.write_extras(staging, recipe) or {})
        manifest = {**_manifest(fmt, recipe, settings, export, final.name), **extra}
        if reference is not None:
            reference.save(staging)
            manifest["eval"] = reference.manifest()
        return manifest

    def gate(staging: Path) -> dict[str, Any]:
        result = validate_result(staging, gates=recipe.gates, data=reference.data if reference else None)
        if not result.passed:
            raise GateFailure(result)
        check = {"parity": to_plain(result.parity, drop_unset=True), "gates": to_plain(result.gates), **checks}
        if metrics := (result.accuracy.metrics if result.accuracy else None):
            check["accuracy"] = summary(metrics)
        return {"conversion_check": check}

    return write_bundle(final, populate, overwrite=overwrite, accept=gate)


def _manifest(
    fmt: ModelFormat, recipe: Recipe, settings: dict[str, Any], export: dict[str, Any], bundle_name: str
) -> dict[str, Any]:
    job = fmt.job
    loaded, task = job.loaded, job.task
    embedding = task.pools
    return {
        "name": bundle_name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {
            "source": loaded.source,
            "revision": loaded.revision,
            "architecture": loaded.arch.model_type,
            "task": loaded.task,
            "labels": loaded.labels,
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
            "hidden_size": getattr(loaded.config, loaded.arch.hidden_attr, None),
            "pooling": loaded.pooling if embedding else None,
            "normalize": loaded.normalize if embedding else None,
        },
        **fmt.manifest_fields(),
        "tokenizer_file": "tokenizer.json",
        "golden_file": "golden.npz",
        "recipe": {"name": recipe.name, "kind": recipe.kind, "settings": settings, "gates": asdict(recipe.gates)},
        "target": job.profile.raw,
        "outputs": list(task.outputs),
        "primary_output": task.primary_output,
        "tokenizer": {
            "max_length": job.max_length,
            "truncation": "longest_first, keeps the final [SEP]",
            "lowercase": bool(getattr(loaded.tokenizer, "do_lower_case", False)),
        },
        "golden": job.golden.info(task.primary_output),
        "export": export,
        "tools": _tool_versions(),
    }


def _tool_versions() -> dict[str, str]:
    versions = {"edge-bert": __version__, "python": platform.python_version()}
    for dist in _TOOLS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _slug(source: str) -> str:
    return _safe_id(Path(source.rstrip("/")).name.lower().replace("_", "-"))[:80]


def _safe_id(text: str) -> str:
    """A bundle-id-safe name (manifest.safe_name): report files are named after it on the device."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-")[:128] or "model"
