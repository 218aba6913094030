"""Writing a whole output file (an export, an HTML report) the way users expect of a
command-line tool: all or nothing, through symlinks, straight into pipes and devices
(`--out /dev/stdout`), and with the permissions any other program would give it."""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from mmlupro_local.errors import MmluProError


class OutputError(MmluProError):
    """An output file cannot be written."""


def _new_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def output_text(path: Path) -> Iterator[TextIO]:
    """A text handle whose content replaces `path` when the block ends without error.

    A symlink is written through (the link stays); a character device, pipe or socket
    is written to directly; other special files are refused. A regular file is
    replaced atomically and keeps its permissions; a new one gets the umask's. "-" is
    standard output."""
    if str(path) == "-":
        sys.stdout.flush()
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(os.path.realpath(path))
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if mode is not None and stat.S_ISDIR(mode):
        raise OutputError(f"{path} is a directory; give a file path")
    if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        with _direct(path, target) as handle:
            yield handle
        return
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputError(f"{path} is not a regular file (a block device?); give a file path")
    with _replacing(
        path, target, stat.S_IMODE(mode) if mode is not None else _new_file_mode()
    ) as handle:
        yield handle


@contextmanager
def _direct(path: Path, target: Path) -> Iterator[TextIO]:
    try:
        with open(target, "w", encoding="utf-8") as handle:
            yield handle
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


@contextmanager
def _replacing(path: Path, target: Path, mode: int) -> Iterator[TextIO]:
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            sync(handle.fileno())
        os.replace(tmp, target)
        tmp = None
    except (FileExistsError, NotADirectoryError) as exc:
        raise OutputError(f"cannot write {path}: a part of {target.parent} is a file") from exc
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def sync(fd: int) -> None:
    """Make what was written to `fd` durable. On macOS fsync(2) hands the data to the
    drive but not through its cache, so a power loss can still lose it; F_FULLFSYNC
    flushes the cache too. Where F_FULLFSYNC fails (some file systems and network
    volumes refuse it), fsync is what there is."""
    full = getattr(fcntl, "F_FULLFSYNC", None)
    if full is not None:
        try:
            fcntl.fcntl(fd, full)
            return
        except OSError:
            pass
    os.fsync(fd)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
