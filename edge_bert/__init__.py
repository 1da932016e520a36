"""edge-bert: compact BERT-family models from a Hugging Face checkpoint to a verified edge bundle.

This package is the device side (bundle reading, runtime backends, validate, bench) plus the CLI.
The host-side converter lives in :mod:`edge_bert.converters` and is only imported by ``convert``;
nothing else here may import torch or transformers.
"""

__version__ = "0.1.0"
