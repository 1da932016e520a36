"""Quiet by default: what third-party libraries print while a verb runs goes to a log file, not the terminal.

torch, torchao, transformers, absl/TensorFlow, LiteRT and ONNX Runtime print warnings, load reports and
progress bars, from Python (warnings, logging, tqdm, print to ``sys.stderr``) and from C/C++ (straight
to file descriptors 1 and 2). Only redirecting the descriptors catches both, so while a heavy verb runs,
fds 1 and 2 point at a log file; edge-bert's own output (the rich consoles, ``--json -``) is written to
copies of the original descriptors made before the switch. With ``-v`` the same lines go to stderr
instead: stdout stays edge-bert's (pure JSON with ``--json -``) at every verbosity.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import inspect
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from edge_bert.render.terminal import err_console

_state = {"verbose": False, "active": False}
F = TypeVar("F", bound=Callable[..., Any])


def set_verbose(verbose: bool) -> None:
    """``edge-bert -v``: show third-party output on stderr instead of writing it to the log file."""
    _state["verbose"] = verbose


def quiet_verb(out_param: str = "out") -> Callable[[F], F]:
    """Run a verb inside :func:`third_party_output`, its log beside the verb's ``out_param`` path.
    A decorator, so that each verb needs one line (typer reads the wrapped signature)."""

    def decorate(verb: F) -> F:
        signature = inspect.signature(verb)
        if out_param not in signature.parameters:
            raise TypeError(f"{verb.__name__} has no parameter {out_param!r} to put the log beside")

        @functools.wraps(verb)
        def quiet(*args: Any, **kwargs: Any) -> Any:
            out = signature.bind(*args, **kwargs).arguments.get(out_param, signature.parameters[out_param].default)
            with third_party_output(Path(out)):
                return verb(*args, **kwargs)

        return quiet  # type: ignore[return-value]

    return decorate


@contextlib.contextmanager
def third_party_output(out: Path) -> Iterator[None]:
    """Send fds 1 and 2 to a log file (or, with -v, both to stderr) while the block runs; keep our own
    stdout and stderr on copies of the originals. On leaving, the log moves beside OUT (:func:`log_path`)
    and one line on stderr names it."""
    if _state["active"]:  # a verb running another verb: the outer one already captures
        yield
        return
    _flush()
    own_out, own_err = _own_stream(sys.stdout, 1), _own_stream(sys.stderr, 2)
    log = None if _state["verbose"] else tempfile.NamedTemporaryFile(prefix="edge-bert-", suffix=".log", delete=False)
    saved = os.dup(1), os.dup(2)
    previous_stdout = sys.stdout
    sink = log.fileno() if log else saved[1]
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    sys.stdout = own_out or sys.stdout
    if own_err:
        err_console.file = own_err
    _state["active"] = True
    announce = True
    try:
        yield
    except BaseException as exc:
        announce = getattr(exc, "exit_code", None) != 2
        raise
    finally:
        _flush()
        for fd, original in zip((1, 2), saved, strict=True):
            os.dup2(original, fd)
            os.close(original)
        sys.stdout = previous_stdout
        if own_err:
            err_console.file = None  # type: ignore[assignment]  # None: follow sys.stderr again, as created
        for stream in (own_out, own_err):
            if stream is not None:
                stream.close()
        _state["active"] = False
        if log is not None:
            log.close()
            _keep(Path(log.name), out, announce)


def _own_stream(stream: IO[str], fd: int) -> IO[str] | None:
    """A text stream on a copy of ``fd`` when ``stream`` writes to it; None when it does not (e.g. a test
    runner's in-memory capture), and then it is left as it is."""
    try:
        if stream.fileno() != fd:
            return None
    except (AttributeError, OSError, ValueError):
        return None
    return open(os.dup(fd), "w", encoding=stream.encoding, errors=stream.errors, buffering=1)


def _flush() -> None:
    """Flush Python's and C's buffers, so that what was written before a switch lands where it was meant to."""
    for stream in (sys.stdout, sys.stderr, err_console.file):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


def log_path(out: Path) -> Path:
    """Where a verb's log goes: beside OUT as OUT.log (bundles.log, models/NAME.log), not inside it - OUT
    holds bundles (or one model) only, and a refused run must leave it empty."""
    base = out if out.name not in ("", "..") else out.resolve()
    return base.with_name(base.name + ".log")


def _keep(log: Path, out: Path, announce: bool) -> None:
    """Move a non-empty log beside OUT (if that fails it stays in the temp dir) and name it in one line.
    An empty log, or one after unusable input (exit 2 prints exactly one line), is removed."""
    if not announce or log.stat().st_size == 0:
        log.unlink()
        return
    target = log
    with contextlib.suppress(OSError, ValueError):  # ValueError: OUT is / (no name to put .log after)
        target = Path(shutil.move(log, log_path(out)))
    err_console.print(f"[dim]third-party output: {target} (edge-bert -v shows it)[/dim]", highlight=False)
