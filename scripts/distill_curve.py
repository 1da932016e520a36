"""Accuracy as % of the teacher after each finished stage of a distillation run, read from the run's epoch
checkpoints (``OUT.partial/checkpoint/<stage>.pt``) while it trains or after it was stopped: the curve a
method's figures show where it does not reach its goal in the time given.

    python scripts/distill_curve.py models/clinc150-teacher models/clinc150-mobilebert.partial --method mobilebert \\
        --layers 4 --data ../shared/data/clinc150/data_full.json --split test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import transformers

from edge_bert.evaldata import match_labels, read_labelled
from edge_bert.training.data import encode, predict_logits
from edge_bert.training.distill import DistillSettings
from edge_bert.training.methods import METHODS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher", type=Path)
    parser.add_argument("partial", type=Path)
    parser.add_argument("--method", choices=sorted(METHODS), required=True)
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split")
    args = parser.parse_args()
    teacher = transformers.AutoModelForSequenceClassification.from_pretrained(args.teacher).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.teacher)
    data = read_labelled(args.data, split=args.split)
    ids = encode(tokenizer, data, None, 64).ids
    names = [str(teacher.config.id2label[i]) for i in range(teacher.config.num_labels)]
    gold = torch.as_tensor(match_labels(data.labels, names))
    teacher_accuracy = float((predict_logits(teacher, ids).argmax(-1) == gold).float().mean())
    settings = DistillSettings(layers=args.layers, method=args.method)
    student, _ = METHODS[args.method].build(teacher, settings, "AutoModelForSequenceClassification")
    checkpoints = sorted((args.partial / "checkpoint").glob("*.pt"), key=lambda p: p.stat().st_mtime)
    for path in checkpoints:
        state = torch.load(path, weights_only=True)
        student.load_state_dict(state["modules"]["student"])
        student.eval()
        accuracy = float((predict_logits(student, ids).argmax(-1) == gold).float().mean())
        row = {"stage": path.stem, "epochs_done": state["epoch"], "accuracy": round(accuracy, 4)}
        row["pct_of_teacher"] = round(100 * accuracy / teacher_accuracy, 1)
        print(json.dumps({**row, "teacher_accuracy": round(teacher_accuracy, 4)}), flush=True)


if __name__ == "__main__":
    main()
