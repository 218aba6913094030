"""What a thinking run will cost, said after its first answers (issue 35): a model that
thinks by default may spend thousands of tokens a question, and a user should learn
that from a few questions, not from the bill."""

from __future__ import annotations

import time
from collections.abc import Callable

from mmlupro_local.results.records import ResultRecord

SEEN_FIRST = 3  # answers measured before saying anything (at least one batch)


class ThinkingCost:
    def __init__(self, left: int, batch: int, say: Callable[[str], None]) -> None:
        self.left, self.say = left, say
        self.wanted = min(left, max(SEEN_FIRST, batch))
        self.seen = self.tokens = 0
        self.began = time.perf_counter()

    def add(self, record: ResultRecord) -> None:
        if self.seen >= self.wanted:
            return
        self.seen += 1
        self.tokens += record.thinking_tokens
        if self.seen == self.wanted and self.seen < self.left:
            self.say(self.sentence(time.perf_counter() - self.began))

    def sentence(self, seconds: float) -> str:
        per = self.tokens / self.seen
        rest = self.left - self.seen
        hours = seconds / self.seen * rest / 3600
        return (
            f"thinking: {per:,.0f} tokens per question over the first {self.seen} answers; "
            f"the {rest:,} left would think about {per * rest:,.0f} tokens, about "
            f"{hours:,.1f} hours at this pace. --think-budget N bounds each think block; "
            "--thinking off turns thinking off where the chat template has a switch"
        )
