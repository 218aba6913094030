"""Stopping a run cleanly: the first Ctrl-C or SIGTERM asks the generation loop to stop
after the current question (nothing half-written); outside that loop, and at a second
signal, SIGTERM interrupts like Ctrl-C does."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from mmlupro_local.engine import aborting
from mmlupro_local.errors import Terminated

__all__ = ["Stop", "Terminated", "first_interrupt_requests_stop", "signals_interrupt"]


class Stop(threading.Event):
    """Set by the first Ctrl-C or SIGTERM; `signum` says which."""

    signum = 0


@contextmanager
def first_interrupt_requests_stop() -> Iterator[Stop]:
    """First Ctrl-C or SIGTERM (`timeout`, `docker stop`): stop after the current
    question (nothing half-written). A second one interrupts at once."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            aborting.interrupt(signum, frame)
            return
        stop.signum = signum
        stop.set()

    with aborting.handled({signal.SIGINT: handler, signal.SIGTERM: handler}):
        yield stop


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Outside the generation loop (loading, preparing) SIGTERM interrupts like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with aborting.handled({signal.SIGINT: aborting.interrupt, signal.SIGTERM: aborting.interrupt}):
        yield
