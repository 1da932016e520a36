"""Make a BERT model that int8 breaks while its fp32 function stays the same (to show accuracy rescue).

softmax(QK^T) mixes the value vectors linearly per feature, so scaling V's output ``channel`` by
``scale`` scales that channel of the attention context exactly, and dividing the matching input
column of the attention output projection by ``scale`` cancels it. The projection's input then has
one channel ``scale`` times larger than the rest: per-tensor (dynamic) activation quantization
spends its whole int8 range on it and crushes the others. LLM.int8 describes such outlier features in
real transformers; here one is made on purpose, in one layer, so the culprit is known.
Run: python scripts/inject_outlier.py MODEL_DIR OUT_DIR --layer 3 --channel 100 --scale 1000
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from torch import nn


def inject_outlier(model: nn.Module, layer: int, channel: int, scale: float) -> None:
    """In place, on any BERT-style model (``base_model.encoder.layer[i].attention``)."""
    attention = model.base_model.encoder.layer[layer].attention
    with torch.no_grad():
        attention.self.value.weight[channel, :] *= scale  # Linear weight is [out, in]
        attention.self.value.bias[channel] *= scale
        attention.output.dense.weight[:, channel] /= scale


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="save_pretrained directory (safetensors)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--layer", type=int, default=3)
    parser.add_argument("--channel", type=int, default=100)
    parser.add_argument("--scale", type=float, default=1000.0)
    args = parser.parse_args(argv)
    import transformers

    config = transformers.AutoConfig.from_pretrained(args.model)
    is_classifier = any(a.endswith("ForSequenceClassification") for a in config.architectures or [])
    auto = transformers.AutoModelForSequenceClassification if is_classifier else transformers.AutoModel
    model = auto.from_pretrained(args.model).eval()
    inject_outlier(model, args.layer, args.channel, args.scale)
    model.save_pretrained(args.out, safe_serialization=True)
    transformers.AutoTokenizer.from_pretrained(args.model).save_pretrained(args.out)
    if (args.model / "vocab.txt").is_file():
        shutil.copyfile(args.model / "vocab.txt", args.out / "vocab.txt")
    print(f"wrote {args.out}: layer {args.layer} channel {args.channel} x{args.scale:g} in V, /{args.scale:g} after")


if __name__ == "__main__":
    main()
