"""The rule behind `--parallel auto` and `--lookup auto`: the engine mode this backend,
these cores and this model size decode fastest in, deterministically."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Backend = Literal["cpu", "metal", "gpu"]
# the guesses a step checks where lookup pays (a GPU or Metal, a small model on a CPU)
AUTO_LOOKUP = 16


@dataclass(frozen=True)
class EngineMode:
    """--parallel and --lookup as the rule chose them, with the inputs it read."""

    parallel: int
    lookup: int
    reason: str

    @property
    def flags(self) -> str:
        return f"--parallel {self.parallel} --lookup {self.lookup}"


def auto_mode(backend: Backend, cores: int, model_bytes: int) -> EngineMode:
    """The rule behind `--parallel auto` and `--lookup auto`: the fastest mode it can
    tell from the backend, the physical cores and the model's size (every mode gives the
    same answers under the canonical shapes). Batching several questions, and checking
    prompt-lookup guesses, pay while a step's cost is reading the weights or fixed
    overhead rather than arithmetic: on a GPU or Metal, and on a CPU for a small model
    with cores to spare; there a guess's row costs little only for a tiny model.
    Measured on 2 CPU cores, 14 questions at budget 512 (`make bench-exact`, README's
    "Exact in every mode"): SmolLM2-135M (94 MiB) fastest at --parallel 8 --lookup 16,
    Qwen2.5-Coder-0.5B (468 MiB) at --parallel 4 or 8 without lookup (lookup 16 cost it
    20-27 %). Questions of every category share the steps, so the slots are not capped
    by the questions per category."""
    if backend != "cpu":
        parallel, lookup = 8, AUTO_LOOKUP
    elif cores < 2:  # one core is arithmetic-bound already: extra rows cost their time
        parallel, lookup = 2, 0
    elif model_bytes < 256 * 2**20:
        parallel, lookup = 8, AUTO_LOOKUP
    elif model_bytes < 2 * 2**30:
        parallel, lookup = 4, 0
    elif model_bytes < 8 * 2**30:
        parallel, lookup = 2, 0
    else:
        parallel, lookup = 1, 0
    size = (
        f"{model_bytes / 2**20:,.0f} MiB"
        if model_bytes < 2**30
        else f"{model_bytes / 2**30:.1f} GiB"
    )
    plural = "s" if cores != 1 else ""
    reason = f"auto: {backend.upper() if backend == 'cpu' else backend}, {cores} core{plural}, model {size}"
    return EngineMode(parallel, lookup, reason)
