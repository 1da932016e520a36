"""Labelled evaluation data (real SST-2 and CLINC150 files plus small hand-written ones) and the
accuracy metrics computed from predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from edge_bert.accuracy import classification_metrics, knn_accuracy, macro_f1, neighbours
from edge_bert.errors import InputError
from edge_bert.evaldata import match_labels, read_labelled

SST2_DEV = SHARED_DATA / "sst2" / "dev.tsv"
CLINC = SHARED_DATA / "clinc150" / "data_full.json"


def test_sst2_tsv_header_agnostic(tmp_path: Path) -> None:
    data = read_labelled(SST2_DEV)
    assert len(data) == 872 and data.labels is not None
    assert data.texts[0] == "it 's a charming and often affecting journey ."
    assert data.labels.count("1") == 444 and set(data.labels) == {"0", "1"}
    headless = tmp_path / "headless.tsv"
    headless.write_text("\n".join(SST2_DEV.read_text(encoding="utf-8").splitlines()[1:]) + "\n", encoding="utf-8")
    again = read_labelled(headless)
    assert again.texts == data.texts and again.labels == data.labels
    tabbed = tmp_path / "tabbed.tsv"
    tabbed.write_text("a\ttext with a tab\tpositive\n", encoding="utf-8")
    assert read_labelled(tabbed).texts == ["a\ttext with a tab"]  # split on the last tab


def test_clinc150_json_needs_a_split() -> None:
    data = read_labelled(CLINC, split="test")
    assert len(data) == 4500 and len(set(data.labels or [])) == 150
    assert (data.texts[0], data.labels[0]) == ("how would you say fly in italian", "translate")
    with pytest.raises(InputError, match=r"holds splits .*'test'.*--split"):
        read_labelled(CLINC)
    assert len(read_labelled(CLINC, split="test", limit=10)) == 10


def test_csv_and_jsonl_with_named_columns(tmp_path: Path) -> None:
    csv_file = tmp_path / "d.csv"
    csv_file.write_text('id,utterance,intent\n1,"book a table, for two",restaurant\n2,hi,greeting\n', encoding="utf-8")
    data = read_labelled(csv_file)
    assert data.texts == ["book a table, for two", "hi"] and data.labels == ["restaurant", "greeting"]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps({"body": t, "y": y}) for t, y in [("good", 1), ("bad", 0)]), encoding="utf-8")
    data = read_labelled(jsonl, text_column="body", label_column="y")
    assert data.texts == ["good", "bad"] and data.labels == ["1", "0"]
    with pytest.raises(InputError, match=r"no text column 'sentence'; its columns are \['body', 'y'\]"):
        read_labelled(jsonl, text_column="sentence")
    unlabelled = read_labelled(jsonl, text_column="body")
    assert unlabelled.labels is None  # no label column: parity and retrieval only


def test_bad_locations(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="evaluation data not found"):
        read_labelled(tmp_path / "missing.tsv")
    odd = tmp_path / "data.parquet"
    odd.write_bytes(b"PAR1")
    with pytest.raises(InputError, match=r"unknown data format '\.parquet'"):
        read_labelled(odd)
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="contains no texts"):
        read_labelled(empty)
    # a hub id: this environment has neither `datasets` nor the hub, and says which is missing
    with pytest.raises(InputError, match=r"'glue:sst2' is not a file; .*pip install datasets|cannot load"):
        read_labelled("glue:sst2")


def test_labels_match_by_name_or_index() -> None:
    names = ["negative", "positive"]
    assert match_labels(["positive", "negative"], names).tolist() == [1, 0]
    assert match_labels(["POSITIVE", "Negative"], names).tolist() == [1, 0]
    assert match_labels(["1", "0", "1"], names).tolist() == [1, 0, 1]
    with pytest.raises(InputError, match=r"1 label\(s\) .* 'neutral' \(2 rows\).*'negative', 'positive'"):
        match_labels(["neutral", "positive", "neutral"], names)
    with pytest.raises(InputError, match=r"by index 0\.\.1"):
        match_labels(["2", "0"], names)


def test_metrics_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 0])
    # F1 per class: 0 -> 2*1/(2+1+1) = 0.5, 1 -> 2*2/(4+1+0) = 0.8, 2 -> 0
    assert macro_f1(labels, preds) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    fp32 = np.eye(3)[[0, 0, 1, 1, 2]]  # fp32 is right everywhere
    bundle = np.eye(3)[preds]
    m = classification_metrics(bundle, fp32, labels, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.6) and m["fp32_accuracy"] == 1.0
    assert m["accuracy_pct_of_fp32"] == pytest.approx(60.0) and m["agreement"] == pytest.approx(0.6)
    assert m["broken"] == 2 and m["fixed"] == 0
    assert m["worst_classes"][0] == {"label": "c", "support": 1, "fp32": 1.0, "bundle": 0.0, "drop": 1.0}
    assert {(d["fp32"], d["bundle"]) for d in m["disagreements"]} == {("a", "b"), ("c", "a")}


def test_neighbours_chunked_equal_brute_force() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, 16)).astype(np.float32)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    assert np.array_equal(neighbours(emb, k=5, chunk=64), expected)
    # two tight clusters: leave-one-out k-NN recovers the cluster label
    centres = np.repeat(np.eye(16)[:2] * 10, 50, axis=0)
    labels = np.repeat([0, 1], 50)
    assert knn_accuracy(neighbours(centres + rng.normal(size=centres.shape)), labels) == 1.0
