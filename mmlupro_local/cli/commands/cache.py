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


def _builds() -> list[tuple[Path, list[Path], int, int]]:
    """Each build folder that exists: its path, its finished builds, their bytes, and how
    many builds are under way (the scripts build in KEY.tmp.PID, then rename it)."""
    found = []
    for name in BUILDS:
        folder = cache_dir() / name
        if folder.is_dir():
            entries = [p for p in folder.iterdir() if p.is_dir()]
            done = [p for p in entries if ".tmp." not in p.name]
            size = sum(f.stat().st_size for d in done for f in d.rglob("*") if f.is_file())
            found.append((folder, done, size, len(entries) - len(done)))
    return found


def _cannot_delete(exc: OSError) -> click.ClickException:
    where = f" {exc.filename}" if exc.filename else ""
    return click.ClickException(
        f"cannot delete{where}: {exc.strerror or exc}. Make the folder writable by you, or "
        "point MMLUPRO_LOCAL_CACHE at a cache folder of your own"
    )


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
    for folder, done, size, building in _builds():
        under_way = f" ({building} being built, not counted)" if building else ""
        click.echo(
            f"builds:    {folder}: {len(done)} cached by make install, {size / 2**20:.1f} MiB"
            f"{under_way} ('cache clear --builds' deletes them; the next make install "
            "rebuilds, minutes)"
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
    try:
        entries, temps = _cache().clear()
    except OSError as exc:  # a read-only cache (issue 32, case 14)
        raise _cannot_delete(exc) from exc
    stray = f" and {temps} partial files" if temps else ""
    click.echo(f"deleted {entries} entries{stray} from {prefix_cache_dir()}")
    if builds:
        for folder, done, size, building in _builds():
            try:  # the builds inside, so that a folder that is a link stays one
                for build in done:
                    shutil.rmtree(build)
            except OSError as exc:
                raise _cannot_delete(exc) from exc
            left = f"; {building} being built left alone" if building else ""
            click.echo(f"deleted {len(done)} builds ({size / 2**20:.1f} MiB) from {folder}{left}")
