"""Deciding when a generation ends, from the text streamed so far.

Shared by every engine so they stop for the same reasons: the wording's stop strings
(the first found ends the text; never inside a think block), and the lossless early stop once extraction level 1 has
matched in "first" mode (the first match of a prefix is the first match of the whole).
It also counts the tokens spent thinking and, past a think budget, hands the engine the
text that closes the block and leads into the answer. In-process engines feed one
token per call, so the count is exact there.
"""

from __future__ import annotations

from collections.abc import Sequence

from mmlupro_local.engine import StopReason
from mmlupro_local.task.extract import (
    in_open_think_block,
    level1,
    level1_after,
    strip_think_blocks,
)
from mmlupro_local.task.settings import AnswerSettings

_TAGS = ("<think>", "</think>")


class StopWatcher:
    def __init__(self, settings: AnswerSettings, *, started_thinking: bool = False) -> None:
        self.settings = settings
        self.text = ""
        self._started_thinking = started_thinking
        self._early = settings.early_stop and settings.extract_mode == "first"
        self._inside = started_thinking  # is the end of the text inside a think block
        self.thinking_tokens = 0  # pieces fed while a think block was open
        self.think_cut = False  # the budget closed a think block
        self._forced = ""

    def feed(self, piece: str) -> StopReason | None:
        """Add generated text; return "stop" or "early" when generation should end."""
        old = len(self.text)
        self.text += piece
        self._track_thinking(old)
        at = self._stop_at(old)
        if at is not None:
            self.text = self.text[:at]
            return "stop"
        if self._early and self._level1_matched(old):
            return "early"
        return None

    def _stop_at(self, old: int) -> int | None:
        """Where the first stop string outside a think block starts, if one has begun in
        the text since `old` (a stop may straddle the previous piece's end)."""
        found = []
        for stop in self.settings.stop:
            at = self.text.find(stop, max(0, old - len(stop) + 1))
            while at >= 0 and self._thinking_at(at):
                at = self.text.find(stop, at + 1)
            if at >= 0:
                found.append(at)
        return min(found, default=None)

    def _track_thinking(self, old: int) -> None:
        # the last tag decides; a tag may straddle the previous piece's end
        window = self.text[max(0, old - len(_TAGS[1]) + 1) :]
        opened, closed = window.rfind(_TAGS[0]), window.rfind(_TAGS[1])
        if opened >= 0 or closed >= 0:
            self._inside = opened > closed
        if not self._inside or self.think_cut:
            return
        self.thinking_tokens += 1
        budget = self.settings.think_budget or 0
        if budget and self.thinking_tokens >= budget:
            self.think_cut = True
            self._forced = self.settings.wording.forced_answer

    def take_forced(self) -> str:
        forced, self._forced = self._forced, ""
        return forced

    def _thinking_at(self, end: int) -> bool:
        if not self.settings.strip_thinking:
            return False
        return in_open_think_block(self.text[:end], started_inside=self._started_thinking)

    def _level1_matched(self, old: int) -> bool:
        wording = self.settings.wording
        if self.settings.strip_thinking and (self._started_thinking or "think>" in self.text):
            if self._thinking_at(len(self.text)):
                return False
            return level1(strip_think_blocks(self.text), wording=wording) is not None
        return level1_after(self.text, max(0, old - wording.longest_answer), wording)


class Watchers:
    """What the engine calls for the job at each index (a NewWatcher): a watcher that
    knows whether that prompt leaves a think block open (a chat template that opens
    one). The latest made for each job is kept, for its thinking counts."""

    def __init__(self, settings: AnswerSettings, prompts: Sequence[str]) -> None:
        self.settings = settings
        self.prompts = prompts
        self.made: dict[int, StopWatcher] = {}

    def __call__(self, index: int) -> StopWatcher:
        watcher = StopWatcher(
            self.settings, started_thinking=in_open_think_block(self.prompts[index])
        )
        self.made[index] = watcher
        return watcher
