"""Results acknowledged in groups: answers that arrive within GROUP_SECONDS of the last
write share its fsync (a server streams hundreds a second, faster than a disk syncs);
each is counted, and shown on the bar, only once it is on disk. An engine slower than
that writes each answer at once."""

from __future__ import annotations

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
    estimate the bar shows."""

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
        self.last = 0.0
        self.speed = Speed()

    def add(self, record: ResultRecord, generation: Generation) -> None:
        self.pending.append((record, generation))
        if len(self.pending) >= GROUP_SIZE or time.monotonic() - self.last >= GROUP_SECONDS:
            self.flush()

    def finish(self, final: Estimate) -> None:
        """The bar's last figure is the headline's (issue 32, case 17): while answers come
        it shows the plain post-stratified estimate, cheap at every answer."""
        self.bar.set_postfix_str(f"{estimate_text(final)}, {self.speed}", refresh=True)

    def flush(self) -> None:
        if not self.pending:
            return
        records = [record for record, _ in self.pending]
        self.writer.append_results(records)
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
