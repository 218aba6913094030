"""This process's peak resident memory, over the whole process or over one block."""

from __future__ import annotations

import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc/self")


def peak_rss_bytes() -> int:
    """The process's peak so far: ru_maxrss counts KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


@dataclass
class Peak:
    bytes: int | None = None
    whole_process: bool = False  # the process's peak so far: an upper bound for the block


@contextmanager
def memory_peak(proc: Path = PROC) -> Iterator[Peak]:
    """The peak resident memory during the block. Where the kernel lets a process reset
    its high-water mark (Linux: 5 into /proc/self/clear_refs, then VmHWM), that of the
    block alone; elsewhere the process's peak so far, marked as such."""
    found = Peak()
    try:
        (proc / "clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    yield found
    high = _vm_hwm(proc) if reset else None
    found.bytes, found.whole_process = (high, False) if high else (peak_rss_bytes(), True)


def _vm_hwm(proc: Path) -> int | None:
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None
