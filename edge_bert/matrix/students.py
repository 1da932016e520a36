"""A matrix's students: each model with ``[models.distill]`` trained by ``edge-bert distill`` before any cell runs.

One student at a time, each in its own process (training uses every core it is given, and a crash or a
refused option ends that student only: its cells are recorded failed with the reason, the rest go on).
A student lives in ``OUT/students/KEY/``; KEY hashes everything the student depends on - the teacher's bytes,
the method, the distill options, the training data (its bytes when it is a file) and the edge-bert, torch and
transformers versions - so a finished student is never trained again. distill itself writes atomically
(``KEY.partial`` renamed when complete) and resumes a killed run from its last checkpoint.
Once trained, the student directory is the model source of its cells: their keys come from its bytes.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge_bert.matrix.spec import EMBEDDED, Cell, MatrixSpec, ModelEntry, _model_hash, _version, cells, resolve
from edge_bert.matrix.steps import Report, Step, run_cli

#: versions a student's weights depend on besides edge-bert's (read from the installed metadata: no torch import)
TRAINING_DISTS = ("edge-bert", "torch", "transformers")
#: distill's flag of each DistillEntry option (teacher is the positional argument)
FLAGS = {
    "layers": "--layers", "hidden_size": "--hidden-size", "epochs": "--epochs", "pred_epochs": "--pred-epochs",
    "embedding_size": "--embedding-size", "bottleneck": "--bottleneck", "lr": "--lr", "temperature": "--temperature",
    "batch_size": "--batch-size", "max_length": "--max-length", "seed": "--seed", "torch_threads": "--torch-threads",
}  # fmt: skip


def train_students(
    spec: MatrixSpec, base: Path, all_cells: list[Cell], out: Path, report: Report
) -> tuple[list[Cell], dict[str, Step]]:
    """Train every student not trained yet (one at a time). Returns the cells again, each trained student's
    from its directory, and the failed students' conversion units -> the failure (their cells fail with it)."""
    students = [m for m in spec.models if m.distill is not None]
    if not students:
        return all_cells, {}
    trained: dict[str, Path] = {}
    failed: dict[str, Step] = {}
    for model in students:
        folder = out / "students" / student_key(spec, base, model)
        first = next(c for c in all_cells if c.model.id == model.id)
        if not _complete(folder):
            report("train", first, None)
            step = _distill(spec, base, model, folder)
            if not step.ok and not (step.exit_class == "gate" and _complete(folder)):  # a gate verdict keeps it
                kind = "crash" if step.exit_class == "gate" else step.exit_class  # exit 1 without a student
                failed[model.id] = Step(False, kind, f"training the student: {step.reason}")
                continue
        trained[model.id] = folder
    fresh = cells(spec, base, trained)
    units = {c.unit: failed[c.model.id] for c in fresh if c.model.id in failed}
    return fresh, units


def student_key(spec: MatrixSpec, base: Path, model: ModelEntry) -> str:
    """What the student's weights depend on, hashed: the teacher's bytes, method, options, data, versions."""
    assert model.distill is not None and spec.train is not None
    teacher = next(m for m in spec.models if m.id == model.distill.teacher)
    assert teacher.source is not None
    data = resolve(spec.train.location, base)
    data_hash = hashlib.sha256(Path(data).read_bytes()).hexdigest() if Path(data).is_file() else f"name:{data}"
    train = {k: v for k, v in asdict(spec.train).items() if k not in ("location", "timeout_s")}
    material = {
        "teacher": _model_hash(resolve(teacher.source, base), None),
        "method": model.method,
        "options": {k: v for k, v in asdict(model.distill).items() if k != "teacher"},
        "data": [data_hash, train],
        "versions": {dist: _version(dist) for dist in TRAINING_DISTS},
    }
    return f"{model.id}-{hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]}"


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def _distill(spec: MatrixSpec, base: Path, model: ModelEntry, folder: Path) -> Step:
    """``edge-bert distill`` in its own process into ``folder`` (written by distill as folder.partial + rename)."""
    assert model.distill is not None and spec.train is not None
    teacher = next(m for m in spec.models if m.id == model.distill.teacher)
    assert teacher.source is not None
    source = resolve(teacher.source, base)
    argv: list[str] = ["distill", *([] if source == EMBEDDED else [source]), "--method", model.method or "auto"]
    argv += ["--data", resolve(spec.train.location, base), "--out", str(folder), "--overwrite"]
    train: dict[str, Any] = {"--split": spec.train.split, "--text-column": spec.train.text_column,
                             "--label-column": spec.train.label_column, "--max-train": spec.train.limit}  # fmt: skip
    options = {flag: getattr(model.distill, name) for name, flag in FLAGS.items()}
    for flag, value in {**train, **options}.items():
        if value is not None:
            argv += [flag, str(value)]
    folder.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    step = run_cli(argv, spec.train.timeout_s)
    if step.ok and not _complete(folder):
        return Step(False, "crash", f"distill exited 0 but wrote no student after {time.time() - started:.0f} s")
    return step


__all__ = ["student_key", "train_students"]
