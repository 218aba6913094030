"""How an answer is generated and read: the official stop string and budget, the
lossless early stop, the extraction mode and think blocks. Declared once; the CLI reads
its defaults from here."""

from __future__ import annotations

from dataclasses import dataclass

from mmlupro_local.task.extract import ExtractMode

STOP = "Question:"  # the official stop string: the model starts a next question
MAX_TOKENS = 2048  # the official generation budget


@dataclass(frozen=True)
class AnswerSettings:
    stop: str = STOP
    early_stop: bool = True  # end once extraction level 1 has matched (lossless)
    extract_mode: ExtractMode = "first"
    strip_thinking: bool = True  # think blocks are neither searched nor stopped in
