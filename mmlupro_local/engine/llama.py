"""The llama.cpp engine, on llama-cpp-python's low-level API.

Why not `Llama.create_completion`: it detokenizes the whole completion again at every
token (quadratic), drops pieces longer than 32 bytes, and its defaults (16 tokens,
temperature 0.8, n_ctx 512) are wrong for this job. Here every setting is explicit,
decoding is greedy, text is detokenized incrementally, and the KV cache keeps the
category prefix between questions.

Reproducibility: every decode is laid out canonically (engine.shapes) in a KV stream
of the question's own, so a token's logits are the same whatever else is decoded with
it: one question at a time or several, with or without lookup guesses, a prefix decoded
or loaded from the cache, a fresh run or a resumed one.
"""

from __future__ import annotations

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
    Watcher,
    never_stop,
)
from mmlupro_local.engine.batched import BatchedDecoder
from mmlupro_local.engine.draft import DraftModel, check_vocabulary
from mmlupro_local.engine.handles import (
    LlamaContext,
    LlamaModel,
    backend,
    common_prefix,
    log_softmax,
    system_info,
)
from mmlupro_local.engine.prefix_cache import PrefixCache
from mmlupro_local.engine.prefixes import SavedPrefixes
from mmlupro_local.engine.shapes import rule_for, streams
from mmlupro_local.model.fingerprint import model_sha256
from mmlupro_local.model.gguf import read_gguf


class LlamaEngine:
    def __init__(self, model: Path, settings: EngineSettings) -> None:
        """Load the weights; the context comes later (open_context), once the prompts'
        token counts say how large it must be."""
        self.info = read_gguf(model)  # a wrong or truncated file fails here, clearly
        self.settings = settings
        self.rule = rule_for(backend(settings.gpu_layers), settings.flash_attn)
        self.model = LlamaModel(
            model,
            settings.gpu_layers,
            architecture=self.info.architecture,
            bos_text=self.info.token("bos"),
            rule=self.rule,
        )
        self.ctx: LlamaContext | None = None
        self._parallel = 1
        self._batched: BatchedDecoder | None = None
        self._kv: list[int] = []  # tokens whose keys and values are in sequence 0's cells
        self.reach = 0  # what one question may reach, as open_context was asked
        self.prefixes = SavedPrefixes(None, "", settings, self.rule)
        self.draft: DraftModel | None = None
        if settings.draft is not None:  # a wrong file or vocabulary, before any decoding
            check_vocabulary(self.info, read_gguf(settings.draft))

    def open_context(self, n_ctx: int, parallel: int = 1) -> None:
        """A context in which one question may reach n_ctx tokens: a KV stream of that
        size (and room for a call's padding) per question slot, and one for the template."""
        if self.ctx is not None:
            self.ctx.close()
            self.ctx = None
        self.reach = n_ctx
        self.settings = replace(self.settings, n_ctx=self.rule.stream_cells(n_ctx))
        self.prefixes.settings = self.settings
        self._parallel = parallel
        self.ctx = LlamaContext(self.model, self.settings, streams(parallel), self.rule)
        self._kv = []
        if self.settings.draft is not None:
            if self.draft is not None:
                self.draft.close()
            self.draft = DraftModel(self.settings.draft, self.settings, parallel, self.rule)
            if self.prefixes.cache is not None:  # a context opened again keeps the cache
                self.use_prefix_cache(self.prefixes.cache, self.prefixes.identity)
        self._batched = BatchedDecoder(
            self.model, self.ctx, self.settings, self.prefixes, parallel, self.draft
        )

    def _context(self) -> LlamaContext:
        if self.ctx is None:
            raise EngineError("open_context() must come before generating")
        return self.ctx

    def _decoder(self) -> BatchedDecoder:
        if self._batched is None:
            raise EngineError("open_context() must come before generating")
        self._kv = []  # the decoder uses sequence 0 too
        return self._batched

    # -- text <-> tokens ---------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenize(text))

    # -- decoding ----------------------------------------------------------------------

    def _read(self, tokens: Sequence[int], start: int, *, logits_last: bool) -> float:
        """Read a prompt part at positions start.. of sequence 0 (the last token's logits
        kept if asked); returns the seconds spent in llama_decode."""
        ctx = self._context()
        before = ctx.decode_seconds
        entries = [
            (token, start + i, 0, logits_last and i == len(tokens) - 1)
            for i, token in enumerate(tokens)
        ]
        try:
            ctx.read(entries, keep_logits=logits_last)
        except EngineError:
            self._reset_cache()
            raise
        self._kv.extend(tokens)
        return ctx.decode_seconds - before

    def _reset_cache(self) -> None:
        self._context().remove(0)
        self._kv = []

    def _prepare(self, tokens: list[int], boundary: int) -> tuple[int, float]:
        """Put tokens[:boundary] in the cache (reused when it is already there) and decode
        the rest; returns how many prompt tokens were decoded and the seconds it took."""
        spent = 0.0
        decoded = 0
        if self._batched is not None:  # sequence 0 no longer holds what the decoder left
            self._batched.template_tokens = []
        if boundary and self._kv[:boundary] == tokens[:boundary]:
            self._context().remove(0, boundary)
            del self._kv[boundary:]
        else:
            self._reset_cache()
            if self.prefixes.load(self._context(), tokens[:boundary], 0):
                self._kv = list(tokens[:boundary])
            else:
                spent += self._read(tokens[:boundary], 0, logits_last=False)
                decoded += boundary
                self.prefixes.save(self._context(), tokens[:boundary], 0)
        spent += self._read(tokens[boundary:], boundary, logits_last=True)
        return decoded + len(tokens) - boundary, spent

    # -- persistent prefix cache -------------------------------------------------------

    def use_prefix_cache(self, cache: PrefixCache, identity: str) -> None:
        """Save and reuse prefix KV states; `identity` names everything that shapes
        them besides the tokens (model file, engine settings, build)."""
        self.prefixes.cache = cache
        self.prefixes.identity = identity
        if self.draft is not None and self.settings.draft is not None:
            self.draft.prefixes.cache = cache
            self.draft.prefixes.identity = model_sha256(self.settings.draft)

    def generate(
        self,
        prompt: str,
        prefix_chars: int,
        *,
        max_tokens: int,
        watcher: Watcher,
        should_stop: Callable[[], bool] = never_stop,
    ) -> Generation:
        """One prompt's answer (what generate_many gives it)."""
        job = Job(prompt, prefix_chars)
        for _, generation in self.generate_many(
            [job], max_tokens=max_tokens, new_watcher=lambda _: watcher, should_stop=should_stop
        ):
            return generation
        return Generation(watcher.text, 0, 0, 0, 0.0, 0.0, "interrupted")

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
        yield from self._decoder().run(jobs, max_tokens, new_watcher, should_stop)

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
                kept = common_prefix(context, tokens[:boundary])
                d, s = self._prepare(context, kept)
                decoded, spent = decoded + d, spent + s
                # the entry of the last token, in the decode of what follows `kept`
                first[tuple(context)] = log_softmax(self._context().logits(len(context) - kept - 1))
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
        ctx.decode(entries, keep_logits=True)
        for row, token in enumerate(continuation[1:]):
            total += float(log_softmax(ctx.logits(row))[token])
        ctx.remove(0, start)
        return total, ctx.decode_seconds - before

    def measure_throughput(
        self, widths: Sequence[int], guesses: int
    ) -> tuple[float, dict[int, float], float]:
        """(prompt tokens/s, generation tokens/s by number of sequences, tokens/s checking
        `guesses` guesses per step); needs a context opened with parallel >= max(widths, 2)."""
        if self._batched is None or self._parallel < max(widths) or self._parallel < 2:
            raise EngineError("measure_throughput needs open_context(n_ctx, parallel >= widths)")
        return self._batched.measure(widths, guesses)

    def describe(self) -> dict[str, object]:
        return {
            **system_info(),
            "n_ctx": self.reach,  # what one question may reach
            "kv_streams": streams(self._parallel),
            "threads": self.settings.threads,
            "shapes": self.rule.name,
            "gpu_layers": self.settings.gpu_layers,
            "flash_attn": self.settings.flash_attn,
            "kv_type": self.settings.kv_type,
            "parallel": self._parallel,
            "lookup": self.settings.lookup,
            "n_ctx_train": self.model.n_ctx_train,
            **({"draft": str(self.settings.draft)} if self.settings.draft else {}),
        }

    def draft_counts(self) -> tuple[int, int, float]:
        """(tokens the draft proposed, of them kept, seconds it spent), this engine's life."""
        d = self.draft
        return (d.proposed, d.kept, d.seconds) if d is not None else (0, 0, 0.0)

    def close(self) -> None:
        if self.ctx is not None:
            self.ctx.close()
            self.ctx = None
        if self.draft is not None:
            self.draft.close()
            self.draft = None
        self.model.close()

    def __enter__(self) -> LlamaEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
