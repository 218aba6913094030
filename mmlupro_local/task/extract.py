"""The official MMLU-Pro answer extraction chain, in linear time, plus think-block handling.

Official patterns (evaluate_from_local.py), tried in order on the generated text:
  1. re.search(r"answer is \\(?([A-J])\\)?")                  first match
  2. re.search(r".*[aA]nswer:\\s*([A-J])")                     no DOTALL
  3. re.search(r"\\b[A-J]\\b(?!.*\\b[A-J]\\b)", re.DOTALL)      last standalone letter
Patterns 2 and 3 backtrack quadratically on long text; the functions below return
the same answers in linear time (a property test checks them against the originals).
In another wording (an MMLU-ProX language) level 1 is that language's answer phrase (the
harness's regex) and level 2 its answer label, each falling back to the official English
pattern when it finds nothing (models often answer in English).
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass
from typing import Literal, get_args

from mmlupro_local.datasets.questions import LETTERS
from mmlupro_local.task.wording import OFFICIAL, Wording

OFFICIAL_LEVEL1 = r"answer is \(?([A-J])\)?"
OFFICIAL_LEVEL2 = r".*[aA]nswer:\s*([A-J])"
OFFICIAL_LEVEL3 = r"\b[A-J]\b(?!.*\b[A-J]\b)"

_LEVEL1 = re.compile(OFFICIAL_LEVEL1)
# a literal start lets the regex engine scan fast; the "a"/"A" before it is checked by hand
_LEVEL2 = re.compile(r"nswer:\s*([A-J])")
# anchored with match(): one greedy pass to the end, then backtracking to the last letter
_LEVEL3_LAST = re.compile(r"(?s:.*)\b([A-J])\b")
_ANY_LETTER = re.compile("[A-J]")  # a fast scan that spares the backtracking when there is none
_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"

ExtractMode = Literal["first", "last"]
EXTRACT_MODES: tuple[ExtractMode, ...] = get_args(ExtractMode)


@dataclass(frozen=True)
class Extraction:
    letter: str | None
    level: int  # 1, 2, 3, or 0 when nothing matched
    thinking_chars: int = 0  # characters of think blocks left out of the search


def extract_answer(
    text: str, *, mode: str = "first", strip_thinking: bool = True, wording: Wording = OFFICIAL
) -> Extraction:
    """The letter the official chain finds in `text`, and the level that found it.

    mode "last" takes the last "answer is" match at level 1 (for models that restate
    answers); "first" is official. With strip_thinking, <think> blocks are not searched.
    """
    thinking = 0
    if strip_thinking:
        visible = strip_think_blocks(text)
        thinking = len(text) - len(visible)
        text = visible
    letter = level1(text, mode=mode, wording=wording)
    if letter is None and wording != OFFICIAL:
        letter = level1(text, mode=mode)
    if letter is not None:
        return Extraction(letter, 1, thinking)
    letter = None if wording == OFFICIAL else label_level2(text, wording.answer_label)
    letter = letter if letter is not None else level2(text)
    if letter is not None:
        return Extraction(letter, 2, thinking)
    letter = level3(text)
    if letter is not None:
        return Extraction(letter, 3, thinking)
    return Extraction(None, 0, thinking)


@functools.cache
def _phrase(wording: Wording) -> re.Pattern[str]:
    return _LEVEL1 if wording == OFFICIAL else re.compile(wording.answer_regex)


def level1_after(text: str, start: int, wording: Wording = OFFICIAL) -> bool:
    """Has the wording's level 1 matched in text[start:] (the stop watcher's incremental
    check; only the wording's own phrase, so that an early stop is lossless)?"""
    return _phrase(wording).search(text, start) is not None


def level1(text: str, *, mode: str = "first", wording: Wording = OFFICIAL) -> str | None:
    pattern = _phrase(wording)
    if mode == "first":
        match = pattern.search(text)
        return match.group(1) if match else None
    if mode != "last":
        raise ValueError(f"extract mode must be one of {EXTRACT_MODES}, not {mode!r}")
    found = None
    for match in pattern.finditer(text):  # an answer phrase cannot overlap itself
        found = match.group(1)
    return found


@functools.cache
def _label(label: str) -> re.Pattern[str]:
    return re.compile(re.escape(label) + r"\s*([A-J])")


def label_level2(text: str, label: str) -> str | None:
    """Level 2 in another language: `.*LABEL\\s*([A-J])` as re.search reads it, the last
    match on the first line that has one, in linear time."""
    found, line_end = None, -1
    pattern = _label(label)
    match = pattern.search(text)
    while match is not None:
        if found is not None and match.start() > line_end:
            break
        if found is None:
            newline = text.find("\n", match.start())
            line_end = len(text) if newline < 0 else newline
        found = match.group(1)
        # the letter may be where the next label starts ("Antwort: Antwort:B")
        match = pattern.search(text, match.start() + 1)
    return found


def level2(text: str) -> str | None:
    """The official `.*` stays on one line, so the match is the last "answer:" on the
    first line that has one (the \\s* after it may still cross lines)."""
    found = None
    line_end = -1
    match = _LEVEL2.search(text)
    while match is not None:
        start = match.start() - 1
        if found is not None and start > line_end:
            break
        if start >= 0 and text[start] in "aA":
            if found is None:
                newline = text.find("\n", start)
                line_end = len(text) if newline < 0 else newline
            found = match.group(1)
        # resume at the captured letter: "answer: Answer: B" overlaps there
        match = _LEVEL2.search(text, match.end() - 1)
    return found


def level3(text: str) -> str | None:
    """The last standalone capital A-J (matches are one character, so they never overlap)."""
    if _ANY_LETTER.search(text) is None:
        return None
    match = _LEVEL3_LAST.match(text)
    return match.group(1) if match else None


def strip_think_blocks(text: str) -> str:
    """Text outside <think>...</think>. An unclosed <think> hides the rest; a </think>
    with no opening (the template opened the block in the prompt) hides what precedes it."""
    close = text.find(_THINK_CLOSE)
    opening = text.find(_THINK_OPEN)
    if close >= 0 and (opening < 0 or close < opening):
        text = text[close + len(_THINK_CLOSE) :]
    parts = []
    while True:
        opening = text.find(_THINK_OPEN)
        if opening < 0:
            parts.append(text)
            break
        parts.append(text[:opening])
        close = text.find(_THINK_CLOSE, opening + len(_THINK_OPEN))
        if close < 0:
            break
        text = text[close + len(_THINK_CLOSE) :]
    return "".join(parts)


def in_open_think_block(text: str, *, started_inside: bool = False) -> bool:
    """Whether the end of `text` is inside a think block (so a stop string must not fire)."""
    last_open = text.rfind(_THINK_OPEN)
    last_close = text.rfind(_THINK_CLOSE)
    if last_open < 0 and last_close < 0:
        return started_inside
    return last_open > last_close


def official_guess(question_id: int, n_choices: int, seed: int) -> str:
    """The official-compatible stand-in for an unextractable answer: a uniform random
    option, seeded by run seed and question id so it does not depend on run order."""
    rng = random.Random(f"mmlu-pro-guess:{seed}:{question_id}")
    return LETTERS[rng.randrange(n_choices)]
