from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import mmlupro_local.engine.prefix_cache as prefix_cache_module
from fakes import (
    FakeEngine,
    FullDisk,
    invoke,
    reference_request,
)
from mmlupro_local.cli import main
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.engine.prefix_cache import PrefixCache, cache_key
from mmlupro_local.run.runner import run


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


def test_a_failed_cache_save_leaves_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13, case 3."""
    cache = PrefixCache(tmp_path, 10_000)
    monkeypatch.setattr(prefix_cache_module.os, "fdopen", FullDisk)
    assert cache.save(cache_key("a"), b"x" * 1000) is False
    assert list(tmp_path.iterdir()) == []  # no .kv.XXXX left behind
    assert cache.saved == 0 and cache.not_saved == ["No space left on device"]


def test_stray_temp_files_are_counted_and_cleared(tmp_path: Path, user_cache: Path) -> None:
    """Issue 13, case 3."""
    directory = user_cache / "prefix-kv"
    directory.mkdir(parents=True)
    stray = directory / ".kv.abc123"
    stray.write_bytes(b"\0" * 3 * 2**20)
    info = invoke("cache", "info")
    assert "stray:     1 partial files from interrupted saves, 3.0 MiB" in info.output
    cleared = invoke("cache", "clear")
    assert "deleted 0 entries and 1 partial files" in cleared.output and not stray.exists()
    # one a killed process left an hour ago goes with the next save's eviction
    cache = PrefixCache(directory, 10_000)
    stray.write_bytes(b"\0")
    old = time.time() - 2 * 3600
    os.utime(stray, (old, old))
    assert cache.save(cache_key("b"), b"y")
    assert not stray.exists()


def test_the_cache_leaves_the_disk_space_results_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13, case 3."""
    from mmlupro_local.engine.prefix_cache import RESERVE_BYTES

    cache = PrefixCache(tmp_path, 2**30)
    monkeypatch.setattr(
        prefix_cache_module.shutil,
        "disk_usage",
        lambda path: type("U", (), {"free": RESERVE_BYTES + 500})(),
    )
    assert cache.save(cache_key("a"), b"x" * 1000) is False
    assert "the cache keeps 1 GiB for results" in cache.not_saved[0]
    assert not any(tmp_path.iterdir())


def test_the_run_reports_a_failed_save_truthfully(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13, case 3."""

    class SavingEngine(FakeEngine):
        def generate_many(self, jobs, **kwargs):  # type: ignore[no-untyped-def]
            self.prefix_cache.misses += 1
            self.prefix_cache.save(cache_key("p"), b"state")
            yield from super().generate_many(jobs, **kwargs)

    monkeypatch.setattr(prefix_cache_module.os, "fdopen", FullDisk)
    said: list[str] = []
    run(
        reference_request(
            model, out=tmp_path / "r.jsonl", sample=SampleSpec(per_category=1, categories=("law",))
        ),
        echo=said.append,
        engine_factory=SavingEngine(),
        progress=False,
    )
    summary = [s for s in said if s.startswith("prefix cache")]
    assert summary == [
        "prefix cache: 0 loaded, 1 decoded, 0 saved, 1 not saved (No space left on device)"
    ]


def test_cache_info_and_clear_cover_the_builds_make_install_cached(user_cache: Path) -> None:
    """Issue 27, point 9: the wheels and llama-server live under the same cache root."""
    wheel = user_cache / "wheels" / "0123456789abcdef" / "llama_cpp_python-0.3.36.whl"
    server = user_cache / "llama-server" / "fedcba9876543210" / "llama-server"
    for built in (wheel, server):
        built.parent.mkdir(parents=True)
        built.write_bytes(b"x" * 2**20)
    shown = invoke("cache", "info")
    assert f"builds:    {user_cache / 'wheels'}: 1 cached by make install, 1.0 MiB" in shown.output
    assert f"{user_cache / 'llama-server'}: 1 cached" in shown.output
    assert invoke("cache", "clear").exit_code == 0 and wheel.exists() and server.exists()
    cleared = invoke("cache", "clear", "--builds")
    assert cleared.exit_code == 0 and not wheel.exists() and not server.exists()
    assert f"deleted 1 builds (1.0 MiB) from {user_cache / 'wheels'}" in cleared.output


def test_cache_clear_says_what_it_cannot_delete_and_leaves_builds_under_way(
    user_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 32, case 14: a read-only prefix cache or build folder and a symlinked build
    folder gave tracebacks, and `cache info` counted a build under way as cached."""
    elsewhere = tmp_path / "shared-wheels"
    (elsewhere / "0123456789abcdef").mkdir(parents=True)
    (elsewhere / "0123456789abcdef" / "w.whl").write_bytes(b"x" * 2**20)
    (elsewhere / "0123456789abcdef.tmp.4242").mkdir()  # scripts/llama_wheel.sh at work
    (user_cache / "wheels").symlink_to(elsewhere)
    shown = invoke("cache", "info").output
    assert f"{user_cache / 'wheels'}: 1 cached by make install, 1.0 MiB (1 being built" in shown
    cleared = invoke("cache", "clear", "--builds")
    assert cleared.exit_code == 0, cleared.output
    assert "deleted 1 builds (1.0 MiB)" in cleared.output
    assert "1 being built left alone" in cleared.output
    assert (user_cache / "wheels").is_symlink()
    assert (elsewhere / "0123456789abcdef.tmp.4242").is_dir()
    assert not (elsewhere / "0123456789abcdef").exists()
    entry = user_cache / "prefix" / "x.kv"

    def denied(self: Path, missing_ok: bool = False) -> None:  # root ignores permission bits
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", denied)
    monkeypatch.setattr(PrefixCache, "_entries", lambda self: [(0.0, 1, entry)])
    refused = invoke("cache", "clear")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert f"cannot delete {entry}: Permission denied. Make the folder writable" in refused.output
