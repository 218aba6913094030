"""Several questions decoding together in one llama.cpp context (continuous batching).

The category prefix is decoded once (or loaded from the prefix cache) into a template
sequence; each question's sequence starts as a copy of it (llama_memory_seq_cp shares
the cells in the unified KV cache), decodes its own suffix, then one token per step
alongside the others. A finished sequence leaves and the next question takes its slot
at once. A question with another prefix (the next category) enters only while at most
`live_prefixes` prefixes are in use: the template then moves on to the new prefix and
the earlier questions finish on the cells they share (see LIVE_PREFIXES). When the
KV cache is full the newest sequence is put back in the queue and the batch goes on
with fewer. With `lookup`, a generating sequence also decodes guessed next tokens
(engine.lookup) and keeps those greedy decoding confirms.
"""

from __future__ import annotations

import codecs
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmlupro_local.engine import (
    LIVE_PREFIXES,
    EngineError,
    EngineSettings,
    Generation,
    Job,
    NewWatcher,
    StopReason,
    Watcher,
)
from mmlupro_local.engine.handles import Entry, LlamaContext, LlamaModel
from mmlupro_local.engine.lookup import Drafter
from mmlupro_local.engine.prefixes import SavedPrefixes


@dataclass
class _Job:
    index: int
    tokens: list[int]
    boundary: int
    prefix_id: int = 0  # jobs with equal prefixes share it


@dataclass
class _Slot:
    seq: int
    job: _Job
    watcher: Watcher
    pending: list[int]  # to decode: the suffix, then each step the next token and any guesses
    pos: int
    began: float
    drafter: Drafter | None = None
    utf8: Any = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    generated: int = 0
    guessed: int = 0  # of `generated`, confirmed guesses
    spent: float = 0.0
    prompt_spent: float = 0.0  # the part of spent while reading its prompt
    logit_at: int = -1  # this step's batch index of the slot's first logits row
    checking: list[int] = field(default_factory=list)  # guesses decoded this step
    prefix_decoded: int = 0  # prefix tokens decoded for this question (0: copied)
    forcing: list[int] = field(default_factory=list)  # forced tokens still to take


class BatchedDecoder:
    """Runs jobs in slots 0..n-1 with the template prefix in sequence n, at most
    `live_prefixes` distinct prefixes in the cache at once."""

    def __init__(
        self,
        model: LlamaModel,
        ctx: LlamaContext,
        settings: EngineSettings,
        prefixes: SavedPrefixes,
        parallel: int,
        live_prefixes: int = LIVE_PREFIXES,
    ) -> None:
        self.model = model
        self.ctx = ctx
        self.settings = settings
        self.prefixes = prefixes
        self.parallel = parallel
        self.live_prefixes = live_prefixes
        self.template = parallel
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
        ids: dict[tuple[int, ...], int] = {}
        for job in queue:
            job.prefix_id = ids.setdefault(tuple(job.tokens[: job.boundary]), len(ids))
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
        if not self._decode_prefix(prefix):
            raise EngineError("the context is too small for the measurement")
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
        all copies in one batch per chunk, with logits for every token."""
        for seq in range(width):
            self.ctx.copy(self.template, seq)
        began = time.perf_counter()
        pos = start
        for chunk in chunks:
            entries = [
                (token, pos + i, seq, True) for seq in range(width) for i, token in enumerate(chunk)
            ]
            if not self.ctx.decode(entries):
                raise EngineError("the context is too small for the measurement", setting="n_ctx")
            pos += len(chunk)
        rate = width * sum(map(len, chunks)) / (time.perf_counter() - began)
        for seq in range(width):
            self.ctx.remove(seq)
        return rate

    def _ensure_template(self, prefix: list[int]) -> int | None:
        """Put the prefix in the template sequence; returns the tokens decoded for it,
        None when the KV cache has no room for it now. Sequences copied from the earlier
        prefix keep its cells."""
        if self.template_tokens == prefix:
            return 0
        self.ctx.remove(self.template)
        self.template_tokens = []
        if self.prefixes.load(self.ctx, prefix, self.template):
            self.template_tokens = prefix
            return 0
        if not self._decode_prefix(prefix):
            self.ctx.remove(self.template)
            return None
        self.template_tokens = prefix
        self.prefixes.save(self.ctx, prefix, self.template)
        return len(prefix)

    def _decode_prefix(self, prefix: list[int]) -> bool:
        size = self.settings.batch
        for offset in range(0, len(prefix), size):
            chunk = prefix[offset : offset + size]
            entries = [(token, offset + i, self.template, False) for i, token in enumerate(chunk)]
            if not self.ctx.decode(entries):
                return False
        return True

    def _run_queue(
        self,
        queue: deque[_Job],
        max_tokens: int,
        new_watcher: NewWatcher,
        should_stop: Callable[[], bool],
    ) -> Iterator[tuple[int, Generation]]:
        slots: dict[int, _Slot] = {}
        limit = self.parallel
        while queue or slots:
            if should_stop():
                for slot in slots.values():
                    self.ctx.remove(slot.seq)
                return
            while queue and len(slots) < limit:
                job = queue[0]
                if job.tokens[: job.boundary] != self.template_tokens:
                    live = {s.job.prefix_id for s in slots.values()} | {job.prefix_id}
                    if len(live) > self.live_prefixes:
                        break  # wait for an earlier category's questions to finish
                seq = min(set(range(self.parallel)) - set(slots))
                admitted = self._admit(job, seq, new_watcher(job.index))
                if admitted is None:
                    if not slots:
                        raise EngineError(
                            "the context is too small for the prompt prefix", setting="n_ctx"
                        )
                    break  # no room for the new prefix until a question finishes
                slots[seq] = admitted
                queue.popleft()
            entries, takes = self._plan(slots)
            step = time.perf_counter()
            if not self.ctx.decode(entries):  # no room in the KV cache: shed the newest
                if len(slots) == 1:
                    raise EngineError("the context is too small for one question", setting="n_ctx")
                newest = max(slots.values(), key=lambda s: s.began)
                self.ctx.remove(newest.seq)
                queue.appendleft(newest.job)
                del slots[newest.seq]
                limit = len(slots)
                continue
            _commit(slots, takes)
            spent = (time.perf_counter() - step) / len(slots)
            for seq in sorted(slots):
                slot = slots[seq]
                slot.spent += spent
                if not _generating(slot):
                    slot.prompt_spent += spent
                reason = self._advance(slot, max_tokens)
                if reason is not None:
                    self.ctx.remove(seq)
                    del slots[seq]
                    limit = min(self.parallel, limit + 1)  # its cells are free again
                    yield slot.job.index, self._result(slot, reason)

    def _admit(self, job: _Job, seq: int, watcher: Watcher) -> _Slot | None:
        """A slot for the job, its sequence a copy of the template holding its prefix.
        The job that brings a new prefix is charged for decoding it."""
        before = self.decode_seconds
        prefix_decoded = self._ensure_template(job.tokens[: job.boundary])
        if prefix_decoded is None:
            return None
        self.ctx.copy(self.template, seq)
        slot = _Slot(
            seq, job, watcher, job.tokens[job.boundary :], job.boundary, time.perf_counter()
        )
        if self.settings.lookup:
            slot.drafter = Drafter(job.tokens, self.settings.lookup)
        slot.prefix_decoded = prefix_decoded
        slot.spent = slot.prompt_spent = self.decode_seconds - before
        return slot

    def _plan(self, slots: dict[int, _Slot]) -> tuple[list[Entry], dict[int, int]]:
        """This step's batch and how many pending tokens of each slot it holds: the
        tokens of every generating slot first (its next token and any guesses), then
        suffix tokens of the slots still reading their prompt, as far as the batch size
        allows. Entries go in seq order, so the same slots always make the same batch.
        Nothing is consumed until _commit: a batch llama.cpp refuses leaves slots as
        they were (only guesses beyond the batch room are dropped here)."""
        room = self.settings.batch
        ordered = sorted(slots.items())
        take: dict[int, int] = {}
        # stable sort: generating slots first, each group in seq order
        for _, slot in sorted(ordered, key=lambda item: not _generating(item[1])):
            if _generating(slot) and len(slot.pending) > room:  # guesses wait, not tokens
                del slot.pending[max(room, 1) :]
            take[slot.seq] = min(len(slot.pending), room)
            room -= take[slot.seq]
        entries: list[Entry] = []
        for seq, slot in ordered:
            n = take[seq]
            done = n > 0 and n == len(slot.pending)
            guesses = len(slot.pending) - 1 if _generating(slot) else 0
            first_logits = n - 1 - guesses if done else n  # guesses need theirs too
            slot.logit_at = len(entries) + first_logits if done else -1
            slot.checking = slot.pending[n - guesses : n] if done else []
            for i, token in enumerate(slot.pending[:n]):
                entries.append((token, slot.pos + i, seq, i >= first_logits))
        return entries, take

    def _advance(self, slot: _Slot, max_tokens: int) -> StopReason | None:
        """Sample the slot's next token, and check its guesses: each guess greedy
        decoding agrees with is kept, the first that differs is replaced by the token
        sampled there, and the cells of the guesses after it are dropped."""
        if slot.logit_at < 0:
            return None  # still reading its prompt
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
                slot.pending += slot.drafter.draft(max_tokens - slot.generated)
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


def _generating(slot: _Slot) -> bool:
    """Past its prompt: a sampled token (and any guesses after it) to decode."""
    return slot.generated > 0


def _commit(slots: dict[int, _Slot], takes: dict[int, int]) -> None:
    """The batch was decoded: what each slot put in it is now in the KV cache."""
    for seq, n in takes.items():
        if seq in slots:
            slots[seq].pos += n
            del slots[seq].pending[:n]
