"""A size-capped, least-recently-used store of saved KV states of prompt prefixes.

Each entry is one file: a header (magic, key, payload sha256) and the payload. An entry
whose header or checksum does not match is deleted and treated as missing, never
trusted. Writes go to a temporary file renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"MMLUPKV1"
_HEADER = struct.Struct("<8s64s64sQ")  # magic, key (hex), payload sha256 (hex), payload size
SUFFIX = ".kv"


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


class PrefixCache:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0

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

    def save(self, key: str, payload: bytes) -> None:
        """Store an entry; a cache that cannot be written only costs speed."""
        if len(payload) + _HEADER.size > self.max_bytes:
            return
        header = _HEADER.pack(
            MAGIC,
            key.encode("ascii"),
            hashlib.sha256(payload).hexdigest().encode("ascii"),
            len(payload),
        )
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".kv.", dir=self.directory)
            with os.fdopen(fd, "wb") as handle:
                handle.write(header)
                handle.write(payload)
            os.replace(tmp, self._path(key))
        except OSError:
            return
        self._evict()

    def _entries(self) -> list[tuple[float, int, Path]]:
        found = []
        try:
            for path in self.directory.glob(f"*{SUFFIX}"):
                try:
                    stat = path.stat()
                except OSError:
                    continue
                found.append((stat.st_mtime, stat.st_size, path))
        except OSError:
            return []
        return sorted(found)

    def _evict(self) -> None:
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:  # oldest use first
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size

    def info(self) -> CacheInfo:
        entries = self._entries()
        return CacheInfo(
            self.directory, len(entries), sum(s for _, s, _ in entries), self.max_bytes
        )

    def clear(self) -> int:
        entries = self._entries()
        for _, _, path in entries:
            path.unlink(missing_ok=True)
        return len(entries)
