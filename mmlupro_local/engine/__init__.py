"""The inference engine: the only package that imports llama_cpp.

`Engine` is what the runner needs; `engine.llama.LlamaEngine` is the real one, and tests
may use a scripted fake with the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from mmlupro_local.engine.prefix_cache import PrefixCache
from mmlupro_local.errors import MmluProError

STOP_REASONS = ("early", "stop", "eos", "length", "interrupted")
KV_TYPES = ("f16", "q8_0", "q4_0")
# With --parallel, how many category prefixes may be in the KV cache at once. More did
# not pay: 28 questions, --parallel 8, warm cache, 2 cores: 168 s with 1 live, 275 s with
# 2, 319 s with 3; a step costs about the same, but the other batch shapes sent more
# answers into loops to the budget (3,399 generated tokens with 1, 5,280 with 2).
LIVE_PREFIXES = 1


class EngineError(MmluProError):
    """The model could not be loaded or run."""


@dataclass(frozen=True)
class GenerationSettings:
    max_tokens: int = 2048
    stop: str = "Question:"
    early_stop: bool = True  # end once extraction level 1 has matched (lossless)
    extract_mode: str = "first"
    strip_thinking: bool = True


@dataclass(frozen=True)
class EngineSettings:
    threads: int
    n_ctx: int = 0  # set by open_context()
    gpu_layers: int = -1  # all
    batch: int = 512
    flash_attn: bool = False  # explicit: llama.cpp's "auto" would vary by backend
    kv_type: str = "f16"  # quantized V needs flash attention
    lookup: int = 0  # most guessed tokens checked per step (prompt-lookup decoding); 0: off


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    decoded_prompt_tokens: int  # prompt tokens actually decoded (not reused from the KV cache)
    generated_tokens: int
    seconds: float
    decode_seconds: float  # time inside llama_decode
    stop_reason: str
    guessed_tokens: int = 0  # generated tokens that were prompt-lookup guesses, confirmed
    prompt_seconds: float = 0.0  # the part of decode_seconds spent reading the prompt


class Engine(Protocol):
    def count_tokens(self, text: str) -> int: ...

    def open_context(self, n_ctx: int, parallel: int = 1) -> None: ...

    def use_prefix_cache(self, cache: PrefixCache, identity: str) -> None: ...

    def generate_many(
        self,
        prompts: Sequence[tuple[str, int]],
        settings: GenerationSettings,
        should_stop: Callable[[], bool] = ...,
    ) -> Iterator[tuple[int, Generation]]: ...

    def describe(self) -> dict[str, object]: ...

    def close(self) -> None: ...
