"""Results files: JSONL, one `run` record per session then one `result` per question.

Each record is one write of one line, flushed and fsynced, so a crash can only tear the
last line, which the next open detects and cuts. An exclusive lock keeps a second run
from writing to the same file. A failed write (disk full, read-only) is rolled back so
the file stays valid and resumable.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmlupro_local.errors import MmluProError

try:  # fcntl is POSIX-only; on Windows the lock is skipped
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

SCHEMA = 1


class StoreError(MmluProError):
    """A results file cannot be opened, trusted or written."""


_HINTS = {
    errno.ENOSPC: " (free some disk space)",
    errno.EDQUOT: " (over the disk quota: free some space)",
    errno.EROFS: " (the file system is read-only: remount it writable or choose another --out)",
    errno.EACCES: " (no permission: choose another --out)",
}


def _hint(exc: OSError) -> str:
    return _HINTS.get(exc.errno or 0, "")


@dataclass
class ResultsLog:
    """What a results file holds: its run records and its results by question id."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def header(self) -> dict[str, Any]:
        return self.runs[0] if self.runs else {}


def differences(
    expected: Mapping[str, Any], actual: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """Human-readable differences between two nested identity dicts."""
    found = []
    for key in sorted(set(expected) | set(actual)):
        a, b = expected.get(key), actual.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found.extend(differences(a, b, f"{name}."))
        elif a != b:
            found.append(f"{name}: {_short(a)} in the file, {_short(b)} now")
    return found


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 24 else text[:20] + '..."'


def _parse_lines(
    data: bytes, path: Path, bad: list[str] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The records and the byte length of the valid part. A last line that has no
    newline, or does not parse, is torn (the crash happened while writing it). Other
    bad lines raise, or are listed in `bad` when it is given (reading for a report)."""
    records = []
    good = pos = 0
    number = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break
        number += 1
        line = data[pos:end]
        if line.strip():
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "type" not in record:
                    raise ValueError("not a record")
                records.append(record)
            except ValueError as exc:
                if not data[end + 1 :].strip():
                    break
                message = f"{path} line {number} is not a result record ({exc})"
                if bad is None:
                    raise StoreError(
                        f"{message}; it is not a file this tool wrote, or it was edited. "
                        "Use another --out."
                    ) from exc
                bad.append(message)
        pos = good = end + 1
    return records, good


def read_results(path: Path) -> ResultsLog:
    """Read a results file for a report: unreadable lines are skipped with a warning
    naming them, a torn last line is ignored, repeated questions count once."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    bad: list[str] = []
    records, good = _parse_lines(data, path, bad)
    if bad and not records:
        raise StoreError(f"{path} holds no result records: {bad[0]}")
    log = _collect(records, path)
    log.warnings.extend(f"{message}; skipped" for message in bad[:10])
    if len(bad) > 10:
        log.warnings.append(f"{path}: {len(bad) - 10} more unreadable lines skipped")
    if data[good:].strip():
        log.warnings.append(
            f"{path}: the last line is incomplete (the run was killed while writing)"
        )
    return log


def _collect(records: list[dict[str, Any]], path: Path) -> ResultsLog:
    log = ResultsLog()
    for record in records:
        kind = record.get("type")
        if kind == "run":
            log.runs.append(record)
        elif kind == "result":
            qid = record.get("question_id")
            if isinstance(qid, int) and qid not in log.results:
                log.results[qid] = record
    if records and not log.runs:
        raise StoreError(f"{path} has no run record: it was not written by mmlupro-local")
    return log


class ResultsWriter:
    """An open results file, locked for this process, appended to record by record."""

    def __init__(self, path: Path, identity: Mapping[str, Any]) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(
                f"cannot open {path} for writing: {exc.strerror or exc}{_hint(exc)}"
            ) from exc
        try:
            self._lock()
            self.log = self._load(identity)
        except BaseException:
            os.close(self._fd)
            raise

    def _lock(self) -> None:
        if fcntl is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise StoreError(
                f"another mmlupro-local run is writing to {self.path}; wait for it to finish "
                "or choose another --out"
            ) from exc

    def _load(self, identity: Mapping[str, Any]) -> ResultsLog:
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, size, 0) if size else b""
        records, good = _parse_lines(data, self.path)
        log = _collect(records, self.path)
        if good < size:
            os.ftruncate(self._fd, good)
            os.fsync(self._fd)
            log.warnings.append(f"cut an incomplete last line from {self.path} (killed mid-write)")
        if log.runs:
            changed = differences(log.header.get("identity", {}), identity)
            if changed:
                raise StoreError(
                    f"{self.path} holds results made with other settings, so it cannot be "
                    "resumed:\n  " + "\n  ".join(changed) + "\nUse another --out, or the "
                    "settings recorded in the file."
                )
        self._size = good
        return log

    def append(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            view = memoryview(line)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except OSError as exc:
            self._roll_back()
            raise StoreError(
                f"could not write to {self.path}: {exc.strerror or exc}{_hint(exc)}. The file "
                f"is intact with {len(self.log.results)} results; fix that and run the same "
                "command again to resume."
            ) from exc
        self._size += len(line)

    def _roll_back(self) -> None:
        try:
            os.ftruncate(self._fd, self._size)
            os.lseek(self._fd, self._size, os.SEEK_SET)
        except OSError:
            pass  # the torn line is cut on the next open

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing releases the lock
            self._fd = -1

    def __enter__(self) -> ResultsWriter:
        os.lseek(self._fd, self._size, os.SEEK_SET)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
