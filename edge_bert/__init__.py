"""edge-bert: compact BERT-family models from a Hugging Face checkpoint to a verified edge bundle.

The package is two sides with the bundle as the one contract between them:
- the runner (device side; numpy, tokenizers and one runtime): the modules at this level, ``backends/``
  (one per runtime), ``bench/``, ``devices/`` (transports), ``render/`` and ``cli/``;
- the host side (the ``convert`` extra; torch): ``convert/`` (the conversion pipeline), ``formats/`` (one
  folder per model format) and ``training/`` (finetune, distill), imported only inside the verbs that
  need them. ``tests/test_boundary.py`` enforces that nothing on the runner side imports torch.
"""

__version__ = "0.1.0"
