"""MediaPipe Tasks against edge-bert's runner on real dev texts, for the docs' agreement table.

Converts the embedded MiniLM and a fine-tuned classifier for the android profile (dynamic-int8 and fp32),
then runs each bundle's model.mediapipe.tflite with MediaPipe's Python TextEmbedder/TextClassifier (the
C++ graph Android runs) and the bundle's model.tflite with edge-bert's runner on SST-2 dev and CLINC150
test texts. Writes docs/results/mediapipe-agreement.json; scripts/render_docs.py renders the table.

Usage: python scripts/mediapipe_agreement.py --classifier DIR [--texts 300] [--out FILE]
(DIR: e.g. `edge-bert finetune --preset sst2 --data .../sst2/train.tsv --max-train 4000 --out DIR`)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_bert.bundle import open_bundle
from edge_bert.convert.pipeline import convert
from edge_bert.evaldata import read_labelled
from edge_bert.formats.tflite.mediapipe import MEDIAPIPE_FILE, accented, mediapipe_outputs, strip_accents
from edge_bert.session import BundleSession

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
#: fp32 top-1 probability lead below which a text is a near-tie (metrics.TOP1_MARGIN)
MARGIN = 0.05


def dev_texts(count: int) -> dict[str, list[str]]:
    """``count`` texts of each dev set, evenly spread, and every accented SST-2 dev text."""
    sets = {
        "SST-2 dev": read_labelled(DATA / "sst2" / "dev.tsv").texts,
        "CLINC150 test": read_labelled(DATA / "clinc150" / "data_full.json", split="test").texts,
    }
    spread = {name: texts[:: max(1, len(texts) // count)][:count] for name, texts in sets.items()}
    return spread | {"SST-2 dev, every accented text": [t for t in sets["SST-2 dev"] if accented(t)]}


def compare(bundle: Path, texts: list[str], fp32: np.ndarray | None) -> tuple[dict[str, Any], np.ndarray]:
    """MediaPipe's answers against the runner's on ``texts`` (and the runner's answers); a classifier is
    judged on the texts whose ``fp32`` answer (the fp32 bundle's; None: this one's) has a clear top-1."""
    session = BundleSession(open_bundle(bundle))
    ours = np.stack([session.answer(text).vector for text in texts])
    task, model = session.bundle.manifest.model.task, bundle / MEDIAPIPE_FILE
    # as the app does (docs/android.md): accents stripped as the model's tokenizer strips them
    theirs = mediapipe_outputs(model, [strip_accents(t) for t in texts], task)
    marked = np.array([accented(t) for t in texts])
    raw = mediapipe_outputs(model, [t for t in texts if accented(t)], task) if marked.any() else None
    row: dict[str, Any] = {"texts": len(texts), "accented": int(marked.sum())}
    if task == "text-classification":
        top2 = np.sort(ours if fp32 is None else fp32, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) >= MARGIN
        same = theirs.argmax(axis=1) == ours.argmax(axis=1)
        row |= {"clear": int(clear.sum()), "top1_clear": float(same[clear].mean()), "top1_all": float(same.mean())}
        row["max_prob_diff"] = float(np.abs(theirs - ours).max())
        kept = None if raw is None else float(np.mean(raw.argmax(axis=1) == ours[marked].argmax(axis=1)))
        row["top1_accents_kept"] = kept  # the accented texts sent as they are
    else:
        cosine = _cosine(ours, theirs)
        row |= {"mean_cosine": float(cosine.mean()), "worst_cosine": float(cosine.min())}
        row["worst_cosine_accents_kept"] = None if raw is None else float(_cosine(ours[marked], raw).min())
    return row, ours


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def measure(source: str | None, label: str, work: Path, texts: dict[str, list[str]]) -> list[dict]:
    outcomes = convert(source, "android", work, formats=["tflite"], recipes=["fp32", "dynamic-int8"], log=print)
    rows, fp32 = [], {}
    for outcome in outcomes:
        if not outcome.passed:
            raise SystemExit(f"{label} {outcome.recipe}: {outcome.error}")
        record = json.loads((outcome.bundle / "manifest.json").read_text())["conversion_check"]["mediapipe"]
        for name, batch in texts.items():
            row, ours = compare(outcome.bundle, batch, fp32.get(name))
            fp32.setdefault(name, ours)  # fp32 is converted first
            rows.append({"model": label, "recipe": outcome.recipe, "task": record["task"], "data": name, **row})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", required=True, help="a fine-tuned classifier directory")
    parser.add_argument("--classifier-label", default="MiniLM, edge-bert finetune --preset sst2", help="its name")
    parser.add_argument("--texts", type=int, default=300, help="texts per dev set")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "mediapipe-agreement.json")
    args = parser.parse_args(argv)
    texts = dev_texts(args.texts)
    with tempfile.TemporaryDirectory() as work:
        rows = measure(None, "all-MiniLM-L6-v2 (embedded)", Path(work) / "minilm", texts)
        rows += measure(args.classifier, args.classifier_label, Path(work) / "cls", texts)
    versions = {name: importlib.metadata.version(name) for name in ("mediapipe", "ai-edge-litert")}
    command = "python scripts/mediapipe_agreement.py --classifier DIR --texts " + str(args.texts)
    args.out.write_text(json.dumps({"command": command, "versions": versions, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
