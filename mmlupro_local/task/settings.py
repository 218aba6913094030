"""How an answer is generated and read: the official stop string and budget, the
lossless early stop, the extraction mode and think blocks. Declared once; the CLI reads
its defaults from here."""

from __future__ import annotations

from dataclasses import dataclass

from mmlupro_local.datasets.dataset import OFFICIAL_MAX_TOKENS
from mmlupro_local.task.extract import ExtractMode
from mmlupro_local.task.wording import OFFICIAL, Wording

STOP = OFFICIAL.stop  # the official stop string: the model starts a next question
MAX_TOKENS = OFFICIAL_MAX_TOKENS
# A template that thinks gets this think budget unless one is given, and the official
# budget on top of it for the answer (a laptop's hour, not a GPU's, for one question).
THINK_BUDGET = 4096
# what closes a think block cut by the budget: the tag, then the official answer's
# lead-in, so the next token is the letter (as llama.cpp's reasoning budget forces a close)
FORCED_ANSWER = OFFICIAL.forced_answer


@dataclass(frozen=True)
class AnswerSettings:
    stop: tuple[str, ...] = STOP
    early_stop: bool = True  # end once extraction level 1 has matched (lossless)
    extract_mode: ExtractMode = "first"
    strip_thinking: bool = True  # think blocks are neither searched nor stopped in
    # close a think block after this many tokens; 0: never (a run decides it: run.plan)
    think_budget: int = 0
    # the dataset's: its answer phrase ends a generation early and is extracted first
    wording: Wording = OFFICIAL
