"""Prompt-lookup drafting: what it guesses and how its draft length adapts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mmlupro_local.engine.lookup import FIRST_DRAFT, Drafter


def test_copies_what_followed_the_latest_earlier_occurrence() -> None:
    drafter = Drafter([1, 2, 3, 9, 9, 1, 2, 3, 7, 8, 5, 1, 2, 3], limit=8)
    # "1 2 3" was last followed by 7 8 5 (not by the older 9 9)
    assert drafter.draft(3) == [7, 8, 5]


def test_prefers_the_longest_matching_ngram() -> None:
    drafter = Drafter([5, 3, 4, 6, 2, 3, 4, 8, 5, 3, 4], limit=8)
    # the 3-gram "5 3 4" matched (followed by 6); "3 4" alone last preceded 8
    assert drafter.draft(1) == [6]


def test_a_repeating_cycle_is_guessed_past_the_end_of_the_text() -> None:
    cycle = [10, 11, 12]
    drafter = Drafter(cycle * 3, limit=16)
    drafter.size = 7
    assert drafter.draft(16) == [10, 11, 12, 10, 11, 12, 10]


def test_no_guess_without_a_match_or_room() -> None:
    assert Drafter([1, 2, 3, 4, 5], limit=8).draft(8) == []
    assert Drafter([1], limit=8).draft(8) == []
    assert Drafter([1, 2, 1, 2, 1, 2], limit=8).draft(0) == []


def test_draft_length_doubles_on_success_and_shrinks_on_a_miss() -> None:
    drafter = Drafter([], limit=16)
    assert drafter.size == FIRST_DRAFT
    drafter.accepted(4, 4)
    assert drafter.size == 8
    drafter.accepted(8, 8)
    drafter.accepted(16, 16)
    assert drafter.size == 16  # capped by the limit
    drafter.accepted(16, 2)
    assert drafter.size == 3
    drafter.accepted(0, 0)  # nothing drafted: nothing learnt
    assert drafter.size == 3


@given(st.lists(st.integers(0, 5), max_size=60), st.integers(0, 20))
def test_a_guess_continues_an_earlier_occurrence(tokens: list[int], room: int) -> None:
    drafter = Drafter(tokens, limit=32)
    drafter.size = 32
    guess = drafter.draft(room)
    assert len(guess) <= room
    if guess:
        text = tokens + guess
        # some earlier n-gram equal to the tail is followed, in text, by the guess
        assert any(
            text[s : s + n] == tokens[-n:]
            and text[s + n : s + n + len(guess)] == guess
            and s + n <= len(tokens) - 1
            for n in (2, 3, 4)
            for s in range(len(tokens) - n)
        )
