"""Room for connections: each request in flight holds a socket, and a process may hold
only `ulimit -n` files (256 by default on macOS), so a wide --parallel would fail as
"Too many open files", which looks like a server fault (issue 32, case 15)."""

from __future__ import annotations

import os
import sys

RESERVE = 64  # files besides the requests: results, lock, probes, the interpreter's own
# macOS refuses a soft limit above this even when the hard one is "unlimited"
MACOS_OPEN_MAX = 10240


def _in_use() -> int:
    for folder in ("/dev/fd", "/proc/self/fd"):
        try:
            return len(os.listdir(folder))
        except OSError:
            continue
    return 16


def connection_room(wanted: int) -> tuple[int, int]:
    """(requests that may be in flight, the soft limit now), at most `wanted`; the soft
    limit is raised toward the hard one first where that makes room."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return wanted, 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = _in_use()
    need = wanted + in_use + RESERVE
    if soft != resource.RLIM_INFINITY and need > soft:
        ceiling = hard if hard != resource.RLIM_INFINITY else need
        if sys.platform == "darwin":
            ceiling = min(ceiling, MACOS_OPEN_MAX)
        target = min(need, ceiling)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
    if soft == resource.RLIM_INFINITY:
        return wanted, 0
    return max(1, min(wanted, soft - in_use - RESERVE)), soft
