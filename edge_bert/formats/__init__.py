"""Host side, one sub-package per model format (export, quantize, sensitivity for rescue, extras).

``base.py`` holds the interface every format implements; the format and recipe descriptors the runner
also reads live in :mod:`edge_bert.recipes`. A new format is one folder here plus one runtime backend.
"""
