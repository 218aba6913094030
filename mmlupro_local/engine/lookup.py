"""Prompt-lookup drafting for speculative decoding (as llama.cpp's `lookup` example).

The next tokens are guessed by finding the latest earlier occurrence of the last few
tokens (in the prompt or the answer so far) and copying what followed it. The model
then checks all guesses in one batch and keeps the ones greedy decoding agrees with, so
a guess never changes which token is chosen; only the batch shape (and with it the
floating-point path) differs from one token at a time. Small models repeat themselves
in long answers, which such guesses predict almost perfectly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

NGRAM_SIZES = (4, 3, 2)  # longest first: a longer match predicts better
FIRST_DRAFT = 4


class Guesser(Protocol):
    """What proposes a question's next tokens: prompt lookup, or a draft model."""

    def extend(self, tokens: Iterable[int]) -> None: ...

    def draft(self, room: int) -> list[int]: ...

    def accepted(self, drafted: int, kept: int) -> None: ...


class Drafter:
    """Drafts for one sequence. `limit` caps a draft; the length adapts: it doubles
    after a draft was accepted whole and drops to what was accepted plus one after a
    miss, so text the guesses do not fit costs little."""

    def __init__(self, tokens: Iterable[int], limit: int) -> None:
        self.tokens: list[int] = []
        self.limit = limit
        self.size = min(FIRST_DRAFT, limit)
        # n-gram -> index of the token that followed its latest occurrence
        self._follows: dict[tuple[int, ...], int] = {}
        self.extend(tokens)

    def extend(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            end = len(self.tokens)  # the n-grams ending just before `token` now have a follower
            for n in NGRAM_SIZES:
                if end >= n:
                    self._follows[tuple(self.tokens[end - n : end])] = end
            self.tokens.append(token)

    def draft(self, room: int) -> list[int]:
        """Up to min(room, current size) guessed tokens to follow self.tokens."""
        want = min(room, self.size)
        if want <= 0:
            return []
        for n in NGRAM_SIZES:
            if len(self.tokens) < n:
                continue
            start = self._follows.get(tuple(self.tokens[-n:]))
            if start is None:
                continue
            # copy what followed; running past the end repeats the cycle just copied
            source = self.tokens
            guess: list[int] = []
            for i in range(want):
                at = start + i
                guess.append(source[at] if at < len(source) else guess[at - len(source)])
            return guess
        return []

    def accepted(self, drafted: int, kept: int) -> None:
        """Adapt the draft size to how many of `drafted` guesses the model kept."""
        if drafted == 0:
            return
        self.size = min(self.limit, self.size * 2) if kept == drafted else max(1, kept + 1)
