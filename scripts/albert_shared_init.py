"""Which teacher weights should ALBERT's one shared layer start from: the average of the teacher's layers, or
one of them? Measured before any training, on a fine-tuned teacher and its data: the layer-wise loss the
ALBERT method's first stage starts from (hidden-state MSE through the layer map) and the untrained student's
accuracy and agreement with the teacher.

    python scripts/albert_shared_init.py models/clinc150-teacher --data ../shared/data/clinc150/data_full.json \\
        --split train --eval-split test --layers 3
"""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import torch
import transformers

from edge_bert.evaldata import read_labelled
from edge_bert.training.data import encode, pad, predict_logits, subsample
from edge_bert.training.losses import masked_mse
from edge_bert.training.methods import albert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split")
    parser.add_argument("--eval-split")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--rows", type=int, default=512)
    args = parser.parse_args()
    torch.manual_seed(0)
    teacher = transformers.AutoModelForSequenceClassification.from_pretrained(args.teacher).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.teacher)
    train = subsample(read_labelled(args.data, split=args.split), args.rows, 0)
    test = subsample(read_labelled(args.data, split=args.eval_split), args.rows * 2, 0)
    ids = encode(tokenizer, train, None, 64).ids
    test_ids = encode(tokenizer, test, None, 64).ids
    teacher_pred = predict_logits(teacher, test_ids).argmax(-1)
    names = [str(teacher.config.id2label[i]) for i in range(teacher.config.num_labels)]
    gold = torch.tensor([names.index(label) for label in test.labels])
    settings = SimpleNamespace(layers=args.layers, embedding_size=128)
    rows = []
    layers = albert.TeacherFacts.of(teacher.config).layers
    for how in ["average", *range(layers)]:
        albert.SHARED_INIT = how
        student, mapping = albert.build(teacher, settings, "AutoModelForSequenceClassification")
        student.eval()
        hid = 0.0
        with torch.no_grad():
            for start in range(0, len(ids), 64):
                tokens, mask = pad(ids[start : start + 64])
                t = teacher(input_ids=tokens, attention_mask=mask, output_hidden_states=True).hidden_states
                s = student(input_ids=tokens, attention_mask=mask, output_hidden_states=True).hidden_states
                hid += float(sum(masked_mse(s[m], t[g], mask) for m, g in enumerate(mapping, 1)))
        pred = predict_logits(student, test_ids).argmax(-1)
        rows.append(
            {
                "shared_init": how,
                "hidden_mse_at_init": round(hid / -(-len(ids) // 64), 4),
                "accuracy_untrained": round(float((pred == gold).float().mean()), 4),
                "agreement_with_teacher": round(float((pred == teacher_pred).float().mean()), 4),
            }
        )
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
