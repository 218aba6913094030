"""Several questions decoding together in one llama.cpp context (continuous batching).

The category prefix is decoded once (or loaded from the prefix cache) into a template
sequence; each question's sequence starts as a copy of it (llama_memory_seq_cp shares
the cells in the unified KV cache), decodes its own suffix, then one token per step
alongside the others. A finished sequence leaves and the next question takes its slot
at once. When the KV cache is full the newest sequence is put back in the queue and
the batch goes on with fewer.
"""

from __future__ import annotations

import codecs
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as L

from mmlupro_local.engine import EngineError, Generation, GenerationSettings
from mmlupro_local.extract import in_open_think_block
from mmlupro_local.stopping import StopWatcher


@dataclass
class _Job:
    index: int
    tokens: list[int]
    boundary: int
    thinking: bool


@dataclass
class _Slot:
    seq: int
    job: _Job
    watcher: StopWatcher
    pending: list[int]  # tokens still to decode: the suffix first, then one token a step
    pos: int
    began: float
    utf8: Any = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    generated: int = 0
    spent: float = 0.0
    logit_at: int = -1  # this step's batch index holding the slot's next-token logits


class BatchedDecoder:
    """Runs jobs in slots 0..n-1 with the template prefix in sequence n."""

    def __init__(self, engine: Any, parallel: int) -> None:
        self.e = engine
        self.parallel = parallel
        self.template = parallel
        self.template_tokens: list[int] = []
        self.decode_seconds = 0.0
        self.wall_seconds = 0.0

    def run(
        self,
        prompts: Sequence[tuple[str, int]],
        settings: GenerationSettings,
        should_stop: Callable[[], bool],
    ) -> Iterator[tuple[int, Generation]]:
        began = time.perf_counter()
        jobs = [self._job(i, text, chars) for i, (text, chars) in enumerate(prompts)]
        for group in _groups(jobs):
            yield from self._run_group(group, settings, should_stop)
            if should_stop():
                break
        self.wall_seconds += time.perf_counter() - began

    def _job(self, index: int, text: str, prefix_chars: int) -> _Job:
        tokens, boundary = self.e.split_prompt(text, prefix_chars)
        return _Job(index, tokens, boundary, in_open_think_block(text))

    def measure(self, slots: int, prefix_len: int = 1300, steps: int = 24) -> tuple[float, float]:
        """Raw throughput of this context: prompt tokens/s decoding a prefix, then
        generation tokens/s with every slot sharing it, one token per slot per step."""
        prefix = [100 + i % 500 for i in range(prefix_len)]
        L.llama_memory_clear(self._memory(), True)
        self.template_tokens = []
        began = time.perf_counter()
        self._decode_prefix(prefix)
        prompt_rate = prefix_len / (time.perf_counter() - began)
        for seq in range(slots):
            L.llama_memory_seq_cp(self._memory(), self.template, seq, -1, -1)
        began = time.perf_counter()
        for step in range(steps):
            self._decode([(200 + step, prefix_len + step, seq, True) for seq in range(slots)])
        rate = slots * steps / (time.perf_counter() - began)
        L.llama_memory_clear(self._memory(), True)
        return prompt_rate, rate

    def _memory(self) -> Any:
        return L.llama_get_memory(self.e._ctx)

    def _ensure_template(self, prefix: list[int]) -> int:
        """Put the prefix in the template sequence; returns the tokens decoded for it."""
        if self.template_tokens == prefix:
            return 0
        L.llama_memory_clear(self._memory(), True)
        self.e._kv = []
        self.template_tokens = prefix
        if self.e._load_prefix(prefix, self.template):
            return 0
        self._decode_prefix(prefix)
        self.e._save_prefix(prefix, self.template)
        return len(prefix)

    def _decode_prefix(self, prefix: list[int]) -> None:
        size = self.e.settings.batch
        for offset in range(0, len(prefix), size):
            chunk = prefix[offset : offset + size]
            entries = [(token, offset + i, self.template, False) for i, token in enumerate(chunk)]
            if self._decode(entries) != 0:
                raise EngineError("the context is too small for the prompt prefix; raise --ctx")

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> int:
        batch = self.e._batch
        for i, (token, pos, seq, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        batch.n_tokens = len(entries)
        began = time.perf_counter()
        rc = int(L.llama_decode(self.e._ctx, batch))
        self.decode_seconds += time.perf_counter() - began
        if rc < 0 or rc > 1:
            raise EngineError(f"llama_decode failed (code {rc})")
        return rc

    def _run_group(
        self, group: list[_Job], settings: GenerationSettings, should_stop: Callable[[], bool]
    ) -> Iterator[tuple[int, Generation]]:
        boundary = group[0].boundary
        before = self.decode_seconds
        prefix_decoded = self._ensure_template(group[0].tokens[:boundary])
        prefix_seconds = self.decode_seconds - before
        queue = deque(group)
        slots: dict[int, _Slot] = {}
        limit = self.parallel
        memory = self._memory()
        while queue or slots:
            if should_stop():
                for slot in slots.values():
                    L.llama_memory_seq_rm(memory, slot.seq, -1, -1)
                return
            while queue and len(slots) < limit:
                job = queue.popleft()
                seq = min(set(range(self.parallel)) - set(slots))
                L.llama_memory_seq_cp(memory, self.template, seq, -1, -1)
                slots[seq] = _Slot(seq, job, StopWatcher(settings, started_thinking=job.thinking),
                                   job.tokens[boundary:], boundary, time.perf_counter())  # fmt: skip
            entries = self._plan(slots)
            step = time.perf_counter()
            if self._decode(entries) == 1:  # no room in the KV cache: shed the newest
                if len(slots) == 1:
                    raise EngineError("the context is too small for one question; raise --ctx")
                newest = max(slots.values(), key=lambda s: s.began)
                L.llama_memory_seq_rm(memory, newest.seq, -1, -1)
                queue.appendleft(newest.job)
                del slots[newest.seq]
                limit = len(slots)
                continue
            spent = (time.perf_counter() - step) / len(slots)
            for seq in sorted(slots):
                slot = slots[seq]
                slot.spent += spent
                reason = self._advance(slot, settings)
                if reason is not None:
                    L.llama_memory_seq_rm(memory, seq, -1, -1)
                    del slots[seq]
                    slot.spent += prefix_seconds
                    yield slot.job.index, self._result(slot, reason, boundary, prefix_decoded)
                    prefix_decoded, prefix_seconds = (
                        0,
                        0.0,
                    )  # counted once, with the first to finish

    def _plan(self, slots: dict[int, _Slot]) -> list[tuple[int, int, int, bool]]:
        """This step's batch: every generating slot's token, then suffix tokens of the
        slots still reading their prompt, as far as the batch size allows."""
        room = self.e.settings.batch
        entries: list[tuple[int, int, int, bool]] = []
        reading = [s for s in slots.values() if len(s.pending) > 1 or s.generated == 0]
        writing = [s for s in slots.values() if s not in reading]
        for slot in sorted(writing, key=lambda s: s.seq) + sorted(reading, key=lambda s: s.seq):
            take = slot.pending[: room - len(entries)]
            if not take:
                slot.logit_at = -1
                continue
            done = len(take) == len(slot.pending)
            for i, token in enumerate(take):
                entries.append((token, slot.pos + i, slot.seq, done and i == len(take) - 1))
            slot.logit_at = len(entries) - 1 if done else -1
            slot.pos += len(take)
            del slot.pending[: len(take)]
        return entries

    def _advance(self, slot: _Slot, settings: GenerationSettings) -> str | None:
        if slot.logit_at < 0:
            return None  # still reading its prompt
        token = L.llama_sampler_sample(self.e._sampler, self.e._ctx, slot.logit_at)
        if L.llama_vocab_is_eog(self.e._vocab, token):
            return "eos"
        slot.generated += 1
        stopped = slot.watcher.feed(slot.utf8.decode(self.e._piece_bytes(token)))
        if stopped:
            return stopped
        if slot.generated >= settings.max_tokens:
            return "length"
        slot.pending = [token]
        return None

    def _result(self, slot: _Slot, reason: str, boundary: int, prefix_decoded: int) -> Generation:
        if reason in ("length", "eos"):
            slot.watcher.feed(slot.utf8.decode(b"", final=True))
        return Generation(
            text=slot.watcher.text,
            prompt_tokens=len(slot.job.tokens),
            decoded_prompt_tokens=len(slot.job.tokens) - boundary + prefix_decoded,
            generated_tokens=slot.generated,
            seconds=time.perf_counter() - slot.began,
            decode_seconds=slot.spent,
            stop_reason=reason,
        )


def _groups(jobs: list[_Job]) -> Iterator[list[_Job]]:
    """Runs of consecutive jobs sharing a prefix (a category, in run order)."""
    group: list[_Job] = []
    for job in jobs:
        if group and job.tokens[: job.boundary] != group[0].tokens[: group[0].boundary]:
            yield group
            group = []
        group.append(job)
    if group:
        yield group
