"""The batched decoder (continuous batching, engine/batched.py) over a scripted handle
layer: a "model" whose greedy choice depends only on the tokens a sequence holds, so
every schedule must give each question the answer it gets alone. Covered: slots refilled
as questions finish, a second category's prefix, a full KV cache shedding the newest
question, prompt-lookup guesses kept and rolled back, forced text (a think budget)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from mmlupro_local.engine import EngineError, EngineSettings, Job
from mmlupro_local.engine.batched import BatchedDecoder
from mmlupro_local.engine.prefixes import SavedPrefixes

END = "|"  # closes every prompt; answers never hold it


def answer_of(prompt: str) -> str:
    """What the scripted model answers: the question (after the last ':') twice."""
    question = prompt[:-1].rsplit(":", 1)[-1]
    return question * 2


class ScriptedModel:
    def split_prompt(self, prompt: str, prefix_chars: int) -> tuple[list[int], int]:
        return [ord(c) for c in prompt], prefix_chars

    def piece(self, token: int) -> bytes:
        return chr(token).encode()

    def is_end(self, token: int) -> bool:
        return token == 0

    def tokenize(self, text: str, *, bos: bool = True) -> list[int]:
        return [ord(c) for c in text]


class ScriptedContext:
    """A KV cache of (seq, pos) -> token holding at most `capacity` cells; a logits row
    is the sequence's history up to that cell, and sampling continues its answer."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.cells: dict[int, dict[int, int]] = {}
        self.rows: list[tuple[int, int]] = []
        self.decode_seconds = 0.0
        self.batches: list[int] = []  # each decoded batch's size
        self.refused = 0  # batches refused for want of room
        self.cut = 0  # cells dropped from the end of a live sequence (guesses undone)

    def decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> bool:
        if sum(map(len, self.cells.values())) + len(entries) > self.capacity:
            self.refused += 1
            return False
        self.rows = []
        for token, pos, seq, logits in entries:
            self.cells.setdefault(seq, {})[pos] = token
            if logits:
                self.rows.append((seq, pos))
            else:
                self.rows.append((-1, -1))
        self.batches.append(len(entries))
        return True

    def sample(self, row: int = -1) -> int:
        seq, pos = self.rows[row]
        history = "".join(chr(self.cells[seq][p]) for p in range(pos + 1))
        prompt, _, generated = history.partition(END)
        answer = answer_of(prompt + END)
        return ord(answer[len(generated)]) if len(generated) < len(answer) else 0

    def remove(self, seq: int, start: int = -1, end: int = -1) -> None:
        cells = self.cells.get(seq, {})
        gone = [p for p in cells if p >= max(start, 0) and (end < 0 or p < end)]
        self.cut += len(gone) if start > 0 else 0
        for pos in gone:
            del cells[pos]

    def copy(self, source: int, target: int) -> None:
        self.cells[target] = dict(self.cells.get(source, {}))

    def clear(self) -> None:
        self.cells = {}


class Recorder:
    """A watcher that keeps the text and, once, forces `forced` after `after` pieces."""

    def __init__(self, forced: str = "", after: int = 0) -> None:
        self.text = ""
        self.forced, self.after, self.pieces = forced, after, 0

    def feed(self, piece: str) -> None:
        self.text += piece
        self.pieces += 1

    def take_forced(self) -> str:
        if self.forced and self.pieces == self.after:
            forced, self.forced = self.forced, ""
            return forced
        return ""


PREFIXES = ("law shots:", "history shots:")
JOBS = [
    Job(prefix + question + END, len(prefix))
    for prefix, question in [
        (PREFIXES[0], "ab"),
        (PREFIXES[0], "cde"),
        (PREFIXES[0], "f"),
        (PREFIXES[0], "ghij"),
        (PREFIXES[1], "kl"),
        (PREFIXES[1], "mno"),
    ]
]


def decode(
    parallel: int, *, capacity: int = 10_000, lookup: int = 0, forced: str = ""
) -> tuple[dict[int, str], ScriptedContext, int]:
    ctx = ScriptedContext(capacity)
    settings = EngineSettings(threads=1, n_ctx=capacity, batch=8, lookup=lookup)
    decoder = BatchedDecoder(
        ScriptedModel(),
        ctx,
        settings,  # type: ignore[arg-type]
        SavedPrefixes(None, "m", settings),
        parallel,
    )
    results: dict[int, str] = {}
    guessed = 0
    # a fresh watcher each time a question is (re)admitted, as the task's Watchers makes
    for index, generation in decoder.run(
        JOBS, 64, lambda i: Recorder(forced, after=1), lambda: False
    ):
        assert index not in results and generation.stop_reason == "eos"
        results[index] = generation.text
        assert generation.generated_tokens == len(generation.text)
        guessed += generation.guessed_tokens
    return results, ctx, guessed


def test_every_question_gets_its_own_answer_whatever_the_schedule() -> None:
    expected = {i: answer_of(job.text) for i, job in enumerate(JOBS)}
    for parallel in (1, 2, 3, 6):
        results, ctx, _ = decode(parallel)
        assert results == expected and ctx.refused == 0
        assert max(ctx.batches) <= 8  # the batch size is respected


def test_a_full_kv_cache_sheds_the_newest_question_and_finishes_them_all() -> None:
    # room for the template and two questions, not always three
    results, ctx, _ = decode(3, capacity=52)
    assert ctx.refused > 0
    assert results == {i: answer_of(job.text) for i, job in enumerate(JOBS)}
    with pytest.raises(EngineError, match="too small for one question"):
        decode(1, capacity=30)
    with pytest.raises(EngineError, match="too small for the prompt prefix"):
        decode(1, capacity=5)


def test_lookup_guesses_are_kept_where_greedy_agrees_and_rolled_back_where_not() -> None:
    plain, _, none = decode(2)
    looked_up, ctx, guessed = decode(2, lookup=4)
    # the answers repeat the question, so guesses copied from the prompt are mostly right;
    # past the answer's end they are wrong, and their cells are dropped
    assert looked_up == plain and none == 0
    assert guessed > 0 and ctx.cut > 0


def test_forced_text_is_decoded_as_if_generated() -> None:
    results, _, _ = decode(2, forced="XY")
    for i, job in enumerate(JOBS):
        whole = answer_of(job.text)
        # the first piece, the forced text, then the answer from where it stands
        assert results[i] == whole[0] + "XY" + whole[3:]
    # a question shed from a full cache starts again with a fresh watcher
    assert decode(3, capacity=52, forced="XY")[0] == results
