"""`mmlupro-local cache ...`: the saved prefix KV states, and the builds `make install`
caches in the same directory (llama-cpp-python wheels, llama-server)."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from mmlupro_local.config import PREFIX_CACHE_MAX_GB, cache_dir, prefix_cache_dir
from mmlupro_local.engine.prefix_cache import PrefixCache


def _cache() -> PrefixCache:
    return PrefixCache(prefix_cache_dir(), int(PREFIX_CACHE_MAX_GB * 2**30))


# where scripts/llama_wheel.sh and llama_server.sh keep their builds (scripts/portable.sh)
BUILDS = ("wheels", "llama-server")


def _builds() -> list[tuple[Path, int, int]]:
    """Each build folder that exists: its path, its builds and their bytes."""
    found = []
    for name in BUILDS:
        folder = cache_dir() / name
        if folder.is_dir():
            entries = [p for p in folder.iterdir() if p.is_dir()]
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            found.append((folder, len(entries), size))
    return found


@click.group("cache")
def cache() -> None:
    """The prefix cache: KV states of the 5-shot prefixes, saved so that a resumed run,
    a second sample or a rerun skips decoding them. Least recently used entries go
    first when it grows past its cap."""


@cache.command("info")
def info() -> None:
    """Where the prefix cache is, how many entries it holds and how large it is."""
    facts = _cache().info()
    click.echo(f"directory: {facts.directory}")
    click.echo(f"entries:   {facts.entries}")
    click.echo(
        f"size:      {facts.total_bytes / 2**20:.1f} MiB of {facts.max_bytes / 2**30:.1f} GiB"
    )
    if facts.temp_files:
        click.echo(
            f"stray:     {facts.temp_files} partial files from interrupted saves, "
            f"{facts.temp_bytes / 2**20:.1f} MiB ('cache clear' deletes them)"
        )
    for folder, entries, size in _builds():
        click.echo(
            f"builds:    {folder}: {entries} cached by make install, {size / 2**20:.1f} MiB "
            "('cache clear --builds' deletes them; the next make install rebuilds, minutes)"
        )


@cache.command("clear")
@click.option(
    "--builds",
    is_flag=True,
    help="Also delete the llama-cpp-python wheels and llama-server builds that make install "
    "cached (rebuilt by the next make install, in minutes).",
)
def clear(builds: bool) -> None:
    """Delete every saved prefix state (and with --builds the cached builds)."""
    entries, temps = _cache().clear()
    stray = f" and {temps} partial files" if temps else ""
    click.echo(f"deleted {entries} entries{stray} from {prefix_cache_dir()}")
    if builds:
        for folder, count, size in _builds():
            shutil.rmtree(folder)
            click.echo(f"deleted {count} builds ({size / 2**20:.1f} MiB) from {folder}")
