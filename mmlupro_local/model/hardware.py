"""Facts about this machine that pick defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


def physical_cores() -> int:
    """Physical cores this process may use (llama.cpp is slower on hyper-threads)."""
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "hw.perflevel0.physicalcpu"],
                capture_output=True,
                text=True,
                check=True,
            )
            return max(1, int(out.stdout.strip()))
        except (OSError, ValueError, subprocess.CalledProcessError):
            return os.cpu_count() or 1
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:
        return os.cpu_count() or 1
    cores = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(allowed)
        cores.add((package, core))
    return max(1, len(cores))


Backend = Literal["cpu", "metal", "gpu"]


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
        parallel, lookup = 8, 16
    elif cores < 2:  # one core is arithmetic-bound already: extra rows cost their time
        parallel, lookup = 2, 0
    elif model_bytes < 500 * 2**20:
        parallel, lookup = 8, 16
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
