"""Results acknowledged in groups: answers that arrive within GROUP_SECONDS of the last
write share one fsync (a server streams hundreds a second, faster than a disk
syncs); each is counted, and shown on the bar, only once it is on disk. A flusher thread
writes a group when it is due even if no further answer comes (issue 32, case 2): the
driver may be blocked in a decode step or waiting on the server for minutes."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from mmlupro_local.engine import Generation
from mmlupro_local.results.estimates import Estimate, count_into, from_counts, strict
from mmlupro_local.results.records import ResultRecord
from mmlupro_local.results.store import ResultsWriter
from mmlupro_local.run.progress import Speed

GROUP_SECONDS = 0.02
GROUP_SIZE = 256


class Acknowledged:
    """Writes results for the runner; `counts` (answered, right) per category feed the
    estimate the bar shows. Use it as a context manager: leaving writes what is pending
    and stops the flusher."""

    def __init__(
        self,
        writer: ResultsWriter,
        bar: Any,
        sizes: dict[str, int],
        counts: dict[str, tuple[int, int]],
    ) -> None:
        self.writer, self.bar, self.sizes, self.counts = writer, bar, sizes, counts
        self.pending: list[tuple[ResultRecord, Generation]] = []
        self.written = 0
        self.due = 0.0  # when the oldest pending answer must be on disk
        self.last = -GROUP_SECONDS  # when the last group was written
        self.speed = Speed()
        self._lock = threading.Condition()
        self._closed = False
        self._failure: BaseException | None = None  # a write that failed: none after it
        self._flusher = threading.Thread(target=self._flush_when_due, daemon=True)

    def __enter__(self) -> Acknowledged:
        self._flusher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._flusher.join()
        if exc[0] is None:
            self.flush()
            return
        # a second Ctrl-C: keep what came; not after a failed write, whose error said
        # what the file holds
        if self._failure is None:
            with contextlib.suppress(Exception):
                self.flush()

    def add(self, record: ResultRecord, generation: Generation) -> None:
        with self._lock:
            self._raise_failure()
            now = time.monotonic()
            if not self.pending:  # an engine slower than a group writes each answer at once
                self.due = max(now, self.last + GROUP_SECONDS)
            self.pending.append((record, generation))
            if len(self.pending) >= GROUP_SIZE or now >= self.due:
                self._write()
            else:
                self._lock.notify()

    def finish(self, final: Estimate) -> None:
        """The bar's last figure is the headline's (issue 32, case 17): while answers come
        it shows the plain post-stratified estimate, cheap at every answer."""
        self.bar.set_postfix_str(f"{estimate_text(final)}, {self.speed}", refresh=True)

    def flush(self) -> None:
        with self._lock:
            self._raise_failure()
            self._write()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _flush_when_due(self) -> None:
        with self._lock:
            while not self._closed and self._failure is None:
                wait = self.due - time.monotonic() if self.pending else None
                if wait is None or wait > 0:
                    self._lock.wait(wait)
                    continue
                with contextlib.suppress(Exception):  # the driver raises it next (_failure)
                    self._write()

    def _write(self) -> None:
        if not self.pending:
            return
        records = [record for record, _ in self.pending]
        try:
            self.writer.append_results(records)
        except BaseException as exc:
            self._failure = exc
            raise
        count_into(self.counts, records, strict)
        for _, generation in self.pending:
            self.speed.add(generation)
        self.written += len(self.pending)
        self.bar.set_postfix_str(
            f"{estimate_so_far(self.counts, self.sizes)}, {self.speed}", refresh=False
        )
        self.bar.update(len(self.pending))
        self.pending = []
        self.last = time.monotonic()


def estimate_so_far(counts: dict[str, tuple[int, int]], sizes: dict[str, int]) -> str:
    return estimate_text(from_counts(counts, sizes))


def estimate_text(e: Estimate) -> str:
    return f"est {e.value:.1%}" + ("" if e.exact else f" +/-{e.half_width * 100:.1f}")
