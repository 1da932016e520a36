"""bench's task request: a question + 300-word context (windowed) and an NER sentence, end to end next to
the model calls inside them, on tiny random ONNX bundles; other tasks have none."""

from __future__ import annotations

from pathlib import Path

from test_question_answering import TINY_PROFILE, save_qa_model
from test_token_classification import _save_tagger

from edge_bert.bench.protocol import bench_result as bench
from edge_bert.bench.requests import CONTEXT_WORDS
from edge_bert.convert.pipeline import convert
from edge_bert.results.io import parse_result


def _bundle(source: Path, out: Path) -> Path:
    (outcome,) = convert(str(source), TINY_PROFILE, out, recipes=["fp32"], log=lambda _: None)
    assert outcome.passed, outcome.error
    return outcome.bundle


def test_question_answering_request_is_windowed_and_timed(tmp_path: Path) -> None:
    bundle = _bundle(save_qa_model("bert", tmp_path / "qa"), tmp_path / "out")
    result = bench(bundle, seq_lengths=(16,), warmup=1, runs=5, roofline=False)
    request = result.task_request
    assert request.kind == "question + context" and request.context_words == CONTEXT_WORDS
    assert request.windows > 1  # 300 words do not fit one 128-token window
    assert 0 < request.model.p50_ms <= request.e2e.p50_ms
    assert request.overhead_pct >= 0
    assert parse_result(result.to_dict()) == result  # the typed result round-trips, request included


def test_ner_request_and_none_for_other_tasks(tmp_path: Path) -> None:
    bundle = _bundle(_save_tagger("bert", tmp_path / "ner"), tmp_path / "out")
    request = bench(bundle, seq_lengths=(16,), warmup=1, runs=5, roofline=False).task_request
    assert request.kind == "sentence" and request.words > 10
    assert 0 < request.model.p50_ms <= request.e2e.p50_ms
    from conftest import save_tiny_model

    classifier = _bundle(save_tiny_model("bert", tmp_path / "cls"), tmp_path / "out2")
    assert bench(classifier, seq_lengths=(16,), warmup=1, runs=3, roofline=False).task_request is None
