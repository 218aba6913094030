"""A size-capped, least-recently-used store of saved KV states of prompt prefixes.

Each entry is one file: a header (magic, key, payload sha256) and the payload. An entry
whose header or checksum does not match is deleted and treated as missing, never
trusted. Writes go to a temporary file renamed into place; a write that fails removes
it, and temporary files left by killed processes are counted and cleared like entries.
The cache is optional, so it never takes the disk space results need: an entry that
would leave less than RESERVE_BYTES free is not written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"MMLUPKV1"
_HEADER = struct.Struct("<8s64s64sQ")  # magic, key (hex), payload sha256 (hex), payload size
SUFFIX = ".kv"
TEMP_PREFIX = ".kv."
RESERVE_BYTES = 1 << 30  # free space the cache leaves for results and everything else
STALE_SECONDS = 3600  # a temporary file this old belongs to no live writer


def cache_key(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheInfo:
    directory: Path
    entries: int
    total_bytes: int
    max_bytes: int
    temp_files: int = 0  # left by interrupted writes
    temp_bytes: int = 0


class PrefixCache:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.saved = 0
        self.not_saved: list[str] = []  # why each entry that could not be written was not

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}{SUFFIX}"

    def load(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except OSError:
            self.misses += 1
            return None
        payload = self._verify(data, key)
        if payload is None:
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        os.utime(path)  # recently used
        self.hits += 1
        return payload

    @staticmethod
    def _verify(data: bytes, key: str) -> bytes | None:
        if len(data) < _HEADER.size:
            return None
        magic, stored_key, digest, size = _HEADER.unpack_from(data)
        payload = data[_HEADER.size :]
        if magic != MAGIC or stored_key.decode("ascii", "replace") != key or size != len(payload):
            return None
        if hashlib.sha256(payload).hexdigest() != digest.decode("ascii", "replace"):
            return None
        return payload

    def save(self, key: str, payload: bytes) -> bool:
        """Store an entry; a cache that cannot be written only costs speed, and the
        reason is kept in `not_saved`."""
        size = len(payload) + _HEADER.size
        if size > self.max_bytes:
            self.not_saved.append(f"an entry of {size / 2**20:.0f} MiB is larger than the cap")
            return False
        header = _HEADER.pack(
            MAGIC,
            key.encode("ascii"),
            hashlib.sha256(payload).hexdigest().encode("ascii"),
            len(payload),
        )
        tmp: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.directory).free
            if free - size < RESERVE_BYTES:
                self.not_saved.append(
                    f"{free / 2**30:.1f} GiB free on disk: the cache keeps "
                    f"{RESERVE_BYTES / 2**30:.0f} GiB for results"
                )
                return False
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.directory)
            with os.fdopen(fd, "wb") as handle:
                handle.write(header)
                handle.write(payload)
            os.replace(tmp, self._path(key))
            tmp = None
        except OSError as exc:
            self.not_saved.append(f"{exc.strerror or exc}")
            return False
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        self.saved += 1
        self._evict()
        return True

    def _files(self, pattern: str) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of the files matching `pattern`, least recently used first."""
        found = []
        try:
            for path in self.directory.glob(pattern):
                try:
                    stat = path.stat()
                except OSError:
                    continue
                found.append((stat.st_mtime, stat.st_size, path))
        except OSError:
            return []
        return sorted(found)

    def _entries(self) -> list[tuple[float, int, Path]]:
        return self._files(f"*{SUFFIX}")

    def _temp_files(self) -> list[tuple[float, int, Path]]:
        return self._files(f"{TEMP_PREFIX}*")

    def _evict(self) -> None:
        stale = time.time() - STALE_SECONDS
        for mtime, _, path in self._temp_files():
            if mtime < stale:
                path.unlink(missing_ok=True)
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:  # oldest use first
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size

    def info(self) -> CacheInfo:
        entries = self._entries()
        temps = self._temp_files()
        return CacheInfo(
            self.directory,
            len(entries),
            sum(s for _, s, _ in entries),
            self.max_bytes,
            len(temps),
            sum(s for _, s, _ in temps),
        )

    def clear(self) -> tuple[int, int]:
        """Delete every entry and every temporary file; (entries, temporary files)."""
        entries = self._entries()
        for _, _, path in entries:
            path.unlink(missing_ok=True)
        temps = self._temp_files()
        for _, _, path in temps:
            path.unlink(missing_ok=True)
        return len(entries), len(temps)
