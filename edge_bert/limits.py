"""Size limits for untrusted bundles: what a file may claim before a byte of it is read or allocated.

A bundle is untrusted input. Its manifest says how large each file is; a file larger than its limit is
refused from that claim alone, before it is read, and reading stops at the claimed size. Limits are per
kind of file, because a model may be gigabytes while a tokenizer of a BERT-family model is under 1 MB
(the largest multilingual ones are ~30 MB): a 71 MB tokenizer.json with millions of junk entries cost
1.45 GiB and 10 s to load before these limits.

Every limit can be raised for a legitimately larger model with an environment variable (MiB):
``EDGE_BERT_MAX_MODEL_MB``, ``EDGE_BERT_MAX_ARRAYS_MB``, ``EDGE_BERT_MAX_TEXT_MB``, ``EDGE_BERT_MAX_BUNDLE_MB``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from edge_bert.errors import InputError

#: model files (the runtime maps them whole): .onnx, .ort, .tflite and future formats' weights
MODEL_SUFFIXES = (".onnx", ".ort", ".tflite", ".bin", ".xml")
ARRAY_SUFFIXES = (".npz",)
MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Bytes a bundle's files may hold, by kind, and in all."""

    model: int = 2048 * MIB
    #: golden.npz and the eval reference; also the bound on what they unpack to
    arrays: int = 512 * MIB
    #: tokenizer.json, config.json, labels, vocab and every other file
    text: int = 32 * MIB
    total: int = 4096 * MIB

    @classmethod
    def from_env(cls) -> Limits:
        values = {}
        for field_name, variable in ENV.items():
            raw = os.environ.get(variable)
            if raw is None:
                continue
            if not raw.isdigit() or not 1 <= int(raw) <= 1 << 20:
                raise InputError(f"{variable}={raw[:40]!r}: expected a whole number of MiB between 1 and {1 << 20}")
            values[field_name] = int(raw) * MIB
        return cls(**values)

    def for_file(self, name: str) -> tuple[int, str]:
        """The limit for a file of the bundle, and the variable that raises it."""
        kind = "model" if name.endswith(MODEL_SUFFIXES) else "arrays" if name.endswith(ARRAY_SUFFIXES) else "text"
        return getattr(self, kind), ENV[kind]


#: the environment variable (MiB) that sets each limit
ENV = {
    "model": "EDGE_BERT_MAX_MODEL_MB",
    "arrays": "EDGE_BERT_MAX_ARRAYS_MB",
    "text": "EDGE_BERT_MAX_TEXT_MB",
    "total": "EDGE_BERT_MAX_BUNDLE_MB",
}


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), as the runtimes count them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: one rule per numeric option name, in every verb and on every device: (lowest, highest, what it is).
#: The upper bounds stop a typo from hanging or exhausting the machine (``--runs 1000000000000000`` tried to
#: allocate its timing buffer; ``--threads 10000`` started 10,000 threads on 2 cores, load average 551).
OPTION_BOUNDS: dict[str, tuple[float, float, str]] = {
    "--threads": (1, 0, "runtime threads"),  # 0: at most 4 x this machine's CPUs, worked out when checked
    "--runs": (1, 1_000_000, "timed runs per length"),
    "--warmup": (0, 100_000, "untimed runs per length"),
    "--sustained": (0, 86_400, "seconds of sustained running"),
    "--seq-lengths": (2, 8192, "tokens"),
    "--limit": (1, 100_000_000, "rows to use"),
}


def check_option(name: str, value: float | None) -> None:
    """Refuse a numeric option outside its rule in OPTION_BOUNDS (one line naming the option and the range)."""
    if value is None:
        return
    low, high, what = OPTION_BOUNDS[name]
    high = high or 4 * usable_cpus()
    if not low <= value <= high:
        raise InputError(f"{name} must be between {_number(low)} and {_number(high)} ({what}), got {_number(value)}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e18 else f"{value:g}"
