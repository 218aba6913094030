from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mmlupro_local.task.extract import (
    OFFICIAL_LEVEL1,
    OFFICIAL_LEVEL2,
    OFFICIAL_LEVEL3,
    extract_answer,
    in_open_think_block,
    level2,
    level3,
    official_guess,
    strip_think_blocks,
)


def official(text: str) -> tuple[str | None, int]:
    """The official chain, quadratic patterns and all (fine for short strings)."""
    if m := re.search(OFFICIAL_LEVEL1, text):
        return m.group(1), 1
    if m := re.search(OFFICIAL_LEVEL2, text):
        return m.group(1), 2
    if m := re.search(OFFICIAL_LEVEL3, text, re.DOTALL):
        return m.group(0), 3
    return None, 0


def test_official_responses_agree(test_data: Path) -> None:
    """A fixed sample of the released responses: every level-2 and level-3 row, 1,000
    level-1 and 500 unextracted ones (scripts/sample_responses.py). `make dataset-check`
    checks all 29,000 (scripts/check_responses.py)."""
    with gzip.open(
        test_data / "official-responses-sample.jsonl.gz", "rt", encoding="utf-8"
    ) as handle:
        rows = [json.loads(line) for line in handle]
    assert len(rows) == 2905
    levels: Counter[int] = Counter()
    for row in rows:
        got = extract_answer(row["text"], strip_thinking=False)
        assert (got.letter, got.level) == (row["expected"], row["level"]), row["text"][:200]
        levels[got.level] += 1
    assert levels == {1: 1000, 2: 26, 3: 1379, 0: 500}


TRICKY = [
    ("The answer is (B). Later: the answer is (C).", "B", 1),
    ("the answer is C", "C", 1),
    ("The Answer is (B)", "B", 3),  # level 1 is case-sensitive; level 3 takes the last letter
    ("answer is (k)", None, 0),
    ("Answer: (D)\nAnswer: E", "E", 2),  # level 2 wants a letter right after spaces
    ("Answer: D\nanswer: E", "D", 2),  # first line with a match wins
    ("x Answer: A y answer: C\nAnswer: B", "C", 2),  # last on that line
    ("answer: Answer: B", "B", 2),  # overlapping occurrences
    ("Answer:\n\n  G is right", "G", 2),  # \s* crosses lines
    ("Both A and B seem fine, I think", "I", 3),  # the pronoun "I" is option I, officially too
    ("ABBA is a band; HIJ", None, 0),  # letters inside words do not count
    ("", None, 0),
    ("Réponse finale : É ou C", "C", 3),  # unicode letters are word characters
    ("(J)", "J", 3),
    ("<think>the answer is (A)</think>So the answer is (D).", "D", 1),
    ("<think>the answer is (A)</think>", None, 0),
    ("<think>long reasoning, the answer is (A) and still thinking", None, 0),
    ("reasoning the answer is (A)</think>Final: the answer is (E)", "E", 1),
    ("the answer is (F) <think>maybe G</think> so F", "F", 1),
]


@pytest.mark.parametrize(("text", "letter", "level"), TRICKY)
def test_tricky_cases(text: str, letter: str | None, level: int) -> None:
    got = extract_answer(text)
    assert (got.letter, got.level) == (letter, level)
    if "think>" not in text:
        assert official(text) == (letter, level)


def test_last_mode_takes_the_last_level1_match() -> None:
    text = "the answer is (B). On reflection the answer is (C)."
    assert extract_answer(text, mode="last").letter == "C"
    assert extract_answer(text).letter == "B"
    with pytest.raises(ValueError, match="first"):
        extract_answer(text, mode="middle")


def test_thinking_chars_are_recorded() -> None:
    got = extract_answer("<think>abc</think>the answer is (A)")
    assert got.thinking_chars == len("<think>abc</think>")
    assert extract_answer("<think>abc</think>x", strip_thinking=False).thinking_chars == 0


def test_think_block_helpers() -> None:
    assert strip_think_blocks("a<think>b</think>c<think>d</think>e") == "ace"
    assert strip_think_blocks("a<think>b") == "a"
    assert strip_think_blocks("b</think>c") == "c"
    assert in_open_think_block("x <think> y")
    assert not in_open_think_block("x <think> y </think> z")
    assert in_open_think_block("still thinking", started_inside=True)
    assert not in_open_think_block("done </think> z", started_inside=True)


def test_guess_is_seeded_per_question_and_uniform() -> None:
    assert official_guess(70, 10, seed=0) == official_guess(70, 10, seed=0)
    guesses = [official_guess(qid, 4, seed=0) for qid in range(4000)]
    counts = Counter(guesses)
    assert set(counts) == {"A", "B", "C", "D"}
    assert all(900 < n < 1100 for n in counts.values())
    assert [official_guess(q, 10, seed=1) for q in range(50)] != [
        official_guess(q, 10, seed=0) for q in range(50)
    ]


letters_and_noise = st.text(alphabet="ABCDEFGHIJKabcij :()\n\t.,éx_1", max_size=60)
with_keywords = st.lists(
    st.sampled_from(
        ["answer is ", "answer: ", "Answer:", "(", ")", "A", "J", "I", " ", "\n", "x", "é"]
    ),
    max_size=25,
).map("".join)


@settings(max_examples=800)
@given(st.one_of(letters_and_noise, with_keywords))
@example("A\nB")
@example("answer:\nAnswer: C")
def test_linear_levels_equal_official_patterns(text: str) -> None:
    m2 = re.search(OFFICIAL_LEVEL2, text)
    assert level2(text) == (m2.group(1) if m2 else None)
    m3 = re.search(OFFICIAL_LEVEL3, text, re.DOTALL)
    assert level3(text) == (m3.group(0) if m3 else None)
    got = extract_answer(text, strip_thinking=False)
    assert (got.letter, got.level) == official(text)
