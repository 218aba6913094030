"""Stopping a run cleanly: the first Ctrl-C or SIGTERM asks the generation loop to stop
after the current question (nothing half-written); outside that loop, and at a second
signal, SIGTERM interrupts like Ctrl-C does."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


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

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise Terminated(signum)
        stop.signum = signum
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Terminated(KeyboardInterrupt):
    """A signal that ends the run at once (SIGTERM, or a second Ctrl-C)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Outside the generation loop (loading, preparing) SIGTERM interrupts like Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
