"""Real fine-tuned classifiers (MiniLM encoder, trained here by `edge-bert finetune --preset`) on real
labelled data: int8 ONNX and LiteRT bundles keep >= 99 % of the fp32 model's accuracy, as measured by
the runner on the device side from the fp32 reference stored at convert time.

SST-2 (a quick 4,000-sentence fine-tune) runs by default; CLINC150 with the full preset
(150 intents, 6 minutes of training) is marked slow.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import SHARED_DATA, requires

from edge_bert.bundle import sha256_file
from edge_bert.convert.pipeline import convert
from edge_bert.evaldata import read_labelled
from edge_bert.training import finetune as ft
from edge_bert.training.setup import Job
from edge_bert.validate import validate

ROOT = Path(__file__).resolve().parent.parent
pytestmark = requires(SHARED_DATA.is_dir(), f"labelled data not found at {SHARED_DATA}")

#: task -> (training overrides, evaluation file, split, training file, split)
SETUPS = {
    "sst2": ({"max_train": 4000}, SHARED_DATA / "sst2" / "dev.tsv", None, SHARED_DATA / "sst2" / "train.tsv", None),
    "clinc150": (
        {},
        SHARED_DATA / "clinc150" / "data_full.json",
        "test",
        SHARED_DATA / "clinc150" / "data_full.json",
        "train",
    ),
}
#: what determines the fine-tuned model besides the data and the settings: the libraries that compute it
LIBRARIES = ("torch", "transformers", "tokenizers", "numpy", "safetensors")


def model_key(task: str, settings: object, data_files: list[Path]) -> str:
    """Everything that determines the trained model: the training code (the whole edge_bert/training package),
    the library versions, the bytes of the data files and the base model (MiniLM), and the settings."""
    import importlib.metadata
    import platform

    from conftest import minilm_dir

    code = sorted(Path(ft.__file__).parent.glob("*.py"))
    base = sorted(p for p in minilm_dir().iterdir() if p.is_file())
    parts = {
        "task": task,
        "settings": repr(settings),
        "python": platform.python_version(),
        "libraries": {name: importlib.metadata.version(name) for name in LIBRARIES},
        "files": {f"{p.parent.name}/{p.name}": sha256_file(p) for p in [*code, *base, *sorted(set(data_files))]},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def trained(request: pytest.FixtureRequest, task: str) -> tuple[Path, dict]:
    """Train once (the task's preset) and keep the result in pytest's cache, keyed by what determines it."""
    overrides, eval_file, eval_split, train_file, train_split = SETUPS[task]
    settings = ft.settings_for(task, **overrides)
    key = model_key(task, settings, [train_file, eval_file])
    out = Path(request.config.cache.mkdir("edge-bert-finetuned")) / f"{task}-{key}"
    summary_file = out / "eval_summary.json"
    if not summary_file.is_file():
        train, evaluation = read_labelled(train_file, split=train_split), read_labelled(eval_file, split=eval_split)
        ft.finetune(Job(None, out, overwrite=True), train, settings, evaluation)
    summary = json.loads(summary_file.read_text())
    return out, {"accuracy": summary["eval"]["accuracy"]}


def android_short(tmp_path: Path, lengths: str) -> Path:
    """The shipped android profile and gates, with fewer static lengths (the texts are short)."""
    profile = tmp_path / "android-short.toml"
    text = (ROOT / "targets" / "android.toml").read_text()
    profile.write_text(text.replace("seq_lengths = [16, 32, 64, 128]", f"seq_lengths = {lengths}"))
    return profile


def check_task(request, tmp_path: Path, task: str, lengths: str, min_fp32: float) -> None:
    model, summary = trained(request, task)
    assert summary["accuracy"] >= min_fp32
    _, data_file, split, _, _ = SETUPS[task]
    data = read_labelled(data_file, split=split)
    outcomes = []
    for target, fmt in (("x86-vnni", "onnx"), (android_short(tmp_path, lengths), "tflite")):
        outcomes += convert(
            str(model), target, tmp_path, formats=[fmt], recipes=["dynamic-int8"], eval_data=data, log=lambda _: None
        )
    for outcome in outcomes:
        assert outcome.passed, outcome.error
        accuracy = outcome.accuracy
        # the stored fp32 reference reproduces the trainer's own evaluation (PyTorch, padded batches)
        assert accuracy["fp32_accuracy"] == pytest.approx(summary["accuracy"], abs=2e-3)
        assert accuracy["accuracy_pct_of_fp32"] >= 99.0, (outcome.format, accuracy)
        assert accuracy["agreement"] >= 0.97
        # the device side (runner, bundle only) agrees with what convert measured
        device = validate(outcome.bundle, data=data)
        assert device["passed"] and device["accuracy"]["metrics"]["accuracy"] == accuracy["accuracy"]


def test_sst2_int8_keeps_99_percent(request, tmp_path: Path) -> None:
    check_task(request, tmp_path, "sst2", "[64]", min_fp32=0.8)


@pytest.mark.slow
def test_clinc150_int8_keeps_99_percent(request, tmp_path: Path) -> None:
    check_task(request, tmp_path, "clinc150", "[16, 32]", min_fp32=0.94)
