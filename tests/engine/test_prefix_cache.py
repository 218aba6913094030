from __future__ import annotations

import os
import time
from pathlib import Path

from click.testing import CliRunner

from mmlupro_local.cli import main
from mmlupro_local.engine.prefix_cache import PrefixCache, cache_key


def test_round_trip_and_counts(tmp_path: Path) -> None:
    cache = PrefixCache(tmp_path, 10_000)
    key = cache_key("model", [1, 2, 3])
    assert cache.load(key) is None
    cache.save(key, b"state" * 10)
    assert cache.load(key) == b"state" * 10
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache_key("model", [1, 2, 3]) == key != cache_key("model", [1, 2, 4])


def test_corrupt_or_foreign_entries_are_dropped_not_trusted(tmp_path: Path) -> None:
    cache = PrefixCache(tmp_path, 10_000)
    key = cache_key("a")
    cache.save(key, b"x" * 100)
    path = tmp_path / f"{key}.kv"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the payload
    path.write_bytes(bytes(data))
    assert cache.load(key) is None and not path.exists()
    other = cache_key("b")
    cache.save(other, b"y" * 100)
    (tmp_path / f"{other}.kv").rename(path)  # right file, wrong name
    assert cache.load(key) is None and not path.exists()
    path.write_bytes(b"short")
    assert cache.load(key) is None


def test_least_recently_used_entries_go_first(tmp_path: Path) -> None:
    cache = PrefixCache(tmp_path, 3 * (1000 + 200))
    keys = [cache_key(i) for i in range(3)]
    for i, key in enumerate(keys):
        cache.save(key, bytes(1000))
        os.utime(tmp_path / f"{key}.kv", (time.time() - 100 + i, time.time() - 100 + i))
    assert cache.load(keys[0]) is not None  # now the most recently used
    cache.save(cache_key(3), bytes(1000))
    assert cache.load(keys[1]) is None  # the oldest unused one was evicted
    assert cache.load(keys[0]) is not None and cache.load(keys[2]) is not None
    assert cache.info().total_bytes <= cache.max_bytes


def test_oversized_entry_is_not_stored(tmp_path: Path) -> None:
    cache = PrefixCache(tmp_path, 500)
    cache.save(cache_key("big"), bytes(1000))
    assert cache.info().entries == 0


def test_cache_commands(user_cache: Path) -> None:
    cache = PrefixCache(user_cache / "prefix-kv", 10_000)
    cache.save(cache_key("a"), bytes(100))
    out = CliRunner().invoke(main, ["cache", "info"]).output
    assert "entries:   1" in out and str(user_cache / "prefix-kv") in out
    out = CliRunner().invoke(main, ["cache", "clear"]).output
    assert out.startswith("deleted 1 entries")
    assert cache.info().entries == 0
