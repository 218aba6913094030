"""A second Ctrl-C or SIGTERM during a long llama_decode (a prefix batch) ends the run
at once, through llama.cpp's abort callback, on the real model (issue 26, case 18)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import llama_cpp as L
import pytest

from mmlupro_local.engine import EngineSettings
from mmlupro_local.engine.handles import LlamaContext, LlamaModel
from mmlupro_local.engine.shapes import CPU_RULE
from mmlupro_local.errors import Terminated
from mmlupro_local.run.interrupts import first_interrupt_requests_stop, signals_interrupt

pytestmark = pytest.mark.e2e
BATCH = 2048


@pytest.fixture(scope="module")
def context(smollm2: Path) -> LlamaContext:
    model = LlamaModel(smollm2, 0, architecture="llama", bos_text="", rule=CPU_RULE)
    settings = EngineSettings(n_ctx=CPU_RULE.stream_cells(BATCH), threads=2)
    return LlamaContext(model, settings, 1, CPU_RULE)


def signal_inside_decode(
    signums: list[int], heard: threading.Event | None = None
) -> threading.Thread:
    """Send these signals to this process once the main thread is inside llama_decode,
    each after `heard` says the one before was handled (two signals between two calls
    into Python would reach the handler as one)."""
    main = threading.main_thread().ident
    assert main is not None

    def send() -> None:
        while True:
            frame = sys._current_frames()[main]
            if frame.f_code.co_name == "_call" and "llama_decode" in _line(frame):
                break
            time.sleep(0.001)
        time.sleep(0.05)
        for i, signum in enumerate(signums):
            if heard is not None and i:
                heard.wait()
            os.kill(os.getpid(), signum)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _line(frame: object) -> str:
    import linecache

    return linecache.getline(frame.f_code.co_filename, frame.f_lineno)  # type: ignore[attr-defined]


def decoded(context: LlamaContext) -> int:
    return int(L.llama_memory_seq_pos_max(L.llama_get_memory(context.handle), 0)) + 1


def long_batch() -> list[tuple[int, int, int, bool]]:
    return [(100 + i % 500, i, 0, i == BATCH - 1) for i in range(BATCH)]


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_aborts_the_decode_in_progress(
    context: LlamaContext, second: signal.Signals
) -> None:
    context.clear()
    with first_interrupt_requests_stop() as stop:
        sender = signal_inside_decode([signal.SIGINT, second], stop)
        with pytest.raises(Terminated) as raised:
            context.decode(long_batch())
        sender.join()
    assert stop.is_set() and raised.value.signum == second
    assert decoded(context) < BATCH  # aborted: stopped in the call in progress


def test_one_signal_lets_the_decode_finish(context: LlamaContext) -> None:
    context.clear()
    with first_interrupt_requests_stop() as stop:
        sender = signal_inside_decode([signal.SIGINT])
        context.decode(long_batch())
        sender.join()
    assert stop.is_set() and decoded(context) == BATCH


def test_sigterm_while_loading_or_preparing_aborts_too(context: LlamaContext) -> None:
    context.clear()
    with signals_interrupt():
        sender = signal_inside_decode([signal.SIGTERM])
        with pytest.raises(Terminated) as raised:
            context.decode(long_batch())
        sender.join()
    assert raised.value.signum == signal.SIGTERM and decoded(context) < BATCH


def test_outside_a_run_no_callback_swallows_ctrl_c(context: LlamaContext) -> None:
    """Python's own handler would raise inside the callback, where ctypes ignores it:
    without a run's handlers the decode has none, and Ctrl-C arrives after the call in
    progress, which finishes whole."""
    context.clear()
    signal_inside_decode([signal.SIGINT])
    with pytest.raises(KeyboardInterrupt):
        context.decode(long_batch())
        time.sleep(5)  # the interrupt lands here at the latest
    rows = CPU_RULE.max_stream_rows  # a call of the long batch
    assert decoded(context) >= rows and decoded(context) % rows == 0
