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
import ctypes
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import llama_cpp as L

from mmlupro_local.engine import (
    EngineError,
    EngineSettings,
    Generation,
    GenerationSettings,
    llamalog,
)
from mmlupro_local.engine.batched import BatchedDecoder
from mmlupro_local.engine.prefix_cache import PrefixCache, cache_key
from mmlupro_local.model.gguf import read_gguf
from mmlupro_local.task.extract import in_open_think_block
from mmlupro_local.task.stopping import StopWatcher

_KV_TYPES = {"f16": L.GGML_TYPE_F16, "q8_0": L.GGML_TYPE_Q8_0, "q4_0": L.GGML_TYPE_Q4_0}


def _never() -> bool:
    return False


class LlamaEngine:
    def __init__(self, model: Path, settings: EngineSettings) -> None:
        """Load the weights; the context comes later (open_context), once the prompts'
        token counts say how large it must be."""
        self.info = read_gguf(model)  # a wrong or truncated file fails here, clearly
        self.settings = settings
        llamalog.install()
        L.llama_backend_init()
        params = L.llama_model_default_params()
        params.n_gpu_layers = settings.gpu_layers if settings.gpu_layers >= 0 else 999
        self._model = L.llama_model_load_from_file(str(model).encode(), params)
        if not self._model:
            detail = llamalog.recent("error") or llamalog.recent()
            raise EngineError(
                f"llama.cpp could not load {model.name} (architecture "
                f"{self.info.architecture!r}): {detail or 'no reason given'}. "
                "The model may need a newer llama-cpp-python."
            )
        self._vocab = L.llama_model_get_vocab(self._model)
        self._ctx: Any = None
        self._parallel = 1
        self._batched: BatchedDecoder | None = None
        self._batch = L.llama_batch_init(settings.batch, 0, 1)
        self._sampler = L.llama_sampler_init_greedy()
        self._kv: list[int] = []  # tokens whose keys and values are in the cache
        self._bos_text = self.info.token("bos")
        self._prefix_cache: PrefixCache | None = None
        self._prefix_identity = ""
        self._piece = ctypes.create_string_buffer(256)

    def open_context(self, n_ctx: int, parallel: int = 1) -> None:
        """A context of n_ctx tokens; with parallel > 1 (or lookup), one sequence per
        question slot plus a template sequence, in a unified KV cache they share cells of."""
        if self._ctx:
            L.llama_free(self._ctx)
        self.settings = replace(self.settings, n_ctx=n_ctx)
        self._parallel = parallel
        batched = parallel > 1 or self.settings.lookup > 0
        self._ctx = self._new_context(self.settings, batched)
        self._kv = []
        self._batched = BatchedDecoder(self, parallel) if batched else None

    def _new_context(self, settings: EngineSettings, batched: bool) -> Any:
        params = L.llama_context_default_params()
        params.n_ctx = settings.n_ctx
        params.n_batch = settings.batch
        params.n_ubatch = settings.batch
        params.n_seq_max = self._parallel + 1 if batched else 1
        # llama.cpp reserves an output row per sequence and asserts it fits this bound
        params.n_outputs_max = max(settings.batch, params.n_seq_max)
        params.kv_unified = batched
        params.n_threads = settings.threads
        params.n_threads_batch = settings.threads
        params.no_perf = True
        if settings.kv_type != "f16" and not settings.flash_attn:
            raise EngineError(
                f"--kv-type {settings.kv_type} needs flash attention; drop --no-flash-attn"
            )
        params.type_k = params.type_v = _KV_TYPES[settings.kv_type]
        params.flash_attn_type = (
            L.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if settings.flash_attn
            else L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        ctx = L.llama_init_from_model(self._model, params)
        if not ctx:
            raise EngineError(
                f"llama.cpp could not create a context of {settings.n_ctx} tokens "
                f"({llamalog.recent('error') or 'probably out of memory'}); try a smaller --ctx"
            )
        return ctx

    # -- text <-> tokens ---------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        add_special = not (self._bos_text and text.startswith(self._bos_text))
        capacity = len(data) + 16
        for _ in range(2):
            buffer = (L.llama_token * capacity)()
            n = L.llama_tokenize(self._vocab, data, len(data), buffer, capacity, add_special, True)
            if n >= 0:
                return list(buffer[:n])
            capacity = -n
        raise EngineError("tokenization failed")

    def split_prompt(self, prompt: str, prefix_chars: int) -> tuple[list[int], int]:
        """The prompt's tokens, and how many of them belong to the shared prefix."""
        tokens = self.tokenize(prompt)
        prefix = self.tokenize(prompt[:prefix_chars]) if prefix_chars else []
        boundary = _common_prefix(prefix, tokens)
        # the last prompt token must be decoded to get logits
        return tokens, min(boundary, len(tokens) - 1)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def _piece_bytes(self, token: int) -> bytes:
        n = L.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        if n < 0:  # a piece longer than the buffer: grow it, never drop text
            self._piece = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        return self._piece.raw[:n]

    # -- decoding ----------------------------------------------------------------------

    def _decode(self, tokens: Sequence[int], start: int, *, logits_last: bool) -> float:
        """Decode tokens at positions start.. in batches; returns seconds in llama_decode."""
        spent = 0.0
        batch = self._batch
        size = self.settings.batch
        for offset in range(0, len(tokens), size):
            chunk = tokens[offset : offset + size]
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = start + offset + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = False
            if logits_last and offset + len(chunk) == len(tokens):
                batch.logits[len(chunk) - 1] = True
            batch.n_tokens = len(chunk)
            began = time.perf_counter()
            rc = L.llama_decode(self._ctx, batch)
            spent += time.perf_counter() - began
            if rc != 0:
                self._reset_cache()
                raise EngineError(
                    f"llama_decode failed (code {rc}) at position {start + offset}: "
                    + ("the context is full; raise --ctx" if rc == 1 else llamalog.recent("error"))
                )
            self._kv.extend(chunk)
        return spent

    def _reset_cache(self) -> None:
        L.llama_memory_clear(L.llama_get_memory(self._ctx), True)
        self._kv = []

    def _prepare(self, tokens: list[int], boundary: int) -> tuple[int, float]:
        """Put tokens[:boundary] in the cache (reused when it is already there) and decode
        the rest; returns how many prompt tokens were decoded and the seconds it took."""
        spent = 0.0
        decoded = 0
        if boundary and self._kv[:boundary] == tokens[:boundary]:
            L.llama_memory_seq_rm(L.llama_get_memory(self._ctx), 0, boundary, -1)
            del self._kv[boundary:]
        else:
            self._reset_cache()
            if not self._load_prefix(tokens[:boundary], 0):
                spent += self._decode(tokens[:boundary], 0, logits_last=False)
                decoded += boundary
                self._save_prefix(tokens[:boundary], 0)
        spent += self._decode(tokens[boundary:], boundary, logits_last=True)
        return decoded + len(tokens) - boundary, spent

    # -- persistent prefix cache -------------------------------------------------------

    def use_prefix_cache(self, cache: PrefixCache, identity: str) -> None:
        """Save and reuse prefix KV states; `identity` names everything that shapes
        them besides the tokens (model file, engine settings, build)."""
        self._prefix_cache = cache
        self._prefix_identity = identity

    def _prefix_key(self, tokens: Sequence[int]) -> str:
        return cache_key(self._prefix_identity, L.__version__, self.settings.batch, self.settings.flash_attn,
                         self.settings.gpu_layers, self.settings.kv_type, list(tokens))  # fmt: skip

    def _load_prefix(self, tokens: Sequence[int], seq: int) -> bool:
        if self._prefix_cache is None or not tokens:
            return False
        payload = self._prefix_cache.load(self._prefix_key(tokens))
        if payload is None:
            return False
        buffer = (ctypes.c_uint8 * len(payload)).from_buffer_copy(payload)
        if L.llama_state_seq_set_data(self._ctx, buffer, len(payload), seq) == 0:
            L.llama_memory_seq_rm(L.llama_get_memory(self._ctx), seq, -1, -1)
            return False  # a state llama.cpp refuses is ignored (and rewritten next time)
        if seq == 0:
            self._kv = list(tokens)
        return True

    def _save_prefix(self, tokens: Sequence[int], seq: int) -> None:
        if self._prefix_cache is None or not tokens:
            return
        size = L.llama_state_seq_get_size(self._ctx, seq)
        buffer = (ctypes.c_uint8 * size)()
        written = L.llama_state_seq_get_data(self._ctx, buffer, size, seq)
        if written:
            self._prefix_cache.save(self._prefix_key(tokens), ctypes.string_at(buffer, written))

    def generate(
        self,
        prompt: str,
        prefix_chars: int,
        settings: GenerationSettings,
        should_stop: Callable[[], bool] = _never,
    ) -> Generation:
        if not self._ctx:
            raise EngineError("open_context() must come before generate()")
        began = time.perf_counter()
        tokens, boundary = self.split_prompt(prompt, prefix_chars)
        if len(tokens) + settings.max_tokens > self.settings.n_ctx:
            raise EngineError(
                f"the prompt ({len(tokens)} tokens) plus the budget ({settings.max_tokens}) "
                f"does not fit the context ({self.settings.n_ctx}); raise --ctx"
            )
        decoded, spent = self._prepare(tokens, boundary)
        prompt_spent = spent
        watcher = StopWatcher(settings, started_thinking=in_open_think_block(prompt))
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        reason = "length"
        generated = 0
        while generated < settings.max_tokens:
            if should_stop():
                reason = "interrupted"
                break
            token = L.llama_sampler_sample(self._sampler, self._ctx, -1)
            if L.llama_vocab_is_eog(self._vocab, token):
                reason = "eos"
                break
            generated += 1
            stopped = watcher.feed(utf8.decode(self._piece_bytes(token)))
            if stopped:
                reason = stopped
                break
            if generated < settings.max_tokens:
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
        prompts: Sequence[tuple[str, int]],
        settings: GenerationSettings,
        should_stop: Callable[[], bool] = _never,
    ) -> Iterator[tuple[int, Generation]]:
        """(index, generation) for each (prompt, prefix_chars), in the order they finish;
        stops early, leaving the rest undone, once should_stop() is true."""
        if self._batched is None:
            for index, (text, prefix_chars) in enumerate(prompts):
                generation = self.generate(text, prefix_chars, settings, should_stop)
                if generation.stop_reason == "interrupted":
                    return
                yield index, generation
            return
        yield from self._batched.run(prompts, settings, should_stop)

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
            "llama_cpp_python": L.__version__,
            "system_info": L.llama_print_system_info().decode("utf-8", "replace").strip(),
            "gpu_offload_supported": bool(L.llama_supports_gpu_offload()),
            "n_ctx": self.settings.n_ctx,
            "threads": self.settings.threads,
            "batch": self.settings.batch,
            "gpu_layers": self.settings.gpu_layers,
            "flash_attn": self.settings.flash_attn,
            "kv_type": self.settings.kv_type,
            "parallel": self._parallel,
            "lookup": self.settings.lookup,
            "n_ctx_train": L.llama_model_n_ctx_train(self._model),
        }

    def close(self) -> None:
        if getattr(self, "_model", None):
            if self._ctx:
                L.llama_free(self._ctx)
            L.llama_sampler_free(self._sampler)
            L.llama_batch_free(self._batch)
            L.llama_model_free(self._model)
            self._ctx = None
            self._model = None

    def __enter__(self) -> LlamaEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
