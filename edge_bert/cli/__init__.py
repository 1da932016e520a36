"""The ``edge-bert`` command line: one module per verb group (main, run, device, train) and ``common``."""

from edge_bert.cli.main import app, main

__all__ = ["app", "main"]
