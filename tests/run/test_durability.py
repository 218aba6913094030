"""Issue 32, case 2: every answer received is on disk within a bound whether or not
another answer comes, in-process and from a server, checked with a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from fakes import FakeEngine, reference_request
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.engine import Generation, Job
from mmlupro_local.run.runner import run
from mmlupro_local.run.saving import GROUP_SECONDS
from vllmfake import FakeVllm, serve, url

BOUND = 0.05  # seconds from an answer's arrival to its fsync


def results_in(path: Path) -> int:
    if not path.exists():
        return 0
    return sum('"type": "result"' in line for line in path.read_text().splitlines())


class Between(FakeEngine):
    """Answers as one decode step would finish them, with `between()` called after the
    first `at` of them, before the rest."""

    def __init__(self, at: int, between: Callable[[], None]) -> None:
        super().__init__()
        self.at, self.between = at, between

    def generate_many(self, jobs: Sequence[Job], *, max_tokens: int, new_watcher: Callable[[int], object],
                      should_stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[int, Generation]]:  # fmt: skip
        answers = super().generate_many(
            jobs, max_tokens=max_tokens, new_watcher=new_watcher, should_stop=should_stop
        )  # type: ignore[arg-type]
        for count, answer in enumerate(answers):
            if count == self.at:
                self.between()
            yield answer


def test_answers_finished_together_reach_the_disk_while_the_next_step_runs(
    model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.jsonl"
    sample = SampleSpec(per_category=2, categories=("law", "history"))
    seen: list[int] = []  # what the file holds while a step takes a while

    def stall() -> None:
        time.sleep(BOUND + 0.2)
        seen.append(results_in(out))

    run(
        reference_request(model, out, sample=sample),
        echo=lambda _: None,
        engine_factory=Between(3, stall),
        progress=False,
    )
    assert GROUP_SECONDS < BOUND
    assert seen == [3] and results_in(out) == 4


def test_answers_a_server_sent_together_survive_a_kill_while_the_rest_hang(
    tmp_path: Path,
) -> None:
    out = tmp_path / "r.jsonl"
    with serve(FakeVllm(hang_after=3)) as fake:
        command = [sys.executable, "-m", "mmlupro_local", "run", "--server", url(fake),
                   "--categories", "law,history,math", "--per-category", "2", "--parallel", "8",
                   "--no-progress", "--out", str(out)]  # fmt: skip
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while fake.asked < 6 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.01)
            time.sleep(BOUND + 0.5)  # the three answers came at once, long since
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            stderr = proc.communicate()[1]
    assert fake.asked == 6, stderr.decode()
    assert results_in(out) == 3


def interrupt() -> None:
    """A second Ctrl-C: an interrupt that cannot wait."""
    raise KeyboardInterrupt


def test_answers_received_before_an_abrupt_interrupt_are_kept(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    sample = SampleSpec(per_category=2, categories=("law", "history"))
    with pytest.raises(KeyboardInterrupt):
        run(
            reference_request(model, out, sample=sample),
            echo=lambda _: None,
            engine_factory=Between(2, interrupt),
            progress=False,
        )
    assert results_in(out) == 2
