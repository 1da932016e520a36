"""Fine-tune all-MiniLM-L6-v2 on CLINC150 or SST-2 from ../shared/data: a thin wrapper over
`edge-bert finetune --preset TASK` (edge_bert/training/finetune.py holds the code and the settings).

Run: python scripts/finetune_classifier.py --task clinc150 --out models/clinc150
 ==  edge-bert finetune --preset clinc150 --data ../shared/data/clinc150/data_full.json --split train \
         --eval-data ../shared/data/clinc150/data_full.json --eval-split test --out models/clinc150
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_bert.evaldata import read_labelled
from edge_bert.training.finetune import PRESETS, finetune, settings_for
from edge_bert.training.setup import Job

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
#: task -> (training file, its split, evaluation file, its split)
FILES = {
    "clinc150": ("clinc150/data_full.json", "train", "clinc150/data_full.json", "test"),
    "sst2": ("sst2/train.tsv", None, "sst2/dev.tsv", None),
}


def train(task: str, out: Path, data_dir: Path = DEFAULT_DATA_DIR, overwrite: bool = False, **overrides) -> dict:
    """Fine-tune with the task's preset (``overrides``: FinetuneSettings fields, None = preset's)."""
    train_file, train_split, eval_file, eval_split = FILES[task]
    return finetune(
        Job(None, Path(out), overwrite),
        read_labelled(data_dir / train_file, split=train_split),
        settings_for(task, **overrides),
        read_labelled(data_dir / eval_file, split=eval_split),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(PRESETS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--overwrite", action="store_true")
    for name, kind in (
        ("seed", int),
        ("epochs", int),
        ("max-train", int),
        ("frozen-layers", int),
        ("lr", float),
        ("head-lr", float),
        ("batch-size", int),
        ("max-length", int),
        ("threads", int),
    ):
        parser.add_argument(f"--{name}", type=kind)
    args = vars(parser.parse_args(argv))
    print(json.dumps(train(args.pop("task"), args.pop("out"), args.pop("data_dir"), args.pop("overwrite"), **args)))


if __name__ == "__main__":
    main()
