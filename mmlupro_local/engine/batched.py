"""Questions decoding together in one llama.cpp context (continuous batching), one
question at a time included (`parallel` 1): the same code, so the same arithmetic.

The category prefix is decoded once (or loaded from the prefix cache) into a template
stream; each question's stream starts as a copy of it (llama_memory_seq_cp copies the
cells, in order) and reads its own suffix as it is admitted, then decodes one token per
step alongside the others. A finished question leaves and the next takes its slot at
once, whatever its category. With `lookup`, a generating question also decodes guessed next tokens
(engine.lookup, or a draft model's: engine.draft) and keeps those greedy decoding confirms. Every call is laid out
canonically (engine.shapes), so each token is computed exactly as it would be alone.
"""

from __future__ import annotations

import codecs
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmlupro_local.engine import (
    EngineError,
    EngineSettings,
    Generation,
    Job,
    NewWatcher,
    StopReason,
    Watcher,
)
from mmlupro_local.engine.draft import DRAFT_MAX, DraftModel
from mmlupro_local.engine.handles import LlamaContext, LlamaModel
from mmlupro_local.engine.lookup import Drafter, Guesser
from mmlupro_local.engine.prefixes import SavedPrefixes
from mmlupro_local.engine.shapes import Entry


@dataclass
class _Job:
    index: int
    tokens: list[int]
    boundary: int


@dataclass
class _Slot:
    seq: int
    job: _Job
    watcher: Watcher
    pending: list[int]  # to decode each step: the next token and any guesses
    pos: int
    began: float
    drafter: Guesser | None = None
    utf8: Any = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    generated: int = 0
    guessed: int = 0  # of `generated`, confirmed guesses
    spent: float = 0.0
    prompt_spent: float = 0.0  # the part of spent while reading its prompt
    logit_at: int = 0  # the last decode's index of the slot's first logits row
    checking: list[int] = field(default_factory=list)  # guesses decoded this step
    prefix_decoded: int = 0  # prefix tokens decoded for this question (0: copied)
    forcing: list[int] = field(default_factory=list)  # forced tokens still to take


class BatchedDecoder:
    """Runs jobs in slots (streams) 0..n-1 with the template prefix in stream n."""

    def __init__(
        self,
        model: LlamaModel,
        ctx: LlamaContext,
        settings: EngineSettings,
        prefixes: SavedPrefixes,
        parallel: int,
        draft: DraftModel | None = None,
    ) -> None:
        self.draft = draft
        self.model = model
        self.ctx = ctx
        self.settings = settings
        self.prefixes = prefixes
        self.parallel = parallel
        self.rule = ctx.rule
        # one question at a time keeps its prefix in its own stream: no copy, no template
        self.template = template_stream(parallel)
        self.template_tokens: list[int] = []
        self.wall_seconds = 0.0

    @property
    def decode_seconds(self) -> float:
        return self.ctx.decode_seconds

    def run(
        self,
        jobs: Sequence[Job],
        max_tokens: int,
        new_watcher: NewWatcher,
        should_stop: Callable[[], bool],
    ) -> Iterator[tuple[int, Generation]]:
        began = time.perf_counter()
        queue = [self._job(i, job) for i, job in enumerate(jobs)]
        reach = self.settings.n_ctx - self.rule.max_stream_rows  # the rest is for padding
        for job in queue:
            if len(job.tokens) + max_tokens > reach:
                raise EngineError(
                    f"the prompt ({len(job.tokens)} tokens) plus the budget ({max_tokens}) "
                    f"does not fit the context ({reach})",
                    setting="n_ctx",
                )
        try:
            yield from self._run_queue(deque(queue), max_tokens, new_watcher, should_stop)
        finally:
            self.wall_seconds += time.perf_counter() - began

    def _job(self, index: int, job: Job) -> _Job:
        tokens, boundary = self.model.split_prompt(job.text, job.prefix_chars)
        return _Job(index, tokens, boundary)

    def measure(
        self, widths: Sequence[int], guesses: int, prefix_len: int = 1300, steps: int = 24
    ) -> tuple[float, dict[int, float], float]:
        """Raw throughput of this context, all tokens/s: decoding a prefix; generating
        with each width of sequences sharing it, one token per sequence per step; and
        checking `guesses` tokens of one sequence per step (lookup when every guess fits)."""
        prefix = [100 + i % 500 for i in range(prefix_len)]
        self.ctx.clear()
        self.template_tokens = []
        began = time.perf_counter()
        self._decode_prefix(prefix)
        prompt_rate = prefix_len / (time.perf_counter() - began)
        rates = {
            n: self._timed_steps([[200 + s] for s in range(steps)], n, prefix_len) for n in widths
        }
        chunks = [
            [200 + (s * guesses + i) % 500 for i in range(guesses)] for s in range(steps // 4)
        ]
        checking = self._timed_steps(chunks, 1, prefix_len)
        self.ctx.clear()
        self.template_tokens = []
        return prompt_rate, rates, checking

    def _timed_steps(self, chunks: list[list[int]], width: int, start: int) -> float:
        """Tokens/s decoding each chunk in every one of `width` copies of the template,
        all copies in one call per chunk, with logits for every token."""
        for seq in range(width):
            self.ctx.copy(self.template, seq)
        began = time.perf_counter()
        pos = start
        for chunk in chunks:
            entries = [
                (token, pos + i, seq, True) for seq in range(width) for i, token in enumerate(chunk)
            ]
            self.ctx.decode(entries)
            pos += len(chunk)
        rate = width * sum(map(len, chunks)) / (time.perf_counter() - began)
        for seq in range(width):
            self.ctx.remove(seq)
        return rate

    def _ensure_template(self, prefix: list[int]) -> int:
        """Put the prefix in the template stream; returns the tokens decoded for it.
        Questions copied from the earlier prefix keep their own copies."""
        if self.template_tokens == prefix:
            return 0
        self.ctx.remove(self.template)
        self.template_tokens = []
        if self.prefixes.load(self.ctx, prefix, self.template):
            self.template_tokens = prefix
            return 0
        try:
            self._decode_prefix(prefix)
        except EngineError:
            self.ctx.remove(self.template)
            raise
        self.template_tokens = prefix
        self.prefixes.save(self.ctx, prefix, self.template)
        return len(prefix)

    def _decode_prefix(self, prefix: list[int]) -> None:
        self.ctx.read([(token, i, self.template, False) for i, token in enumerate(prefix)])

    def _run_queue(
        self,
        queue: deque[_Job],
        max_tokens: int,
        new_watcher: NewWatcher,
        should_stop: Callable[[], bool],
    ) -> Iterator[tuple[int, Generation]]:
        slots: dict[int, _Slot] = {}
        while queue or slots:
            if should_stop():
                for slot in slots.values():
                    self._release(slot)
                return
            while queue and len(slots) < self.parallel and not should_stop():
                job = queue.popleft()
                seq = min(set(range(self.parallel)) - set(slots))
                slot = self._admit(job, seq, new_watcher(job.index))
                reason = self._advance(slot, max_tokens)
                if reason is None:
                    slots[seq] = slot
                    continue
                self._release(slot)
                yield job.index, self._result(slot, reason)
            if not slots:
                continue
            entries = self._plan(slots)
            step = time.perf_counter()
            self.ctx.decode(entries)
            _commit(slots)
            spent = (time.perf_counter() - step) / len(slots)
            for seq in sorted(slots):
                slot = slots[seq]
                slot.spent += spent
                reason = self._advance(slot, max_tokens)
                if reason is not None:
                    self._release(slot)
                    del slots[seq]
                    yield slot.job.index, self._result(slot, reason)

    def _admit(self, job: _Job, seq: int, watcher: Watcher) -> _Slot:
        """A slot for the job, its stream a copy of the template holding its prefix, its
        own text read (its first token is sampled next). The job that brings a new
        prefix is charged for decoding it."""
        before, began = self.decode_seconds, time.perf_counter()
        prefix_decoded = self._ensure_template(job.tokens[: job.boundary])
        if seq != self.template:
            self.ctx.copy(self.template, seq)
        suffix = job.tokens[job.boundary :]
        last = len(suffix) - 1
        slot = _Slot(seq, job, watcher, [], len(job.tokens), began, logit_at=last)
        try:
            self.ctx.read(
                [(token, job.boundary + i, seq, i == last) for i, token in enumerate(suffix)]
            )
        except EngineError:
            self._release(slot)
            raise
        if self.draft is not None:
            limit = self.settings.lookup or DRAFT_MAX
            slot.drafter = self.draft.drafter(seq, job.tokens, job.boundary, limit)
        elif self.settings.lookup:
            slot.drafter = Drafter(job.tokens, self.settings.lookup)
        slot.prefix_decoded = prefix_decoded
        slot.spent = slot.prompt_spent = self.decode_seconds - before
        return slot

    def _release(self, slot: _Slot) -> None:
        """Drop a finished question's cells (in the template's stream, all but the prefix)."""
        self.ctx.remove(slot.seq, slot.job.boundary if slot.seq == self.template else -1)

    def _plan(self, slots: dict[int, _Slot]) -> list[Entry]:
        """This step's entries: each slot's pending tokens (its next token and its
        guesses), every one wanting logits. Entries go in stream order; the context
        splits them into canonical calls. Nothing is consumed until _commit."""
        entries: list[Entry] = []
        for seq, slot in sorted(slots.items()):
            slot.logit_at = len(entries)
            slot.checking = slot.pending[1:]
            entries += [(token, slot.pos + i, seq, True) for i, token in enumerate(slot.pending)]
        return entries

    def _advance(self, slot: _Slot, max_tokens: int) -> StopReason | None:
        """Sample the slot's next token, and check its guesses: each guess greedy
        decoding agrees with is kept, the first that differs is replaced by the token
        sampled there, and the cells of the guesses after it are dropped."""
        guesses = slot.checking
        kept = 0
        for row in range(len(guesses) + 1):
            token = slot.forcing.pop(0) if slot.forcing else self.ctx.sample(slot.logit_at + row)
            if self.model.is_end(token):
                return "eos"
            slot.generated += 1
            confirmed = row < len(guesses) and token == guesses[row]
            slot.guessed += confirmed
            stopped = slot.watcher.feed(slot.utf8.decode(self.model.piece(token)))
            if stopped:
                return stopped
            if slot.generated >= max_tokens:
                return "length"
            forced = slot.watcher.take_forced()
            if forced:  # the guesses after this token are moot
                slot.forcing = self.model.tokenize(forced, bos=False)
                confirmed = False
            if not confirmed:
                break
            kept += 1
        if kept < len(guesses):
            slot.pos -= len(guesses) - kept
            self.ctx.remove(slot.seq, slot.pos)
        slot.pending = [token]
        if slot.drafter is not None:
            slot.drafter.accepted(len(guesses), kept)
            slot.drafter.extend([*guesses[:kept], token])
            if not slot.forcing:
                drafting = time.perf_counter()  # a draft model's decoding is the answer's cost
                slot.pending += slot.drafter.draft(max_tokens - slot.generated)
                slot.spent += time.perf_counter() - drafting
        return None

    def _result(self, slot: _Slot, reason: StopReason) -> Generation:
        if reason in ("length", "eos"):
            slot.watcher.feed(slot.utf8.decode(b"", final=True))
        return Generation(
            text=slot.watcher.text,
            prompt_tokens=len(slot.job.tokens),
            decoded_prompt_tokens=len(slot.job.tokens) - slot.job.boundary + slot.prefix_decoded,
            generated_tokens=slot.generated,
            seconds=time.perf_counter() - slot.began,
            decode_seconds=slot.spent,
            stop_reason=reason,
            guessed_tokens=slot.guessed,
            prompt_seconds=slot.prompt_spent,
        )


def template_stream(parallel: int) -> int:
    """The stream that holds the category prefix: one of its own beside `parallel` > 1
    question streams, the question's own with one at a time."""
    return parallel if parallel > 1 else 0


def _commit(slots: dict[int, _Slot]) -> None:
    """The batch was decoded: each slot's pending tokens are now in the KV cache."""
    for slot in slots.values():
        slot.pos += len(slot.pending)
        slot.pending = []
