"""``convert --recipe auto --device D``: the device picks the recipe (and the thread count).

Which recipe wins depends on the device's ISA more than on the model (int8 is 2-4x faster with VNNI or
sdot/udot and can be slower than fp32 without them), so every candidate recipe of the profile is
converted, validated on the device under its gates and benched there at 1 thread and the profile's
thread count, each in a fresh runner process. The fastest that passes wins, but never one that is not
faster than fp32 on that device. The manifest of the chosen bundle records every candidate's figures
and why the others lost; the others are not written (``--keep-candidates`` keeps them aside).
An emulated device can check gates but its timings are qemu's, so it never decides on speed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_bert.bundle import open_bundle, with_manifest
from edge_bert.devices import DeviceError
from edge_bert.devices.base import Transport
from edge_bert.devices.dispatch import bench_on, validate_on
from edge_bert.errors import InputError
from edge_bert.results.validate import GateVerdict

RULE = (
    "fastest candidate that passes its gates on the device (p50 at the longest bench length); "
    "never one not faster than fp32"
)


@dataclass
class Candidate:
    """One recipe's figures on the device; ``p50_ms`` is by thread count, then sequence length."""

    format: str
    recipe: str
    bundle: Path | None
    convert_error: str | None = None
    device_gates: dict[str, GateVerdict] | None = None
    passed: bool = False
    p50_ms: dict[int, dict[int, float]] = field(default_factory=dict)
    reason: str = ""
    chosen: bool = False

    @property
    def label(self) -> str:
        return f"{self.format} {self.recipe}"

    def best(self, length: int) -> tuple[int, float] | None:
        """(threads, p50 ms) of the fastest thread count at ``length``."""
        timed = [(t, rows[length]) for t, rows in self.p50_ms.items() if length in rows]
        return min(timed, key=lambda pair: (pair[1], pair[0])) if timed else None  # a tie goes to fewer threads


def choose(candidates: list[Candidate], length: int) -> Candidate | None:
    """Pick the winner and give every other candidate its reason; the rule is RULE."""
    fp32 = {c.format: c for c in candidates if c.recipe == "fp32" and c.passed and c.best(length)}
    timed = [c for c in candidates if c.passed and c.best(length)]
    for c in candidates:
        if c.convert_error:
            c.reason = f"refused at convert: {c.convert_error}"
        elif not c.passed:
            failed = [k for k, v in (c.device_gates or {}).items() if not v.passed]
            c.reason = f"failed its gates on the device ({', '.join(failed) or 'checks'})"
    if not timed:
        return None
    winner = min(timed, key=lambda c: c.best(length)[1])
    reference = fp32.get(winner.format) or (min(fp32.values(), key=lambda c: c.best(length)[1]) if fp32 else None)
    if reference is not None and winner is not reference and winner.best(length)[1] >= reference.best(length)[1]:
        winner = reference
    winner.chosen = True
    threads, ms = winner.best(length)
    winner.reason = f"chosen: {ms:.2f} ms at {length} tokens with {threads} thread(s)"
    for c in timed:
        if c is winner:
            continue
        ms_c = c.best(length)[1]
        own = fp32.get(c.format)  # an int8 is judged against the fp32 of its own format
        if own is not None and c is not own and ms_c >= own.best(length)[1]:
            c.reason = f"not faster than fp32 on the device ({ms_c:.2f} vs {own.best(length)[1]:.2f} ms)"
        else:
            c.reason = f"slower on the device: {ms_c:.2f} ms vs {ms:.2f} ms at {length} tokens"
    return winner


def measure(transport: Transport, candidate: Candidate, threads: list[int], log: Callable) -> None:
    """Validate on the device; if it passes, bench it once per thread count (each a fresh runner process)."""
    assert candidate.bundle is not None
    check = validate_on(transport, candidate.bundle)
    candidate.device_gates, candidate.passed = check.gates, check.passed
    if not candidate.passed:
        return
    for count in threads:
        log(f"bench {candidate.label} on {transport.id}, {count} thread(s)")
        result = bench_on(transport, candidate.bundle, threads=count)
        candidate.p50_ms[count] = result.p50_ms()


def selection_record(
    transport: Transport, candidates: list[Candidate], length: int, threads: list[int]
) -> dict[str, Any]:
    return {
        "device": transport.describe(),
        "rule": RULE,
        "seq_length": length,
        "threads_tried": threads,
        "candidates": [
            {
                "format": c.format,
                "recipe": c.recipe,
                "passed": c.passed,
                "failed_gates": sorted(k for k, v in (c.device_gates or {}).items() if not v.passed),
                "p50_ms": {str(t): {str(n): ms for n, ms in rows.items()} for t, rows in c.p50_ms.items()},
                "best_threads": (c.best(length) or (None, None))[0],
                "chosen": c.chosen,
                "reason": c.reason,
            }
            for c in candidates
        ],
    }


def install(winner: Path, out: Path, selection: dict[str, Any], overwrite: bool) -> Path:
    """Copy the chosen bundle to OUT atomically and record the selection in its typed manifest (not checksummed);
    the thread count chosen with the recipe becomes the bundle's default for bench and the runner."""
    bundle = open_bundle(winner)
    manifest = bundle.manifest
    chosen = next(c for c in selection["candidates"] if c["chosen"])
    target = manifest.target
    if chosen["best_threads"]:
        target = {**target, "bench": {**target.get("bench", {}), "threads": chosen["best_threads"]}}
    try:
        edited = replace(manifest, selection=selection, target=target)
        return with_manifest(bundle, out / winner.name, edited, overwrite)
    except InputError as exc:
        raise DeviceError(str(exc)) from exc


def candidates_from(outcomes: list) -> list[Candidate]:
    return [
        Candidate(o.format, o.recipe, o.bundle if o.passed else None, None if o.passed else o.error) for o in outcomes
    ]


def profile_bench(target: str) -> tuple[int, list[int]]:
    """(longest bench length, thread counts to try) from the target profile."""
    from edge_bert.profiles import load_profile

    bench = load_profile(target).bench
    return max(bench.seq_lengths), sorted({1, int(bench.threads)})


def refuse_emulated(transport: Transport) -> None:
    if transport.emulated:
        device = transport.id
        raise DeviceError(
            f"{device}: an emulated board's timings are qemu's, not the device's, so it cannot decide on speed. "
            f"Run --recipe auto with --device local or ssh://user@host, then check the chosen bundle with "
            f"`edge-bert validate BUNDLE --device {device}`"
        )
