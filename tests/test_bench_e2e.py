"""End-to-end latency and the roofline: the WordPiece fast path against tokenizers on real text, the answer
post-processing, FLOPs counted from the graph against an independent count, manifests with and without
FLOPs, and bench's e2e/overhead/roofline fields on tiny random bundles (MiniLM: test_minilm.py, test_tflite.py)."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import numpy as np
import pytest
from conftest import LABELS, SHARED_DATA, minilm_dir, sst2_dev, tiny_config
from tokenizers import Tokenizer

from edge_bert.bench.protocol import bench, text_of_exact_length
from edge_bert.bundle import open_bundle
from edge_bert.convert.pipeline import convert
from edge_bert.manifest import MANIFEST, parse_manifest
from edge_bert.render.terminal import bench_table, console, roofline_line
from edge_bert.results.io import parse_result
from edge_bert.schema import SchemaError
from edge_bert.session import BundleSession
from edge_bert.textdata import builtin_texts
from edge_bert.wordpiece import FastWordPiece

TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"


def minilm_tokenizer() -> tuple[Tokenizer, dict]:
    source = (minilm_dir() / "tokenizer.json").read_text(encoding="utf-8")
    tokenizer = Tokenizer.from_str(source)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer, json.loads(source)


def bert_flops(length: int, layers: int, hidden: int, intermediate: int) -> int:
    """Independent count for a BERT encoder: Q, K, V, output and the two FFN matrices, plus QK^T and AV."""
    return layers * (2 * length * (4 * hidden**2 + 2 * hidden * intermediate) + 4 * length**2 * hidden)


def test_fast_wordpiece_gives_the_ids_tokenizers_gives():
    tokenizer, config = minilm_tokenizer()
    fast = FastWordPiece.build(tokenizer, config)
    assert fast is not None
    clinc = json.loads((SHARED_DATA / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    texts = [t for t, _ in sst2_dev()] + [row[0] for rows in clinc.values() if isinstance(rows, list) for row in rows]
    rng = random.Random(0)
    vocab = list(config["model"]["vocab"])
    texts += ["".join(rng.choice(string.printable) for _ in range(rng.randint(0, 120))) for _ in range(3000)]
    texts += [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 30))) for _ in range(3000)]
    fast_ones = 0
    for text in texts:
        ids = fast.ids(text)
        if ids is not None:
            fast_ones += 1
            assert ids == tokenizer.encode(text).ids, text
    assert fast_ones > 0.8 * len(texts)
    # what the fast path must leave to tokenizers: special-token strings, non-ASCII, control characters
    for text in ("a [MASK] b", "a [mask] b", "café", "naïve 🚀", "a\x0bb", "a\x00b", "x\x7fy"):
        assert fast.ids(text) is None, text
    assert fast.ids("a" * 101) == tokenizer.encode("a" * 101).ids == [101, 100, 102]  # too long a word: [UNK]


def test_fast_path_only_for_plain_wordpiece():
    tokenizer, config = minilm_tokenizer()
    for key, value in (("normalizer", {"type": "NFKC"}), ("pre_tokenizer", {"type": "Whitespace"})):
        assert FastWordPiece.build(tokenizer, {**config, key: value}) is None


def test_flops_counted_from_the_graph_match_the_analytic_count():
    """MiniLM's embedding graph: BERT's pooler is dead (not exported) and must not be counted; a classifier's
    pooler and head are live and must be."""
    import transformers

    from edge_bert.convert.architectures import architecture
    from edge_bert.convert.flops import count_flops
    from edge_bert.convert.tasks import build_graph

    inputs = architecture("bert")  # input_ids, attention_mask, token_type_ids
    for attention in ("eager", "sdpa"):  # matmuls, or PyTorch's fused CPU attention kernel
        model = transformers.AutoModel.from_pretrained(minilm_dir(), attn_implementation=attention)
        graph = build_graph("feature-extraction", model, "mean", True)
        for length in (16, 128):
            expected = bert_flops(length, layers=6, hidden=384, intermediate=1536)
            assert count_flops(graph, inputs, length) == pytest.approx(expected, rel=0.01), (attention, length)
    config = tiny_config("bert")
    classifier = build_graph("text-classification", transformers.AutoModelForSequenceClassification.from_config(config))
    head = 2 * config.hidden_size**2 + 2 * config.hidden_size * len(LABELS)  # pooler + classifier, on [CLS]
    expected = bert_flops(64, 2, config.hidden_size, config.intermediate_size) + head
    assert count_flops(classifier, inputs, 64) == pytest.approx(expected, rel=0.01)


@pytest.fixture(scope="module")
def tiny_bundles(tiny_models, sst2_texts, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("e2e")
    outcomes = convert(
        str(tiny_models["bert"]), TINY_PROFILE, out, texts=sst2_texts, recipes=["dynamic-int8", "fp32"], log=print
    )
    assert all(o.passed for o in outcomes), [o.error for o in outcomes]
    return {o.recipe: o.bundle for o in outcomes}


def test_manifest_flops_optional_and_strict(tiny_bundles):
    data = json.loads((tiny_bundles["fp32"] / MANIFEST).read_text())
    assert set(data["flops"]["per_seq_length"]) >= {"16", "64", "128"}  # the profile's bench lengths
    config = tiny_config("bert")
    assert data["flops"]["per_seq_length"]["16"] == pytest.approx(
        bert_flops(16, 2, config.hidden_size, config.intermediate_size), rel=0.02
    )
    without = {k: v for k, v in data.items() if k != "flops"}
    assert parse_manifest(without).flops is None  # bundles made before FLOPs were counted still load
    with pytest.raises(SchemaError, match=r"flops\.per_seq_lenght"):
        parse_manifest({**data, "flops": {**data["flops"], "per_seq_lenght": {}}})
    with pytest.raises(SchemaError, match="sequence lengths"):
        parse_manifest({**data, "flops": {"method": "x", "per_seq_length": {"long": 5}}})


def test_answer_is_the_task_post_processing(tiny_bundles):
    session = BundleSession(open_bundle(tiny_bundles["fp32"]))
    text = "a gripping, funny and humane film"
    answer = session.answer(text)
    logits = session.run_text(text)[0]["logits"][0]
    assert answer.vector.sum() == pytest.approx(1.0)
    assert answer.index == int(np.argmax(logits)) and answer.label == LABELS[answer.index]
    np.testing.assert_allclose(answer.vector, np.exp(logits) / np.exp(logits).sum(), rtol=1e-5)


def test_bench_texts_tokenize_to_exactly_each_length(tiny_bundles):
    session = BundleSession(open_bundle(tiny_bundles["fp32"]))
    for length in (2, 3, 16, 64, 128):
        text = text_of_exact_length(session.encoder, builtin_texts("paragraphs"), length)
        assert session.prepare(text)["input_ids"].shape == (1, length)
        assert session.encoder.encode(text).original_length == length


def test_bench_reports_e2e_overhead_and_roofline(tiny_bundles, capsys):
    for recipe, peak in (("dynamic-int8", "int8"), ("fp32", "fp32")):
        result = bench(tiny_bundles[recipe], threads=1, seq_lengths=(16, 64), warmup=1, runs=5)
        assert result["schema"] == "edge-bert/bench/v2"
        roofline = result["roofline"]
        assert roofline["compared_with"] == peak and roofline["flops_method"]
        assert roofline["peak"]["fp32"]["gflops_per_s"] > 0 and roofline["peak"]["int8"]["gflops_per_s"] > 0
        for precision in ("fp32", "int8"):  # the probe: 2 x 128 x 384 x 1536 = 150,994,944 FLOPs (worked by hand)
            probe = roofline["peak"][precision]
            assert probe["gflops_per_s"] * probe["p50_ms"] == pytest.approx(150.994944)  # GFLOP/s x ms = MFLOP
        config = tiny_config("bert")
        for row in result["latency"]:
            assert "tokenize_ms" not in row and row["tokenizer"] == "wordpiece-fast-path"  # ASCII bench text
            # per run e2e >= model, so every order statistic is too
            assert row["e2e"]["p50_ms"] >= row["p50_ms"] and row["e2e"]["min_ms"] >= row["min_ms"]
            added_ms = row["e2e"]["p50_ms"] - row["p50_ms"]
            assert row["overhead_pct"] == pytest.approx(added_ms / row["p50_ms"] * 100)
            # FLOPs from the independent analytic count (+ pooler and head on [CLS]), not from the manifest
            head = 2 * config.hidden_size**2 + 2 * config.hidden_size * len(LABELS)
            analytic = bert_flops(row["seq_length"], 2, config.hidden_size, config.intermediate_size) + head
            assert row["flops"] == pytest.approx(analytic, rel=0.02)
            manifest_flops = open_bundle(tiny_bundles[recipe]).manifest.flops.per_seq_length
            assert row["flops"] == manifest_flops[str(row["seq_length"])]
            seconds = row["p50_ms"] / 1000
            assert row["gflops_per_s"] == pytest.approx(row["flops"] / 1e9 / seconds)
            peak_flops_per_ms = roofline["peak"][peak]["gflops_per_s"] * 1e6
            assert row["pct_of_peak"] == pytest.approx(row["flops"] / row["p50_ms"] / peak_flops_per_ms * 100)
    console.print(bench_table(parse_result(result)), roofline_line(parse_result(result)))
    printed = capsys.readouterr().out
    assert "e2e p50" in printed and "overhead" in printed and "% fp32 peak" in printed and "GFLOP/s fp32" in printed


def test_roofline_columns_on_hand_worked_figures():
    """3 MFLOP in 1.5 ms is 2 GFLOP/s, half of a 4 GFLOP/s peak; no FLOPs or no time: no columns."""
    from edge_bert.bench.roofline import achieved

    assert achieved(3_000_000, 1.5, 4.0) == {"flops": 3_000_000, "gflops_per_s": 2.0, "pct_of_peak": 50.0}
    assert achieved(3_000_000, 1.5, None) == {"flops": 3_000_000, "gflops_per_s": 2.0, "pct_of_peak": None}
    assert achieved(None, 1.5, 4.0)["gflops_per_s"] is None and achieved(10, 0.0, 4.0)["pct_of_peak"] is None


def test_bundle_without_flops_prints_dashes(tiny_bundles, capsys):
    result = bench(tiny_bundles["fp32"], threads=1, seq_lengths=(16,), warmup=0, runs=2, roofline=False)
    result["latency"] = [{**row, "flops": None, "gflops_per_s": None, "pct_of_peak": None} for row in result["latency"]]
    console.print(bench_table(parse_result(result)))
    assert "—" in capsys.readouterr().out
    assert roofline_line(parse_result(result)) is None


def test_bench_says_which_tokenizer_ran(tiny_bundles):
    """Non-ASCII text takes tokenizers' path; bench still cuts it to the exact length and says so."""
    texts = ["Un café crème, s'il vous plaît: déjà vu à Zürich, naïve résumé. " * 4]
    result = bench(tiny_bundles["fp32"], threads=1, seq_lengths=(16,), warmup=0, runs=2, texts=texts, roofline=False)
    (row,) = result["latency"]
    assert row["tokenizer"] == "tokenizers" and row["padded_to"] == 16 and result["roofline"]["peak"] is None
