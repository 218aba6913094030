"""Issue 32, case 2: every answer received is on disk within a bound whether or not
another answer comes, in-process and from a server, checked with a kill."""

from __future__ import annotations

import json
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
    return sum(
        '"question_id"' in line and '"kind"' not in line for line in path.read_text().splitlines()
    )


class StallsAfterThree(FakeEngine):
    """Three answers in one decode step, then a step that takes a while: what the file
    holds meanwhile is recorded in `seen`."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.out, self.seen = out, -1

    def generate_many(self, jobs: Sequence[Job], *, max_tokens: int, new_watcher: Callable[[int], object],
                      should_stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[int, Generation]]:  # fmt: skip
        answers = super().generate_many(jobs, max_tokens=max_tokens, new_watcher=new_watcher,
                                        should_stop=should_stop)  # type: ignore[arg-type]  # fmt: skip
        for count, answer in enumerate(answers):
            if count == 3:
                time.sleep(BOUND + 0.2)
                self.seen = results_in(self.out)
            yield answer


def test_answers_finished_together_reach_the_disk_while_the_next_step_runs(
    model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.jsonl"
    sample = SampleSpec(per_category=2, categories=("law", "history"))
    engine = StallsAfterThree(out)
    run(reference_request(model, out, sample=sample), echo=lambda _: None,
        engine_factory=engine, progress=False)  # fmt: skip
    assert GROUP_SECONDS < BOUND
    assert engine.seen == 3 and results_in(out) == 4


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
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum("question_id" in r and r.get("kind") is None for r in records) == 3


class InterruptedAfterTwo(FakeEngine):
    """Two answers in one step, then a second Ctrl-C (an interrupt that cannot wait)."""

    def generate_many(self, jobs: Sequence[Job], *, max_tokens: int, new_watcher: Callable[[int], object],
                      should_stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[int, Generation]]:  # fmt: skip
        answers = super().generate_many(jobs, max_tokens=max_tokens, new_watcher=new_watcher,
                                        should_stop=should_stop)  # type: ignore[arg-type]  # fmt: skip
        for count, answer in enumerate(answers):
            if count == 2:
                raise KeyboardInterrupt
            yield answer


def test_answers_received_before_an_abrupt_interrupt_are_kept(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    sample = SampleSpec(per_category=2, categories=("law", "history"))
    with pytest.raises(KeyboardInterrupt):
        run(reference_request(model, out, sample=sample), echo=lambda _: None,
            engine_factory=InterruptedAfterTwo(), progress=False)  # fmt: skip
    assert results_in(out) == 2
