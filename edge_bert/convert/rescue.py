"""Accuracy rescue: when a quantized recipe fails its gate, keep the most sensitive nodes in float.

The format measures how much error each quantized node introduces (onnxruntime's qdq_loss_debug
tools / the LiteRT Quantizer's validate, on the calibration text); the worst 1, 2, 4, 8 ... nodes are
then kept float and the recipe retried through the same gate, until it passes or the model is no
longer smaller than an fp16 one. The bundle records which nodes stayed float and what that cost in
size and in latency (timed here, on the host, plain vs rescued, so the trade is visible).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.errors import EdgeBertError
from edge_bert.formats.base import Log, ModelFormat
from edge_bert.metrics import latency_stats
from edge_bert.profiles import Recipe
from edge_bert.recipes import Int8Options
from edge_bert.session import make_feeds

#: at most this many rounds (1, 2, 4, ... 2**(ROUNDS-1) nodes kept float)
ROUNDS = 6
#: timed runs per model for the host latency comparison
TIMED_RUNS = 20

Attempt = Callable[[Recipe, dict[str, Any], dict[str, Any]], Any]


def plan(ranking: list[tuple[str, float, int]], budget: int) -> list[list[str]]:
    """Growing sets of the worst nodes, 1, 2, 4, ...: only nodes that add error at all, and not a node
    whose float weights would overrun ``budget`` bytes (a float embedding table alone costs fp16's size)."""
    chosen, spent = [], 0
    for name, score, extra in ranking:
        if score <= 0:
            break
        if spent + extra <= budget:
            chosen.append(name)
            spent += extra
    sizes = sorted({min(2**i, len(chosen)) for i in range(ROUNDS)} - {0})
    return [chosen[:n] for n in sizes]


def rescue(
    fmt: ModelFormat,
    recipe: Recipe,
    model_file: Path,
    fp32_bytes: int,
    attempt: Attempt,
    failure: type[EdgeBertError],
    log: Log,
    failed: dict[str, Any] | None = None,
) -> Any | None:
    """Retry ``recipe`` keeping ever more nodes float; returns what ``attempt`` returned, or None.

    ``attempt(recipe, settings, manifest_extra)`` writes the bundle through the gate, raising
    ``failure`` when the gate still fails. Only a failure of a gate that decides for the task gets
    here; ``failed`` (those gates of the plain model) is recorded next to the cost, so the manifest
    says what the rescue bought (the rescued values are in its ``conversion_check``).
    """
    if not (isinstance(recipe.options, Int8Options) and recipe.options.rescue):  # what RecipeKind.rescuable says
        return None
    start = time.perf_counter()
    plain = model_file.with_name(f"plain-{model_file.name}")
    try:
        ranking = fmt.sensitivity(recipe, plain)
    except Exception as exc:  # a failed measurement ends the rescue, not the conversion
        log(f"recipe {recipe.name}: no rescue (measuring per-node error failed: {type(exc).__name__}: {exc})")
        return None
    if not ranking:
        why = "no node adds measurable error" if ranking == [] else f"{fmt.name} {recipe.kind} has no per-node rescue"
        log(f"recipe {recipe.name}: no rescue ({why})")
        return None
    log(f"recipe {recipe.name}: rescue - nodes by error introduced: {_top(fmt, ranking)}")
    try:
        result = _retry(
            fmt, recipe, model_file, plain, ranking, fp32_bytes // 2, attempt, failure, log, start, failed or {}
        )
    except EdgeBertError:
        raise
    except Exception as exc:  # a quantizer failure on a retry ends the rescue, not the conversion
        log(f"recipe {recipe.name}: rescue stopped: {type(exc).__name__}: {exc}")
        result = None
    if result is None:  # the outcome reports the refused plain model, not the last retry
        fmt.copy_model(plain, model_file)
    return result


def _retry(
    fmt: ModelFormat,
    recipe: Recipe,
    model_file: Path,
    plain: Path,
    ranking: list[tuple[str, float, int]],
    fp16_bytes: int,
    attempt: Attempt,
    failure: type[EdgeBertError],
    log: Log,
    start: float,
    failed: dict[str, Any],
) -> Any | None:
    for keep in plan(ranking, fp16_bytes - fmt.model_bytes(plain)):
        kept = (*recipe.options.keep_float, *keep)
        trial = replace(recipe, options=replace(recipe.options, keep_float=kept))
        settings = fmt.produce(trial, model_file)
        size = fmt.model_bytes(model_file)
        if size >= fp16_bytes:
            log(f"recipe {recipe.name}: rescue stopped - with {len(keep)} nodes float it is no smaller than fp16")
            return None
        info = {
            "kept_float": keep,
            "ranking": [{"node": n, "error_introduced": score, "float_bytes": b} for n, score, b in ranking[:10]],
            "method": fmt.sensitivity_method,
            "bytes": {"plain": fmt.model_bytes(plain), "rescued": size, "fp16_estimate": fp16_bytes},
            "kept_float_labels": [fmt.node_label(name) for name in keep],
            "host_p50_ms": host_p50(fmt, {"plain": plain, "rescued": model_file}),
            "seconds": round(time.perf_counter() - start, 1),
            "plain_failed_gates": failed,
        }
        try:
            result = attempt(trial, settings, {"rescue": info})
        except failure as exc:
            log(f"recipe {recipe.name}: rescue with {len(keep)} node(s) float still fails: {exc}")
            continue
        log(f"recipe {recipe.name}: rescued by keeping {len(keep)} node(s) float: {_names(fmt, keep)}")
        return result
    return None


def _top(fmt: ModelFormat, ranking: list[tuple[str, float, int]], n: int = 3) -> str:
    return ", ".join(f"{fmt.node_label(name)} ({score:.3g})" for name, score, _ in ranking[:n])


def _names(fmt: ModelFormat, nodes: list[str]) -> str:
    return ", ".join(fmt.node_label(name) for name in nodes)


def host_p50(fmt: ModelFormat, models: dict[str, Path]) -> dict[str, float]:
    """Median latency per model of one real text padded to the longest length, batch 1, 2 threads.

    One model at a time: two live onnxruntime sessions alternating on 2 cores slow each other down
    (their idle threads spin), which doubled both figures when measured interleaved. A host figure
    only: the device's own ``edge-bert bench`` is the number to trust.
    """
    job = fmt.job
    ids, types = max(job.calibration, key=lambda sample: len(sample[0]))
    length = max(fmt.seq_lengths() or [len(ids)])
    dtypes = {name: np.dtype(fmt.input_dtype) for name in job.loaded.arch.inputs}
    feeds = make_feeds(ids[:length], types[:length], dtypes, length)
    medians = {}
    for name, path in models.items():
        backend = fmt.runner(path, threads=2)
        for _ in range(3):
            backend.run(feeds)
        times = []
        for _ in range(TIMED_RUNS):
            begin = time.perf_counter()
            backend.run(feeds)
            times.append((time.perf_counter() - begin) * 1000)
        medians[name] = round(latency_stats(times)["p50_ms"], 3)
        del backend
    return medians
