"""The batched decoder (continuous batching, engine/batched.py) over a scripted handle
layer: a "model" whose greedy choice depends only on the tokens a sequence holds, so
every schedule must give each question the answer it gets alone. Covered: slots refilled
as questions finish, a second category's prefix, a stream too small for a question,
prompt-lookup guesses kept and rolled back, forced text (a think budget), and the
canonical calls the context is asked for (engine.shapes)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from mmlupro_local.engine import EngineError, EngineSettings, Job
from mmlupro_local.engine.batched import BatchedDecoder
from mmlupro_local.engine.prefixes import SavedPrefixes
from mmlupro_local.engine.shapes import CPU_RULE, Call, plan_calls, read_calls

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
    """A KV stream per sequence, (seq, pos) -> token, each of at most `capacity` cells;
    an entry's greedy choice continues its sequence's answer. Records the canonical
    calls each decode becomes."""

    rule = CPU_RULE

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.cells: dict[int, dict[int, int]] = {}
        self.rows: list[tuple[int, int]] = []
        self.decode_seconds = 0.0
        self.calls: list[int] = []  # each canonical call's row count
        self.cut = 0  # cells dropped from the end of a live sequence (guesses undone)

    def decode(self, entries: Sequence[tuple[int, int, int, bool]], **_: object) -> None:
        self._calls(plan_calls(entries, self.rule), entries)

    def read(self, entries: Sequence[tuple[int, int, int, bool]], **_: object) -> None:
        self._calls(read_calls(entries, self.rule), entries)

    def _calls(self, calls: list[Call], entries: Sequence[tuple[int, int, int, bool]]) -> None:
        for call in calls:
            self.calls.append(len(call.rows))
            for token, pos, seq, _ in call.rows:
                self.cells.setdefault(seq, {})[pos] = token
            for seq, start in call.padding.items():
                self.remove(seq, start)
        if any(len(cells) > self.capacity for cells in self.cells.values()):
            raise EngineError("a question's KV stream is full", setting="n_ctx")
        self.rows = [(seq, pos) if logits else (-1, -1) for _, pos, seq, logits in entries]

    def sample(self, row: int) -> int:
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
    settings = EngineSettings(threads=1, n_ctx=capacity + CPU_RULE.max_stream_rows, lookup=lookup)
    decoder = BatchedDecoder(
        ScriptedModel(),
        ctx,  # type: ignore[arg-type]
        settings,
        SavedPrefixes(None, "m", settings, CPU_RULE),
        parallel,
    )
    results: dict[int, str] = {}
    guessed = 0
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
        assert results == expected
        # every call canonical: at least two rows, at most a stream's most or a row each
        assert min(ctx.calls) == 2 and max(ctx.calls) <= CPU_RULE.capacity(parallel + 1)


def test_a_stream_too_small_for_a_question_is_refused_before_decoding() -> None:
    with pytest.raises(EngineError, match="does not fit the context"):
        decode(2, capacity=20)


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
