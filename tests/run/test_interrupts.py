"""Stopping a run: SIGTERM like Ctrl-C, and what a signal while loading says."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from fakes import (
    LAW2,
    FakeEngine,
    invoke_with,
    lines,
)


def test_sigterm_is_treated_like_ctrl_c(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13, case 15."""
    stopping = FakeEngine(sigint_at=2, signum=signal.SIGTERM)
    out = tmp_path / "r.jsonl"
    result = invoke_with(stopping, "run", str(model), *LAW2, "--out", str(out))
    assert result.exit_code == 143, result.output
    assert "Stopped by SIGTERM: 1 of 2 questions are saved" in result.output
    assert "Resume with:" in result.output
    assert [r["type"] for r in lines(out)] == ["run", "result"]


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "Interrupted"), (signal.SIGTERM, 143, "Stopped by SIGTERM")],
)
def test_a_signal_while_loading_says_how_to_resume(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int, code: int, said: str
) -> None:
    """Issue 13, case 15."""

    def loading(path: Path, settings: object) -> FakeEngine:
        os.kill(os.getpid(), signum)
        time.sleep(1)
        raise AssertionError("the signal did not interrupt loading")

    out = tmp_path / "r.jsonl"
    # Python keeps SIGINT ignored when its shell started it in the background (as a
    # script's `cmd &` does): give the test Ctrl-C's usual handler
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = invoke_with(loading, "run", str(model), *LAW2, "--out", str(out))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == code, result.output
    assert (
        f"{said}: before any question was answered; no results were written. Resume with:"
        in result.output
    )
    assert "Aborted" not in result.output
    assert not out.exists()  # no 0-byte file either (16)
