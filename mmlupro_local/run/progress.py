"""What a run shows while it goes: the progress bar and its rates."""

from __future__ import annotations

import sys
import time
from typing import NoReturn

from tqdm import tqdm

from mmlupro_local.engine import Generation


def progress_bar(total: int, done: int, enabled: bool) -> tqdm[NoReturn]:
    return tqdm(
        total=total,
        initial=done,
        disable=not enabled,
        file=sys.stderr,
        unit="q",
        dynamic_ncols=True,
    )


class Speed:
    """The progress bar's rates: questions per minute over the wall clock, and prompt
    reading and generation each over its own decoding time (so a long prompt does not
    make generation look slow)."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.questions = self.prompt_tokens = self.generated = 0
        self.prompt_seconds = self.generation_seconds = 0.0

    def add(self, generation: Generation) -> None:
        self.questions += 1
        self.prompt_tokens += generation.decoded_prompt_tokens
        self.generated += generation.generated_tokens
        self.prompt_seconds += generation.prompt_seconds
        self.generation_seconds += max(generation.decode_seconds - generation.prompt_seconds, 0.0)

    def __str__(self) -> str:
        elapsed = time.perf_counter() - self.began
        parts = [f"{self.questions / elapsed * 60:.1f} q/min"]
        if self.generation_seconds:
            parts.append(f"gen {self.generated / self.generation_seconds:.1f} tok/s")
        if self.prompt_seconds:
            parts.append(f"prompt {self.prompt_tokens / self.prompt_seconds:.0f} tok/s")
        return ", ".join(parts)
