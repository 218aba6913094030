"""llama.cpp's log, kept out of the terminal but at hand for error messages.

llama.cpp prints hundreds of lines per model load, some at error level that are not
errors (a vocab-only load warns about context overflow). We keep the last lines in
memory so a failure can quote them; MMLUPRO_LLAMA_LOG=1 prints everything as well.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections import deque
from typing import Any

_recent: deque[str] = deque(maxlen=200)
_installed: list[Any] = []  # keeps the ctypes callback alive


def install() -> None:
    if _installed:
        return
    import llama_cpp

    echo = os.environ.get("MMLUPRO_LLAMA_LOG", "") not in ("", "0")

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace")
        _recent.append(line)
        if echo:
            sys.stderr.write(line)

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    _installed.append(callback)


def recent(match: str = "", limit: int = 5) -> str:
    """The last log lines (containing `match`), joined, for an error message."""
    lines = "".join(_recent).splitlines()
    picked = [line.strip() for line in lines if match in line and line.strip()]
    return "; ".join(picked[-limit:])
