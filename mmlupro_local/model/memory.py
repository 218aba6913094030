"""Will the model fit? An estimate from GGUF metadata, made before llama.cpp allocates
anything, so that a model too large for this machine is a clear message, not the
out-of-memory killer or a swap storm hours into a run."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mmlupro_local.errors import MmluProError
from mmlupro_local.model.gguf import GgufInfo

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
    swap_free: int = 0  # swap that could take the rest (0: none, or inside a memory limit)


@dataclass(frozen=True)
class GpuMemory:
    """A GPU's memory as llama.cpp sees it; on Metal (`unified`), the working-set budget."""

    name: str
    total: int
    free: int
    unified: bool  # Apple Silicon: the budget is a share of RAM, raised by a sysctl


def machine_memory() -> MachineMemory | None:
    if sys.platform == "darwin":
        return _darwin_memory()
    facts: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("MemTotal", "MemAvailable", "SwapFree"):
                facts[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        return None
    total, available = facts.get("MemTotal", 0), facts.get("MemAvailable", 0)
    swap = facts.get("SwapFree", 0)
    if not total:
        return None
    limit, used = _cgroup_limit()
    if limit and limit < total:
        # a container's limit counts memory only: the OOM killer acts at it, swap or not
        total, available, swap = limit, min(available or limit, limit - used), 0
    return MachineMemory(total, available or total, swap)


def _darwin_memory() -> MachineMemory | None:
    """macOS: hw.memsize, and free + inactive + speculative + purgeable pages as what
    can be had now (what Activity Monitor counts as not in use)."""
    try:
        total = int(_run(["sysctl", "-n", "hw.memsize"]))
        pages, page_size = _vm_stat(_run(["vm_stat"]))
        swap = _run(["sysctl", "-n", "vm.swapusage"])
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None
    kinds = ("Pages free", "Pages inactive", "Pages speculative", "Pages purgeable")
    available = sum(pages.get(kind, 0) for kind in kinds) * page_size
    # macOS grows its swap files on demand: free swap is whatever the disk allows
    free_swap = _swap_free(swap)
    return MachineMemory(total, min(available, total) or total, free_swap)


def _run(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def _vm_stat(text: str) -> tuple[dict[str, int], int]:
    """`vm_stat` output: counts of pages by kind, and the page size it states."""
    match = re.search(r"page size of (\d+) bytes", text)
    page_size = int(match.group(1)) if match else 4096
    pages = {}
    for line in text.splitlines()[1:]:
        key, _, value = line.partition(":")
        value = value.strip().rstrip(".")
        if value.isdigit():
            pages[key.strip()] = int(value)
    return pages, page_size


def _swap_free(text: str) -> int:
    """`sysctl vm.swapusage`: 'total = 2048.00M  used = 1024.00M  free = 1024.00M ...'."""
    match = re.search(r"free = ([\d.]+)([KMG])", text)
    if not match:
        return 0
    return int(float(match.group(1)) * {"K": 2**10, "M": 2**20, "G": 2**30}[match.group(2)])


def _cgroup_limit() -> tuple[int, int]:
    """(limit, usage) of this process's memory cgroup (v2, then v1); (0, 0) if none."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            text = Path(limit_file).read_text().strip()
            if text == "max":
                return 0, 0
            return int(text), int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
    return 0, 0


def check_fits(info: GgufInfo, need: MemoryEstimate, machine: MachineMemory | None) -> str | None:
    """Raises when the estimate exceeds the machine's memory, or what is free now plus
    free swap (the run would be killed by the out-of-memory killer); returns a warning
    when it fits only by swapping, else None."""
    if machine is None:
        return None
    # the context holds each question's budget: a huge --think-budget or --max-tokens
    # is often what does not fit (issue 26, case 17)
    advice = (
        "use a smaller quantization of the model, a smaller --ctx, --parallel, --max-tokens "
        "or --think-budget, or --kv-type q8_0 (or --no-memory-check to try anyway)"
    )
    if need.total > machine.total:
        raise MemoryTooSmallError(
            f"{info.path.name} needs {need.describe()}, but this machine has "
            f"{machine.total / GIB:.1f} GiB of memory; {advice}"
        )
    if need.total > machine.available + machine.swap_free:
        swap = (
            f" and {machine.swap_free / GIB:.1f} GiB of swap"
            if machine.swap_free
            else " and no swap"
        )
        raise MemoryTooSmallError(
            f"{info.path.name} needs {need.describe()}, but only {machine.available / GIB:.1f} "
            f"GiB is free now{swap}: the system would kill the run when it runs out. Close "
            f"other programs, or {advice}"
        )
    if need.total > machine.available:
        return (
            f"{info.path.name} needs {need.describe()}; only {machine.available / GIB:.1f} GiB "
            "is free now, so the run will swap and slow down"
        )
    return None


def check_gpu_fits(
    info: GgufInfo, need: MemoryEstimate, gpu: GpuMemory | None, layers: int, ram: int | None
) -> None:
    """Raises when what is offloaded (all of it, or `layers` of the model's blocks, with
    their share of the KV cache) exceeds the GPU's memory: on Metal its working-set
    budget, which is about two thirds of RAM, not RAM."""
    if gpu is None or layers == 0:
        return
    blocks = info.get_int("block_count") or 1
    share = 1.0 if layers < 0 or layers >= blocks else layers / blocks
    offloaded = int((need.weights + need.kv_cache) * share) + need.overhead
    if offloaded <= gpu.total:
        return
    advice = (
        "keep some layers on the CPU with --gpu-layers N, use a smaller quantization, a "
        "smaller --ctx, --parallel, --max-tokens or --think-budget, or --kv-type q8_0 (or "
        "--no-memory-check to try anyway)"
    )
    if gpu.unified:
        of_ram = f" of this Mac's {ram / GIB:.1f} GiB" if ram else ""
        raise MemoryTooSmallError(
            f"{info.path.name} needs {need.describe()} on the GPU, but Metal lets the GPU use "
            f"{gpu.total / GIB:.1f} GiB{of_ram} (its working-set budget, "
            "recommendedMaxWorkingSetSize, as llama.cpp reads it); beyond it runs stall or fail. "
            "Raise the budget until the next restart with 'sudo sysctl iogpu.wired_limit_mb=N' "
            "(N in MB: leave macOS a few GB), or "
            f"{advice}"
        )
    raise MemoryTooSmallError(
        f"{info.path.name} needs {need.describe()} on the GPU, but {gpu.name} has "
        f"{gpu.total / GIB:.1f} GiB; {advice}"
    )
