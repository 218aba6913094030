"""The llama.cpp engine, on llama-cpp-python's low-level API.

Why not `Llama.create_completion`: it detokenizes the whole completion again at every
token (quadratic), drops pieces longer than 32 bytes, and its defaults (16 tokens,
temperature 0.8, n_ctx 512) are wrong for this job. Here every setting is explicit,
decoding is greedy, text is detokenized incrementally, and the KV cache keeps the
category prefix between questions.

Reproducibility: a prompt's prefix (up to the question) is always decoded as its own
run of batches from position 0, and the question after it, whether or not the prefix
was already in the cache. The computation for a question is then the same in a fresh
run, a resumed run or mid-way through a category.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mmlupro_local.engine import (
    EngineError,
    EngineSettings,
    Generation,
    Job,
    NewWatcher,
    StopReason,
    Watcher,
    never_stop,
)
from mmlupro_local.engine.batched import BatchedDecoder
from mmlupro_local.engine.handles import (
    LlamaContext,
    LlamaModel,
    common_prefix,
    log_softmax,
    system_info,
)
from mmlupro_local.engine.prefix_cache import PrefixCache
from mmlupro_local.engine.prefixes import SavedPrefixes
from mmlupro_local.model.gguf import read_gguf


class LlamaEngine:
    def __init__(self, model: Path, settings: EngineSettings) -> None:
        """Load the weights; the context comes later (open_context), once the prompts'
        token counts say how large it must be."""
        self.info = read_gguf(model)  # a wrong or truncated file fails here, clearly
        self.settings = settings
        self.model = LlamaModel(
            model,
            settings.gpu_layers,
            architecture=self.info.architecture,
            bos_text=self.info.token("bos"),
        )
        self.ctx: LlamaContext | None = None
        self._parallel = 1
        self._batched: BatchedDecoder | None = None
        self._kv: list[int] = []  # tokens whose keys and values are in sequence 0's cells
        self.prefixes = SavedPrefixes(None, "", settings)

    def open_context(self, n_ctx: int, parallel: int = 1) -> None:
        """A context of n_ctx tokens; with parallel > 1 (or lookup), one sequence per
        question slot plus a template sequence, in a unified KV cache they share cells of."""
        if self.ctx is not None:
            self.ctx.close()
            self.ctx = None
        self.settings = replace(self.settings, n_ctx=n_ctx)
        self.prefixes.settings = self.settings
        self._parallel = parallel
        batched = parallel > 1 or self.settings.lookup > 0
        self.ctx = LlamaContext(self.model, self.settings, parallel + 1 if batched else 1)
        self._kv = []
        self._batched = (
            BatchedDecoder(self.model, self.ctx, self.settings, self.prefixes, parallel)
            if batched
            else None
        )

    def _context(self) -> LlamaContext:
        if self.ctx is None:
            raise EngineError("open_context() must come before generating")
        return self.ctx

    # -- text <-> tokens ---------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenize(text))

    # -- decoding ----------------------------------------------------------------------

    def _decode(self, tokens: Sequence[int], start: int, *, logits_last: bool) -> float:
        """Decode tokens at positions start.. of sequence 0 in batches; returns the
        seconds spent in llama_decode."""
        ctx = self._context()
        before = ctx.decode_seconds
        size = self.settings.batch
        for offset in range(0, len(tokens), size):
            chunk = tokens[offset : offset + size]
            last = logits_last and offset + len(chunk) == len(tokens)
            entries = [
                (token, start + offset + i, 0, last and i == len(chunk) - 1)
                for i, token in enumerate(chunk)
            ]
            try:
                fitted = ctx.decode(entries)
            except EngineError:
                self._reset_cache()
                raise
            if not fitted:
                self._reset_cache()
                raise EngineError(
                    f"the context is full at position {start + offset}", setting="n_ctx"
                )
            self._kv.extend(chunk)
        return ctx.decode_seconds - before

    def _reset_cache(self) -> None:
        self._context().clear()
        self._kv = []

    def _prepare(self, tokens: list[int], boundary: int) -> tuple[int, float]:
        """Put tokens[:boundary] in the cache (reused when it is already there) and decode
        the rest; returns how many prompt tokens were decoded and the seconds it took."""
        spent = 0.0
        decoded = 0
        if boundary and self._kv[:boundary] == tokens[:boundary]:
            self._context().remove(0, boundary)
            del self._kv[boundary:]
        else:
            self._reset_cache()
            if self.prefixes.load(self._context(), tokens[:boundary], 0):
                self._kv = list(tokens[:boundary])
            else:
                spent += self._decode(tokens[:boundary], 0, logits_last=False)
                decoded += boundary
                self.prefixes.save(self._context(), tokens[:boundary], 0)
        spent += self._decode(tokens[boundary:], boundary, logits_last=True)
        return decoded + len(tokens) - boundary, spent

    # -- persistent prefix cache -------------------------------------------------------

    def use_prefix_cache(self, cache: PrefixCache, identity: str) -> None:
        """Save and reuse prefix KV states; `identity` names everything that shapes
        them besides the tokens (model file, engine settings, build)."""
        self.prefixes.cache = cache
        self.prefixes.identity = identity

    def generate(
        self,
        prompt: str,
        prefix_chars: int,
        *,
        max_tokens: int,
        watcher: Watcher,
        should_stop: Callable[[], bool] = never_stop,
    ) -> Generation:
        ctx = self._context()
        began = time.perf_counter()
        tokens, boundary = self.model.split_prompt(prompt, prefix_chars)
        if len(tokens) + max_tokens > self.settings.n_ctx:
            raise EngineError(
                f"the prompt ({len(tokens)} tokens) plus the budget ({max_tokens}) "
                f"does not fit the context ({self.settings.n_ctx})",
                setting="n_ctx",
            )
        decoded, spent = self._prepare(tokens, boundary)
        prompt_spent = spent
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        reason: StopReason = "length"
        generated = 0
        forcing: list[int] = []  # tokens the watcher forces, taken instead of sampling
        while generated < max_tokens:
            if should_stop():
                reason = "interrupted"
                break
            token = forcing.pop(0) if forcing else ctx.sample()
            if self.model.is_end(token):
                reason = "eos"
                break
            generated += 1
            stopped = watcher.feed(utf8.decode(self.model.piece(token)))
            if stopped:
                reason = stopped
                break
            text = watcher.take_forced()
            if text:
                forcing = self.model.tokenize(text, bos=False)
            if generated < max_tokens:
                spent += self._decode([token], len(self._kv), logits_last=True)
        if reason in ("length", "eos"):
            watcher.feed(utf8.decode(b"", final=True))
        return Generation(
            text=watcher.text,
            prompt_tokens=len(tokens),
            decoded_prompt_tokens=decoded,
            generated_tokens=generated,
            seconds=time.perf_counter() - began,
            decode_seconds=spent,
            stop_reason=reason,
            prompt_seconds=prompt_spent,
        )

    def generate_many(
        self,
        jobs: Sequence[Job],
        *,
        max_tokens: int,
        new_watcher: NewWatcher,
        should_stop: Callable[[], bool] = never_stop,
    ) -> Iterator[tuple[int, Generation]]:
        """(index, generation) for each job, in the order they finish; stops early,
        leaving the rest undone, once should_stop() is true."""
        if self._batched is None:
            for index, job in enumerate(jobs):
                generation = self.generate(
                    job.text,
                    job.prefix_chars,
                    max_tokens=max_tokens,
                    watcher=new_watcher(index),
                    should_stop=should_stop,
                )
                if generation.stop_reason == "interrupted":
                    return
                yield index, generation
            return
        yield from self._batched.run(jobs, max_tokens, new_watcher, should_stop)

    def score_many(
        self, jobs: Sequence[Job], *, should_stop: Callable[[], bool] = never_stop
    ) -> Iterator[tuple[int, Generation]]:
        for index, job in enumerate(jobs):
            if should_stop():
                return
            yield index, self.score(job)

    def score(self, job: Job) -> Generation:
        """Each choice's summed log-probability as the continuation of job.text, split as
        lm-evaluation-harness splits it: text + choice tokenized whole, the choice's
        tokens being those past the count of the text's own tokens."""
        began = time.perf_counter()
        tokens, boundary = self.model.split_prompt(job.text, job.prefix_chars)
        n = len(tokens)
        wholes = [self.model.tokenize(job.text + choice) for choice in job.choices]
        needed = max(len(whole) for whole in wholes)
        if needed > self.settings.n_ctx:
            raise EngineError(
                f"the prompt and its longest choice ({needed} tokens) do not fit "
                f"the context ({self.settings.n_ctx})",
                setting="n_ctx",
            )
        decoded, spent = 0, 0.0
        first: dict[tuple[int, ...], Any] = {}  # context tokens -> log-probs of the next token
        scores = []
        for choice, whole in zip(job.choices, wholes, strict=True):
            context, continuation = whole[:n], whole[n:]
            if not continuation:
                raise EngineError(f"the choice {choice!r} adds no token to the prompt")
            if tuple(context) not in first:
                # the prefix kept in the cache, as far as this context agrees with it
                d, s = self._prepare(context, common_prefix(context, tokens[:boundary]))
                decoded, spent = decoded + d, spent + s
                first[tuple(context)] = log_softmax(self._context().logits(-1, self.model.n_vocab))
            total = float(first[tuple(context)][continuation[0]])
            if len(continuation) > 1:  # rare: a choice of several tokens
                total, extra = self._score_rest(continuation, n, total)
                spent += extra
            scores.append(total)
        seconds = time.perf_counter() - began
        return Generation(
            text="",
            prompt_tokens=n,
            decoded_prompt_tokens=decoded,
            generated_tokens=0,
            seconds=seconds,
            decode_seconds=spent,
            stop_reason="scored",
            prompt_seconds=spent,
            choice_logprobs=tuple(scores),
        )

    def _score_rest(self, continuation: list[int], start: int, total: float) -> tuple[float, float]:
        """Add the log-probs of a choice's later tokens (decoded after the context, then
        dropped again); returns the sum and the seconds spent."""
        ctx = self._context()
        before = ctx.decode_seconds
        entries = [(t, start + i, 0, True) for i, t in enumerate(continuation[:-1])]
        if not ctx.decode(entries):
            raise EngineError(f"the context is full at position {start}", setting="n_ctx")
        for row, token in enumerate(continuation[1:]):
            total += float(log_softmax(ctx.logits(row, self.model.n_vocab))[token])
        ctx.remove(0, start)
        return total, ctx.decode_seconds - before

    def measure_throughput(
        self, widths: Sequence[int], guesses: int
    ) -> tuple[float, dict[int, float], float]:
        """(prompt tokens/s, generation tokens/s by number of sequences, tokens/s checking
        `guesses` guesses per step); needs a context opened with parallel >= max(widths, 2)."""
        if self._batched is None or self._parallel < max(widths):
            raise EngineError("measure_throughput needs open_context(n_ctx, parallel >= widths)")
        return self._batched.measure(widths, guesses)

    def describe(self) -> dict[str, object]:
        return {
            **system_info(),
            "n_ctx": self.settings.n_ctx,
            "threads": self.settings.threads,
            "batch": self.settings.batch,
            "gpu_layers": self.settings.gpu_layers,
            "flash_attn": self.settings.flash_attn,
            "kv_type": self.settings.kv_type,
            "parallel": self._parallel,
            "lookup": self.settings.lookup,
            "n_ctx_train": self.model.n_ctx_train,
        }

    def close(self) -> None:
        if self.ctx is not None:
            self.ctx.close()
            self.ctx = None
        self.model.close()

    def __enter__(self) -> LlamaEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
