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
import shlex
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmlupro_local.errors import MmluProError
from mmlupro_local.files import sync
from mmlupro_local.results.records import (
    Identity,
    ResultRecord,
    RunHeader,
    SchemaError,
    SessionEnd,
    resume_differences,
)

try:  # fcntl is POSIX-only; on Windows the lock is skipped
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


class StoreError(MmluProError):
    """A results file cannot be opened, trusted or written."""


_HINTS = {
    errno.ENOSPC: " (free some disk space)",
    errno.EDQUOT: " (over the disk quota: free some space)",
    errno.EROFS: " (the file system is read-only: remount it writable or choose another --out or --out-dir)",
    errno.EACCES: " (no permission: choose another --out or --out-dir)",
}


def _hint(exc: OSError) -> str:
    return _HINTS.get(exc.errno or 0, "")


@dataclass
class ResultsLog:
    """What a results file holds: its run records and its results by question id."""

    runs: list[RunHeader] = field(default_factory=list)
    results: dict[int, ResultRecord] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    lines: dict[int, int] = field(default_factory=dict)  # question id -> its result's line
    # questions answered twice, differently (a hand-edited file): their lines; neither
    # answer counts, and a resume does not ask them again
    conflicts: dict[int, list[int]] = field(default_factory=dict)

    @property
    def header(self) -> RunHeader | None:
        return self.runs[0] if self.runs else None


Numbered = list[tuple[int, dict[str, Any]]]  # (line number, record)
SHOWN = 10  # bad lines a report names one by one; the rest are counted


@dataclass
class _Scan:
    """A results file read line by line: its records with their line numbers, the lines
    that are no record (not the last), how many bytes hold whole lines, and whether the
    last line is torn (no newline, or not parsing with nothing after it: the crash
    happened while writing it)."""

    records: Numbered
    bad: list[tuple[int, str]]  # (line number, message)
    good: int
    torn: bool
    lines: int  # complete lines (ended by a newline)


LONGEST_LINE = 16 * 2**20  # a record is kilobytes (answers are cut at their budget)


def _scan(chunks: Iterable[bytes], path: Path) -> _Scan:
    """One reading for the writer and for reports, a piece at a time: a file of
    gigabytes costs a line at a time, never the whole file."""
    records: Numbered = []
    bad: list[tuple[int, str]] = []
    pending: tuple[int, str, int] | None = None  # a bad line: number, message, its offset
    tail, number, offset = b"", 0, 0  # offset: where `tail` starts
    for chunk in chunks:
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        if len(tail) > LONGEST_LINE:
            raise StoreError(
                f"{path} is not a results file of mmlupro-local: line {number + 1} runs past "
                f"{LONGEST_LINE // 2**20} MB without an end"
            )
        for line in lines:
            number += 1
            start, offset = offset, offset + len(line) + 1
            if not line.strip():
                continue
            if pending is not None:  # a later line: it was not the last
                bad.append(pending[:2])
                pending = None
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "type" not in record:
                    raise ValueError("not a record")
                records.append((number, record))
            except ValueError as exc:
                pending = (number, f"{path} line {number} is not a result record ({exc})", start)
    if pending is not None and not tail.strip():  # the last line, bad: torn
        return _Scan(records, bad, pending[2], True, number)
    if pending is not None:
        bad.append(pending[:2])
    return _Scan(records, bad, offset, bool(tail.strip()), number)


def _pieces(fd: int, size: int) -> Iterator[bytes]:
    position = 0
    while position < size:
        piece = os.pread(fd, min(2**20, size - position), position)
        if not piece:
            return
        yield piece
        position += len(piece)


def read_results(path: Path) -> ResultsLog:
    """Read a results file for a report: unreadable lines and malformed results are
    skipped with a warning naming them, a torn last line is ignored, repeated questions
    count once. Read in pieces, never whole: a file of gigabytes costs a line at a time."""
    try:
        with path.open("rb") as handle:
            scan = _scan(iter(lambda: handle.read(2**20), b""), path)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    bad = [message for _, message in scan.bad]
    if bad and not scan.records:
        raise StoreError(f"{path} holds no result records: {bad[0]}")
    log = _collect(scan.records, path, bad)
    log.warnings.extend(f"{message}; skipped" for message in bad[:SHOWN])
    if len(bad) > SHOWN:
        log.warnings.append(f"{path}: {len(bad) - SHOWN} more unusable lines skipped")
    if scan.torn:
        log.warnings.append(
            f"{path}: the last line is incomplete (the run was killed while writing)"
        )
    return log


def _torn_run_record(head: bytes) -> bool:
    """The start of this tool's own run record (`head`: the file's first bytes, in a
    file with no whole line): a run killed as it began, safe to start again (anything
    else is left alone)."""
    return head.startswith(b'{"type": "run", "schema": ') and (
        b'"tool": {"name": "mmlupro-local"' in head
    )


def _collect(records: Numbered, path: Path, bad: list[str] | None = None) -> ResultsLog:
    log = ResultsLog()
    for number, record in records:
        kind = record.get("type")
        if kind == "run":
            try:
                log.runs.append(RunHeader.from_json(record))
            except SchemaError as exc:
                raise StoreError(f"{path} line {number}: {exc}") from exc
        elif kind == "result":
            try:
                result = ResultRecord.from_json(record)
            except SchemaError as exc:
                message = f"{path} line {number} is a malformed result ({exc})"
                if bad is None:
                    raise StoreError(
                        f"{message}. To keep the other results, delete that line "
                        f"({delete_line(number, path)}) and run the same command again."
                    ) from exc
                bad.append(message)
                continue
            _add(log, result, number)
    if records and not log.runs:
        raise StoreError(f"{path} has no run record: it was not written by mmlupro-local")
    for question, numbers in log.conflicts.items():
        log.warnings.append(
            f"{path} lines {', '.join(map(str, numbers))} answer question {question} "
            "differently (an edited file?): left out of the report and the estimate; delete "
            "the wrong lines to count it"
        )
    return log


def _add(log: ResultsLog, result: ResultRecord, number: int) -> None:
    """A result into the log: a repeat of the same answer counts once; a different
    answer to a question already answered makes it a conflict (issue 32, case 9)."""
    question = result.question_id
    if question in log.conflicts:
        log.conflicts[question].append(number)
        return
    first = log.results.get(question)
    if first is None:
        log.results[question], log.lines[question] = result, number
    elif (first.pred, first.response, first.category) != (
        result.pred,
        result.response,
        result.category,
    ):
        log.conflicts[question] = [log.lines.pop(question), number]
        del log.results[question]


class ResultsWriter:
    """An open results file, locked for this process, appended to record by record.

    A file it created and never wrote to is removed on close, so a refused or failed
    run leaves nothing behind. A file it may not write is opened read-only: enough to
    show a finished run, and `append` then says why it cannot write."""

    def __init__(self, path: Path, identity: Identity) -> None:
        self.path = path
        self.read_only_reason: str | None = None
        self._created = False
        self._fd = self._open(path)
        try:
            self._lock()
            self.log = self._load(identity)
        except BaseException:
            self.close()
            raise

    def _open(self, path: Path) -> int:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            blocker = next((p for p in [path.parent, *path.parent.parents] if p.is_file()), None)
            raise StoreError(
                f"cannot create {path}: {blocker or path.parent} is a file, not a directory; "
                "choose another --out or --out-dir"
            ) from exc
        except OSError as exc:
            raise StoreError(
                f"cannot create the directory {path.parent}: {exc.strerror or exc}{_hint(exc)}"
            ) from exc
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            self._created = True
            return fd
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(
                f"cannot open {path} for writing: {exc.strerror or exc}{_hint(exc)}"
            ) from exc
        if path.is_dir():
            raise StoreError(f"{path} is a directory; give a file path for --out")
        try:
            return os.open(path, os.O_RDWR)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise StoreError(
                    f"cannot open {path} for writing: {exc.strerror or exc}{_hint(exc)}"
                ) from exc
            self.read_only_reason = f"{exc.strerror or exc}{_hint(exc)}"
        try:
            return os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def _lock(self) -> None:
        if fcntl is None:
            return
        try:
            mode = fcntl.LOCK_SH if self.read_only_reason else fcntl.LOCK_EX
            fcntl.flock(self._fd, mode | fcntl.LOCK_NB)
        except OSError as exc:
            raise StoreError(
                f"another mmlupro-local run is writing to {self.path}; wait for it to finish "
                "or choose another --out or --out-dir"
            ) from exc

    def _load(self, identity: Identity) -> ResultsLog:
        size = os.fstat(self._fd).st_size
        scan = _scan(_pieces(self._fd, size), self.path)
        if scan.bad:
            number, message = scan.bad[0]
            raise StoreError(
                f"{message}; it is not a file this tool wrote, or it was edited. To keep "
                f"the other results, delete that line ({delete_line(number, self.path)}) and "
                "run the same command again; or use another --out."
            )
        log = _collect(scan.records, self.path)
        good = scan.good
        if good < size:
            # only a line after a run record, or the first run record itself, cut
            # mid-line, can be this tool's torn write
            whole_run_torn = scan.lines == 0 and _torn_run_record(os.pread(self._fd, 4096, 0))
            if not log.runs and not whole_run_torn:
                raise StoreError(
                    f"{self.path} is not empty and holds no run record: it is not a results "
                    "file of mmlupro-local, so it is left as it is; choose another --out or --out-dir"
                )
            if self.read_only_reason:
                log.warnings.append(f"{self.path}: the last line is incomplete (killed mid-write)")
            else:
                os.ftruncate(self._fd, good)
                sync(self._fd)
                log.warnings.append(
                    f"cut an incomplete last line from {self.path} (killed mid-write)"
                )
        if log.header is not None:
            changed = resume_differences(log.header.identity_json, identity.to_json())
            if changed:
                model = log.header.model
                if any(line.startswith("model_sha256") for line in changed) and model:
                    changed.append(f"the file's model was {model.get('path') or model.get('name')}")
                raise StoreError(
                    f"{self.path} holds results made with other settings, so it cannot be "
                    "resumed:\n  " + "\n  ".join(changed) + "\nUse another --out, or the "
                    "settings recorded in the file."
                )
        self._size = good
        return log

    def append_run(self, header: RunHeader) -> None:
        self._append(header.to_json())
        self.log.runs.append(header)

    def append_end(self, end: SessionEnd) -> None:
        self._append(end.to_json())

    def append_result(self, result: ResultRecord) -> None:
        """Write one result; it is in `log.results` exactly when it is in the file."""
        self.append_results([result])

    def append_results(self, results: Sequence[ResultRecord]) -> None:
        """Write several results with one fsync (a fast server's answers arrive faster
        than a disk syncs); each is in `log.results` only once all are on disk."""
        if results:
            self._append(*(r.to_json() for r in results))
            self.log.results.update((r.question_id, r) for r in results)

    def _append(self, *records: Mapping[str, Any]) -> None:
        if self.read_only_reason:
            raise StoreError(
                f"cannot write to {self.path}: {self.read_only_reason}. Make it writable or "
                "choose another --out or --out-dir."
            )
        line = b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8") for r in records)
        try:
            view = memoryview(line)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            sync(self._fd)
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
            if self._created and os.fstat(self._fd).st_size == 0:
                self.path.unlink(missing_ok=True)  # still locked: nobody else holds it
            os.close(self._fd)  # closing releases the lock
            self._fd = -1

    def __enter__(self) -> ResultsWriter:
        os.lseek(self._fd, self._size, os.SEEK_SET)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def delete_line(number: int, path: Path) -> str:
    """The command that deletes line `number` of `path` in place: BSD sed (macOS) takes
    the backup suffix as a word of its own, GNU sed attached."""
    backup = " ''" if sys.platform == "darwin" else ""
    return f"sed -i{backup} '{number}d' {shlex.quote(str(path))}"
