"""``bench``'s task request: what one app call costs end to end for the tasks whose answer is more than one
model call's post-processing. Question answering: a question and a 300-word context, windowed at the
bundle's length (``BundleSession.answer_question``, every window run, the best span decoded); named-entity
recognition: one sentence to entities (``BundleSession.entities``). Timed as the length rows are (warm-up,
then ``runs`` timed calls); ``model`` is the sum of the runtime calls inside each request, timed around
``backend.run``, so ``overhead_pct`` is what tokenizing, windowing and decoding add."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from edge_bert.metrics import latency_stats
from edge_bert.results.bench import Stats, TaskRequest
from edge_bert.session import BundleSession
from edge_bert.textdata import builtin_texts

#: words in the question-answering request's context (a typical paragraph an app asks about)
CONTEXT_WORDS = 300
QUESTION = "What did the first thing we noticed turn out to be?"
NER_SENTENCE = "Maria Lopez flew from Madrid to Toronto on Tuesday to meet the Shopify team at their office."


def qa_request(session: BundleSession) -> tuple[Callable[[], Any], dict[str, Any]]:
    words = " ".join(builtin_texts("paragraphs")).split()[:CONTEXT_WORDS]
    context = " ".join(words)
    call = lambda: session.answer_question(QUESTION, context)  # noqa: E731
    return call, {"kind": "question + context", "context_words": len(words), "windows": call().windows}


def ner_request(session: BundleSession) -> tuple[Callable[[], Any], dict[str, Any]]:
    return lambda: session.entities(NER_SENTENCE), {"kind": "sentence", "words": len(NER_SENTENCE.split())}


#: task -> the request an app makes (other tasks: the length rows are the request)
REQUESTS: dict[str, Callable[[BundleSession], tuple[Callable[[], Any], dict[str, Any]]]] = {
    "question-answering": qa_request,
    "token-classification": ner_request,
}


def task_request(session: BundleSession, warmup: int, runs: int) -> TaskRequest | None:
    """Model and end-to-end latency of the task's request (None for tasks without one)."""
    make = REQUESTS.get(session.bundle.task)
    if make is None:
        return None
    backend = session.backend
    real_run, spent = backend.run, [0.0]

    def timed(feeds: Any) -> Any:
        start = time.perf_counter()
        try:
            return real_run(feeds)
        finally:
            spent[0] += time.perf_counter() - start

    backend.run = timed  # the session calls backend.run; timed around it, restored below
    try:
        call, info = make(session)
        for _ in range(warmup):
            call()
        model, e2e = [0.0] * runs, [0.0] * runs
        for i in range(runs):
            spent[0], start = 0.0, time.perf_counter()
            call()
            e2e[i], model[i] = (time.perf_counter() - start) * 1000, spent[0] * 1000
    finally:
        del backend.run
    model_stats, e2e_stats = latency_stats(model), latency_stats(e2e)
    return TaskRequest(
        **info,
        model=Stats(**{k: v for k, v in model_stats.items() if k != "runs"}),
        e2e=Stats(**{k: v for k, v in e2e_stats.items() if k != "runs"}),
        overhead_pct=100 * (e2e_stats["p50_ms"] / model_stats["p50_ms"] - 1),
    )
