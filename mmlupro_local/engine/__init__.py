"""The inference engine: the only package that imports llama_cpp.

It knows nothing of MMLU-Pro: it turns prompts into text, and the caller decides when a
generation ends by handing it a `Watcher` per job. `Engine` is what the runner needs;
`engine.llama.LlamaEngine` is the real one, and tests may use a scripted fake with the
same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

from mmlupro_local.engine.prefix_cache import PrefixCache
from mmlupro_local.errors import MmluProError

# "scored": no generation, the choices were scored (Engine.score_many)
StopReason = Literal["early", "stop", "eos", "length", "interrupted", "scored"]
KvType = Literal["f16", "q8_0", "q4_0"]
KV_TYPES: tuple[KvType, ...] = get_args(KvType)
CTX_STEP = 256  # llama.cpp pads the context to this; an unpadded n_ctx crashes later
MAX_LOOKUP = 64  # most prompt-lookup guesses a step may check


def round_ctx(n: int) -> int:
    return -(-n // CTX_STEP) * CTX_STEP


class EngineError(MmluProError):
    """The model could not be loaded or run. Messages use the engine's words; `setting`
    names the EngineSettings field (or "n_ctx") a user would change, for the CLI to
    name its flag."""

    def __init__(self, message: str, *, setting: str | None = None, after: str = "") -> None:
        super().__init__(message)
        self.setting = setting
        self.after = after  # what a user reads after the remedy (what is saved, how to resume)


@dataclass(frozen=True)
class EngineSettings:
    """Everything that shapes how the engine computes, declared once (the CLI reads its
    defaults from here)."""

    threads: int
    n_ctx: int = 0  # cells of one question's KV stream, set by open_context()
    gpu_layers: int = -1  # all
    # explicit: llama.cpp's "auto" would vary by backend; None (its auto) only where
    # forcing it is wrong (model/hardware.default_flash_attn)
    flash_attn: bool | None = True
    kv_type: KvType = "f16"  # quantized V needs flash attention
    lookup: int = 0  # most guessed tokens checked per step (prompt-lookup decoding); 0: off
    # a smaller model of the same vocabulary whose greedy guesses replace prompt lookup's
    draft: Path | None = None

    def __post_init__(self) -> None:
        if self.kv_type not in KV_TYPES:
            raise EngineError(f"unknown KV cache type {self.kv_type!r}", setting="kv_type")
        if self.kv_type != "f16" and self.flash_attn is False:
            raise EngineError(
                f"a {self.kv_type} KV cache needs flash attention", setting="flash_attn"
            )
        if self.threads < 1 or self.lookup < 0:
            raise EngineError("threads must be positive, lookup not negative")


class Watcher(Protocol):
    """Decides when a generation ends, from the text so far (the task's stop rules)."""

    @property
    def text(self) -> str:
        """The generated text, cut where the watcher stopped it."""
        ...

    def feed(self, piece: str) -> StopReason | None:
        """Add generated text; a reason ("stop", "early") when generation should end."""
        ...

    def take_forced(self) -> str:
        """Text the engine must decode next as if it had generated it (a think budget
        closing the block and leading into the answer), once; "" almost always."""
        ...


NewWatcher = Callable[[int], Watcher]  # a fresh watcher for the job at this index


@dataclass(frozen=True)
class Job:
    text: str
    prefix_chars: int  # the shared prefix (kept in the KV cache between jobs)
    # a server's chat endpoint gets the messages (its template renders them), not text
    messages: tuple[dict[str, str], ...] = ()
    tokens: int | None = None  # the prompt's length as counted beforehand, to check against
    choices: tuple[str, ...] = ()  # score_many: the continuations to score after text


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    decoded_prompt_tokens: int  # prompt tokens actually decoded (not reused from the KV cache)
    generated_tokens: int
    seconds: float
    decode_seconds: float  # time inside llama_decode
    stop_reason: StopReason
    guessed_tokens: int = 0  # generated tokens that were prompt-lookup guesses, confirmed
    prompt_seconds: float = 0.0  # the part of decode_seconds spent reading the prompt
    reasoning: str = ""  # a server's separate reasoning field (a think block by another name)
    error: str = ""  # why this job has no usable answer (a server cut its prompt)
    choice_logprobs: tuple[float, ...] = ()  # score_many: each choice's summed log-probability


def never_stop() -> bool:
    return False


class Engine(Protocol):
    def count_tokens(self, text: str) -> int: ...

    def open_context(self, n_ctx: int, parallel: int = 1) -> None: ...

    def use_prefix_cache(self, cache: PrefixCache, identity: str) -> None: ...

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
        ...

    def score_many(
        self, jobs: Sequence[Job], *, should_stop: Callable[[], bool] = never_stop
    ) -> Iterator[tuple[int, Generation]]:
        """(index, scores) for each job in order: the log-probability of each of its
        choices as the continuation of its text (one forward pass, no generation)."""
        ...

    def describe(self) -> dict[str, object]: ...

    def close(self) -> None: ...
