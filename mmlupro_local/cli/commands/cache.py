"""`mmlupro-local cache ...`: the saved prefix KV states."""

from __future__ import annotations

import click

from mmlupro_local.config import PREFIX_CACHE_MAX_GB, prefix_cache_dir
from mmlupro_local.engine.prefix_cache import PrefixCache


def _cache() -> PrefixCache:
    return PrefixCache(prefix_cache_dir(), int(PREFIX_CACHE_MAX_GB * 2**30))


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


@cache.command("clear")
def clear() -> None:
    """Delete every saved prefix state."""
    entries, temps = _cache().clear()
    stray = f" and {temps} partial files" if temps else ""
    click.echo(f"deleted {entries} entries{stray} from {prefix_cache_dir()}")
