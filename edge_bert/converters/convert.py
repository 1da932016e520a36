"""``convert``: checkpoint -> export -> recipes -> golden -> one verified bundle per recipe.

A recipe's bundle is written only if the runner's own ``validate`` passes on the staged bundle
under the profile's gates; otherwise the report says by how much it failed and nothing is written.
"""

from __future__ import annotations

import importlib.metadata
import platform
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
from edge_bert.bundle import check_writable_dir, write_bundle
from edge_bert.converters.golden import Golden, make_golden, tokenize
from edge_bert.converters.loading import DEFAULT_MODEL_NAME, LoadedModel, default_model_path, load_model
from edge_bert.converters.onnx_export import EXPORT_ATOL, export_onnx, measure_parity
from edge_bert.converters.onnx_quantize import optimize, produce
from edge_bert.converters.tasks import build_graph, task_config
from edge_bert.errors import ConversionError, EdgeBertError, InputError
from edge_bert.profiles import FormatSpec, Recipe, TargetProfile, load_profile
from edge_bert.session import make_feeds
from edge_bert.textdata import builtin_texts
from edge_bert.validate import validate

#: formats this build can produce; a profile may name others (they are reported, not silently skipped)
PRODUCIBLE_FORMATS = ("onnx",)
#: fusions may reorder float sums; keep them only if the fused graph stays this close to PyTorch
FUSION_ATOL = 10 * EXPORT_ATOL
_TOOLS = ("torch", "transformers", "onnx", "onnxruntime", "tokenizers", "numpy")

Log = Callable[[str], None]


class GateFailure(EdgeBertError):
    def __init__(self, result: dict[str, Any]) -> None:
        failed = {k: v for k, v in result["gates"].items() if not v["pass"]}
        detail = ", ".join(f"{k}: {v['value']:.4g} vs {v['threshold']}" for k, v in failed.items())
        if not result["checks"]["tokenizer"]["pass"]:
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
    max_length: int | None = None,
    name: str | None = None,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    revision: str | None = None,
    normalize: bool | None = None,
    log: Log = print,
) -> list[RecipeOutcome]:
    profile = load_profile(target)
    out = Path(out_dir)
    check_writable_dir(out)
    specs = _formats_to_produce(profile, formats, log)
    if task is not None:
        task_config(task)
    texts = builtin_texts("sentences") if texts is None else texts
    if not texts:
        raise InputError("the text list is empty: golden references need at least one text")
    if source is None:
        source, name = str(default_model_path()), name or DEFAULT_MODEL_NAME
    log(f"loading {source}")
    loaded = load_model(source, task, revision, trust_remote_code, normalize)
    name = name or _slug(source)
    limit = min(
        max_length or profile.shapes.max_length,
        profile.shapes.max_length,
        int(getattr(loaded.config, "max_position_embeddings", 512)),
    )
    static = max(profile.shapes.seq_lengths) if profile.shapes.policy == "static" else None
    limit = min(limit, static or limit)
    spec_task = task_config(loaded.task)
    graph = build_graph(loaded.task, loaded.model, loaded.pooling, loaded.normalize)
    golden = make_golden(graph, loaded.tokenizer, texts, loaded.arch.inputs, limit)
    if golden.truncated:
        log(f"{len(golden.truncated)} golden text(s) longer than {limit} tokens were truncated")
    calibration = _calibration_feeds(loaded, calibration_texts or golden.texts + builtin_texts("paragraphs"), limit)

    outcomes = []
    with tempfile.TemporaryDirectory(prefix="edge-bert-") as work_dir:
        work = Path(work_dir)
        for spec in specs:
            fp32 = work / "model_fp32.onnx"
            log(f"exporting {loaded.arch.model_type} ({loaded.task}) to ONNX")
            classification = loaded.task == "text-classification"
            export = export_onnx(
                graph,
                loaded.arch,
                spec_task.outputs,
                golden,
                fp32,
                int(spec.options.get("opset", 17)),
                classification,
                static,
            )
            base, export["fusions"] = fp32, None
            if spec.options.get("optimize", False):
                fused_path = work / "model_fused.onnx"
                fused = optimize(fp32, fused_path, loaded.arch, loaded.config)
                if fused is not None:
                    check = measure_parity(
                        fused_path, golden, loaded.arch.inputs, spec_task.primary_output, classification, static
                    )
                    kept = check["finite"] and check["max_abs_error"] <= FUSION_ATOL
                    export["fusions"] = {"ops": fused, "kept": kept, "max_abs_error": check["max_abs_error"]}
                    base = fused_path if kept else fp32
            for recipe in _recipes(spec, recipes):
                outcomes.append(
                    _produce_bundle(
                        loaded,
                        profile,
                        spec,
                        recipe,
                        golden,
                        base,
                        work,
                        calibration,
                        export,
                        out / f"{name}-{profile.name}-{recipe.name}",
                        overwrite,
                        static,
                        limit,
                        name,
                        log,
                    )
                )
    return outcomes


def _formats_to_produce(profile: TargetProfile, formats: list[str] | None, log: Log) -> list[FormatSpec]:
    wanted = formats or list(profile.formats)
    for fmt in wanted:
        if fmt not in profile.formats:
            raise ConversionError(f"target {profile.name} names no {fmt!r} format; it has {list(profile.formats)}")
    unavailable = [f for f in wanted if f not in PRODUCIBLE_FORMATS]
    if formats and unavailable:
        raise ConversionError(
            f"this edge-bert cannot produce {unavailable} yet; it produces {list(PRODUCIBLE_FORMATS)}"
        )
    for fmt in unavailable:
        log(f"note: target {profile.name} asks for {fmt}, which this edge-bert cannot produce yet - skipped")
    specs = [profile.formats[f] for f in wanted if f in PRODUCIBLE_FORMATS]
    if not specs:
        raise ConversionError(
            f"target {profile.name} names no format this edge-bert can produce ({PRODUCIBLE_FORMATS})"
        )
    return specs


def _recipes(spec: FormatSpec, names: list[str] | None) -> list[Recipe]:
    return [spec.recipe(n) for n in names] if names else list(spec.recipes)


def _calibration_feeds(loaded: LoadedModel, texts: list[str], limit: int) -> list[dict[str, np.ndarray]]:
    ids, types, _ = tokenize(loaded.tokenizer, texts, limit)
    dtypes = {name: np.dtype(np.int64) for name in loaded.arch.inputs}
    return [make_feeds(np.asarray(i), np.asarray(t), dtypes, len(i)) for i, t in zip(ids, types, strict=True)]


def _produce_bundle(
    loaded: LoadedModel,
    profile: TargetProfile,
    spec: FormatSpec,
    recipe: Recipe,
    golden: Golden,
    base: Path,
    work: Path,
    calibration: list,
    export: dict[str, Any],
    final: Path,
    overwrite: bool,
    static: int | None,
    limit: int,
    name: str,
    log: Log,
) -> RecipeOutcome:
    start = time.perf_counter()
    log(f"recipe {recipe.name}: producing {final.name}")
    model_file = work / f"{recipe.name}.onnx"
    try:
        settings = produce(recipe, base, model_file, calibration)
    except EdgeBertError:
        raise
    except Exception as exc:  # a quantizer failure ends this recipe, not the whole conversion
        message = f"recipe {recipe.name}: onnxruntime's quantizer failed: {type(exc).__name__}: {exc}"
        log(message)
        return RecipeOutcome(spec.name, recipe.name, None, False, None, None, time.perf_counter() - start, message)

    def populate(staging: Path) -> dict[str, Any]:
        shutil.copyfile(model_file, staging / "model.onnx")
        loaded.config.save_pretrained(staging)
        loaded.tokenizer.save_pretrained(staging)
        golden.save(staging / "golden.npz")
        if loaded.labels:
            (staging / "labels.txt").write_text("\n".join(loaded.labels) + "\n", encoding="utf-8")
        return _manifest(loaded, profile, spec, recipe, settings, golden, export, static, limit, name)

    def gate(staging: Path) -> dict[str, Any]:
        result = validate(staging, gates=recipe.gates)
        if not result["passed"]:
            raise GateFailure(result)
        return {"conversion_check": {"parity": result["parity"], "gates": result["gates"]}}

    try:
        bundle = write_bundle(final, populate, overwrite=overwrite, accept=gate)
    except GateFailure as failure:
        log(f"recipe {recipe.name}: {failure}")
        return RecipeOutcome(
            spec.name,
            recipe.name,
            None,
            False,
            failure.result["parity"],
            model_file.stat().st_size,
            time.perf_counter() - start,
            str(failure),
        )
    check = bundle.manifest["conversion_check"]["parity"]
    return RecipeOutcome(
        spec.name, recipe.name, bundle.path, True, check, bundle.model_path.stat().st_size, time.perf_counter() - start
    )


def _manifest(
    loaded: LoadedModel,
    profile: TargetProfile,
    spec: FormatSpec,
    recipe: Recipe,
    settings: dict[str, Any],
    golden: Golden,
    export: dict[str, Any],
    static: int | None,
    limit: int,
    name: str,
) -> dict[str, Any]:
    task = task_config(loaded.task)
    config = loaded.config
    return {
        "name": f"{name}-{profile.name}-{recipe.name}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {
            "source": loaded.source,
            "revision": loaded.revision,
            "architecture": loaded.arch.model_type,
            "task": loaded.task,
            "labels": loaded.labels,
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
            "hidden_size": getattr(config, loaded.arch.hidden_attr, None),
            "pooling": loaded.pooling if loaded.task == "feature-extraction" else None,
            "normalize": loaded.normalize if loaded.task == "feature-extraction" else None,
        },
        "format": spec.name,
        "runtime": "onnxruntime",
        "model_file": "model.onnx",
        "tokenizer_file": "tokenizer.json",
        "golden_file": "golden.npz",
        "recipe": {"name": recipe.name, "kind": recipe.kind, "settings": settings, "gates": asdict(recipe.gates)},
        "target": profile.raw,
        "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", static or "sequence"]} for n in loaded.arch.inputs],
        "outputs": list(task.outputs),
        "primary_output": task.primary_output,
        "shapes": {
            "policy": "static" if static else "dynamic",
            "seq_lengths": [static] if static else None,
            "max_length": limit,
        },
        "tokenizer": {
            "max_length": limit,
            "truncation": "longest_first, keeps the final [SEP]",
            "lowercase": bool(getattr(loaded.tokenizer, "do_lower_case", False)),
        },
        "golden": golden.info(task.primary_output),
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
    return Path(source.rstrip("/")).name.lower().replace("_", "-") or "model"
