"""Deciding when a generation ends, from the text streamed so far.

Shared by every engine so they stop for the same reasons: the official stop string
(never inside a think block), and the lossless early stop once extraction level 1 has
matched in "first" mode (the first match of a prefix is the first match of the whole).
"""

from __future__ import annotations

from collections.abc import Sequence

from mmlupro_local.engine import NewWatcher, StopReason
from mmlupro_local.task.extract import (
    in_open_think_block,
    level1,
    level1_after,
    strip_think_blocks,
)
from mmlupro_local.task.settings import AnswerSettings

_LONGEST_LEVEL1 = len("answer is (X)")


class StopWatcher:
    def __init__(self, settings: AnswerSettings, *, started_thinking: bool = False) -> None:
        self.settings = settings
        self.text = ""
        self._started_thinking = started_thinking
        self._early = settings.early_stop and settings.extract_mode == "first"

    def feed(self, piece: str) -> StopReason | None:
        """Add generated text; return "stop" or "early" when generation should end."""
        old = len(self.text)
        self.text += piece
        stop = self.settings.stop
        if stop:
            at = self.text.find(stop, max(0, old - len(stop) + 1))
            if at >= 0 and not self._thinking_at(at):
                self.text = self.text[:at]
                return "stop"
        if self._early and self._level1_matched(old):
            return "early"
        return None

    def _thinking_at(self, end: int) -> bool:
        if not self.settings.strip_thinking:
            return False
        return in_open_think_block(self.text[:end], started_inside=self._started_thinking)

    def _level1_matched(self, old: int) -> bool:
        if self.settings.strip_thinking and (self._started_thinking or "think>" in self.text):
            if self._thinking_at(len(self.text)):
                return False
            return level1(strip_think_blocks(self.text)) is not None
        return level1_after(self.text, max(0, old - _LONGEST_LEVEL1))


def new_watchers(settings: AnswerSettings, prompts: Sequence[str]) -> NewWatcher:
    """What the engine calls for the job at each index: a watcher that knows whether
    that prompt leaves a think block open (a chat template that opens one)."""

    def new_watcher(index: int) -> StopWatcher:
        return StopWatcher(settings, started_thinking=in_open_think_block(prompts[index]))

    return new_watcher
