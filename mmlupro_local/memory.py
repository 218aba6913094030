"""Will the model fit? An estimate from GGUF metadata, made before llama.cpp allocates
anything, so that a model too large for this machine is a clear message, not the
out-of-memory killer or a swap storm hours into a run."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from mmlupro_local.errors import MmluProError
from mmlupro_local.gguf import GgufInfo

GIB = 2**30
# bytes per KV element: f16, and the quantized types' block size / elements per block
KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
_OVERHEAD = 256 * 2**20  # compute graph, logits, the Python process itself


class MemoryTooSmallError(MmluProError):
    """The model and its context need more memory than this machine has."""


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    overhead: int
    n_ctx: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    def describe(self) -> str:
        return (
            f"about {self.total / GIB:.1f} GiB (weights {self.weights / GIB:.1f} GiB, KV cache "
            f"{self.kv_cache / GIB:.1f} GiB for {self.n_ctx:,} tokens, working memory "
            f"{self.overhead / GIB:.1f} GiB)"
        )


def estimate(info: GgufInfo, n_ctx: int, kv_type: str = "f16") -> MemoryEstimate:
    """n_ctx counts every KV cell the context holds (all parallel sequences)."""
    layers = info.get_int("block_count") or 0
    embd = info.get_int("embedding_length") or 0
    heads = _first_int(info.metadata.get(f"{info.architecture}.attention.head_count")) or 1
    kv_heads = _first_int(info.metadata.get(f"{info.architecture}.attention.head_count_kv"))
    head_k = info.get_int("attention.key_length") or embd // heads
    head_v = info.get_int("attention.value_length") or embd // heads
    per_token = layers * (kv_heads or heads) * (head_k + head_v) * KV_BYTES[kv_type]
    return MemoryEstimate(info.data_end, int(per_token * n_ctx), _OVERHEAD, n_ctx)


def _first_int(value: object) -> int | None:
    """head_count may be an int or a per-layer array; the largest entry bounds the cache."""
    if isinstance(value, list):
        ints = [v for v in value if isinstance(v, int)]
        return max(ints) if ints else None
    return value if isinstance(value, int) else None


@dataclass(frozen=True)
class MachineMemory:
    total: int  # physical memory, or the container's limit if lower
    available: int  # what can be had now without swapping


def machine_memory() -> MachineMemory | None:
    total = available = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                kib = int(value.split()[0]) * 1024
                total, available = (kib, available) if key == "MemTotal" else (total, kib)
    except (OSError, ValueError):
        if sys.platform == "darwin" or hasattr(os, "sysconf"):
            try:
                total = available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (OSError, ValueError):
                return None
    if not total:
        return None
    limit, used = _cgroup_limit()
    if limit and limit < total:
        total, available = limit, min(available or limit, limit - used)
    return MachineMemory(total, available or total)


def _cgroup_limit() -> tuple[int, int]:
    """(limit, usage) of this process's memory cgroup (v2, then v1); (0, 0) if none."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):  # fmt: skip
        try:
            text = Path(limit_file).read_text().strip()
            if text == "max":
                return 0, 0
            return int(text), int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
    return 0, 0


def check_fits(info: GgufInfo, need: MemoryEstimate, machine: MachineMemory | None) -> str | None:
    """Raises when the estimate exceeds the machine's memory; returns a warning when it
    exceeds what is free now (other programs hold the rest), else None."""
    if machine is None:
        return None
    advice = (
        "use a smaller quantization of the model, a smaller --ctx or --parallel, or "
        "--kv-type q8_0 (or --no-memory-check to try anyway)"
    )
    if need.total > machine.total:
        raise MemoryTooSmallError(
            f"{info.path.name} needs {need.describe()}, but this machine has "
            f"{machine.total / GIB:.1f} GiB of memory; {advice}"
        )
    if need.total > machine.available:
        return (
            f"{info.path.name} needs {need.describe()}; only {machine.available / GIB:.1f} GiB "
            "is free now, so the run may swap and slow down"
        )
    return None
