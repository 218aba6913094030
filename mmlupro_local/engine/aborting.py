"""Stopping a llama_decode in progress. A second Ctrl-C must end a run at once, but
Python runs a signal handler only between its own bytecodes, and one 512-token batch
of a prefix takes a minute for a 7B model on a CPU. llama.cpp asks an abort callback
between graph nodes; that callback is Python, so a pending handler runs inside it,
where an exception would only be printed and ignored by ctypes. There the handler asks
the decode to stop instead, and the decode raises once llama.cpp returns.

The callback is given to llama.cpp only while `handled()` says every signal that ends
the run goes through `interrupt`: Python's own Ctrl-C handler would be swallowed in it."""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import llama_cpp as L

from mmlupro_local.errors import Terminated

_requested = [0]  # the signal that asked for the abort; 0: none
_scopes = [0]  # how many `handled()` blocks are open


def _wants_abort(_data: ctypes.c_void_p) -> bool:
    return _requested[0] != 0


CALLBACK = L.ggml_abort_callback(_wants_abort)
NO_CALLBACK = L.ggml_abort_callback()


def interrupt(signum: int, frame: FrameType | None) -> None:
    """End the run now: raise Terminated, or, inside llama.cpp's callback, stop the
    decode so that it raises when it returns."""
    if frame is not None and frame.f_code is _wants_abort.__code__:
        _requested[0] = signum
        return
    raise Terminated(signum)


@contextmanager
def handled(handlers: dict[signal.Signals, Any]) -> Iterator[None]:
    """Install these handlers for SIGINT and SIGTERM (each ends in `interrupt` or
    returns); decodes may be aborted meanwhile."""
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    _scopes[0] += 1
    try:
        yield
    finally:
        _scopes[0] -= 1
        for sig, old in previous.items():
            signal.signal(sig, old)


def callback() -> Any:
    """What llama.cpp should call between graph nodes now."""
    return CALLBACK if _scopes[0] else NO_CALLBACK


def raise_if_aborted() -> None:
    signum, _requested[0] = _requested[0], 0
    if signum:
        raise Terminated(signum)
