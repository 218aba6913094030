"""Facts about this machine that pick defaults."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path


def intel_mac() -> bool:
    """A Mac with an Intel CPU (or a Python under Rosetta, which runs as one)."""
    return sys.platform == "darwin" and platform.machine() == "x86_64"


def apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def default_gpu_layers() -> int:
    """All layers offloaded (-1), except on an Intel Mac, whose GPU Metal often fails to
    start or runs slower than the CPU (llama-cpp-python#1988): there 0 unless asked."""
    return 0 if intel_mac() else -1


def default_flash_attn(gpu_layers: int) -> bool | None:
    """On, explicitly (llama.cpp's automatic choice varies by backend, and so would the
    results), except on an Intel Mac's GPU, where Metal has no flash attention and forcing
    it falls back to the CPU layer by layer: None, llama.cpp's own choice."""
    return None if intel_mac() and gpu_layers != 0 else True


def physical_cores() -> int:
    """Physical cores this process may use (llama.cpp is slower on hyper-threads)."""
    if sys.platform == "darwin":
        # Apple Silicon: the performance cores (efficiency cores slow llama.cpp down);
        # Intel Macs have no perflevels, and hw.physicalcpu leaves out hyper-threads
        for name in ("hw.perflevel0.physicalcpu", "hw.physicalcpu"):
            try:
                out = subprocess.run(
                    ["sysctl", "-n", name], capture_output=True, text=True, check=True
                )
                return max(1, int(out.stdout.strip()))
            except (OSError, ValueError, subprocess.CalledProcessError):
                continue
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
