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


def auto_mode(
    backend: Backend, cores: int, model_bytes: int, per_category: int | None
) -> EngineMode:
    """The rule behind `--parallel auto` and `--lookup auto`: the fastest deterministic
    mode it can tell from the backend, the physical cores, the model's size and the
    questions per category. Batching several questions, and checking prompt-lookup
    guesses, pay while decoding is bound by reading the weights rather than by
    arithmetic: on a GPU or Metal, and on a CPU for a small model with cores to spare.
    Measured on 2 CPU cores with SmolLM2-135M (98 MB), 70 questions at budget 512: see
    the README's "Fast by default". At most one category's questions decode together,
    so more slots than questions per category would only hold memory."""
    if backend != "cpu":
        parallel, lookup = 8, AUTO_LOOKUP
    elif cores < 2:  # one core is arithmetic-bound already: extra rows cost their time
        parallel, lookup = 2, 0
    elif model_bytes < 500 * 2**20:
        parallel, lookup = 8, AUTO_LOOKUP
    elif model_bytes < 2 * 2**30:
        parallel, lookup = 4, 0
    elif model_bytes < 8 * 2**30:
        parallel, lookup = 2, 0
    else:
        parallel, lookup = 1, 0
    if per_category:
        parallel = min(parallel, per_category)
    size = (
        f"{model_bytes / 2**20:,.0f} MiB"
        if model_bytes < 2**30
        else f"{model_bytes / 2**30:.1f} GiB"
    )
    shape = f", {per_category} per category" if per_category else ""
    plural = "s" if cores != 1 else ""
    reason = f"auto: {backend.upper() if backend == 'cpu' else backend}, {cores} core{plural}, model {size}{shape}"
    return EngineMode(parallel, lookup, reason)
