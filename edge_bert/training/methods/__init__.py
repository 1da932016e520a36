"""Distillation methods that build a student of another family than the teacher's, by name (``--method``).

The teacher's own-family recipes (DistilBERT, TinyBERT, embedding) live in ``distill.py``; each method here
is a module with a ``METHOD`` (how to build its student from the teacher, how to train it, its defaults)."""

from __future__ import annotations

from edge_bert.training.methods import albert, mobilebert
from edge_bert.training.methods.base import Method, MethodRun

METHODS: dict[str, Method] = {method.name: method for method in (albert.METHOD, mobilebert.METHOD)}

__all__ = ["METHODS", "Method", "MethodRun"]
