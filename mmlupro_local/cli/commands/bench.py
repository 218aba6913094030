"""`mmlupro-local bench`: how fast this machine runs a model, and the best --parallel."""

from __future__ import annotations

import click

from mmlupro_local.cli.options import NumberOrAuto
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.engine import KV_TYPES, MAX_LOOKUP, EngineSettings, KvType
from mmlupro_local.engine.mode import AUTO_LOOKUP
from mmlupro_local.engine.server import ServerSettings
from mmlupro_local.model.source import model_path
from mmlupro_local.results.figures import NO_FIGURE
from mmlupro_local.run.request import MAX_PARALLEL
from mmlupro_local.run.targets.gguf import GgufSpec
from mmlupro_local.studies.bench import (
    TIMED_BUDGET,
    TimedRun,
    best_attention,
    best_width,
    peak_memory_mib,
    server_runs,
    throughput,
    timed_runs,
)


@click.command("bench")
@click.argument("model", required=False)
@click.option(
    "--server",
    "servers",
    multiple=True,
    metavar="URL",
    help="Time runs through this OpenAI-compatible server instead (repeatable), next to "
    "MODEL in-process when given.",
)
@click.option(
    "--concurrency",
    default="1,2,4,8",
    show_default=True,
    help="With --server: requests in flight, one timed run each ('auto': the server's slots).",
)
@click.option(
    "--per-category",
    type=click.IntRange(1),  # checked before the throughput phase spends minutes
    default=2,
    show_default=True,
    help="Questions per category in the timed runs.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    default=TIMED_BUDGET,
    show_default=True,
    help="Generation budget in the timed runs.",
)
@click.option("--threads", type=click.IntRange(1), help="CPU threads [default: physical cores].")
@click.option(
    "--kv-type",
    type=click.Choice(KV_TYPES),
    default=EngineSettings.kv_type,
    show_default=True,
    help="KV cache type for the throughput and the parallel runs.",
)
@click.option(
    "--lookup",
    type=click.IntRange(0, MAX_LOOKUP),
    default=AUTO_LOOKUP,
    show_default=True,
    help="Also time the warm parallel run with --lookup N (0: skip it).",
)
@click.option("--quick", is_flag=True, help="Only the raw throughput, no timed runs.")
def bench_cmd(
    model: str | None,
    servers: tuple[str, ...],
    concurrency: str,
    per_category: int,
    max_tokens: int,
    threads: int | None,
    kv_type: KvType,
    lookup: int,
    quick: bool,
) -> None:
    """Measure MODEL (a GGUF file or hf://OWNER/REPO/FILE.gguf): prompt and generation tokens/s at --parallel 1, 2, 4, 8, then a
    fixed stratified sample run with --parallel 1 and no prefix cache against the best
    N with a cold and a warm prefix cache, and warm with --lookup. Prints the best
    --parallel for this machine, and whether flash attention pays with it and with
    --lookup (measured both ways; the timed runs use the choice for --parallel).

    With --server, times the same questions through each server at each --concurrency,
    next to MODEL in-process (its defaults) when given.

    \b
    Examples:
      mmlupro-local bench model.gguf
      mmlupro-local bench model.gguf --server http://127.0.0.1:8080/v1 --concurrency 1,4
    """
    from mmlupro_local.model.gguf import read_gguf

    if servers:
        _bench_servers(model, servers, concurrency, per_category, max_tokens, threads)
        return
    if model is None:
        raise click.UsageError("give MODEL (a GGUF file), or --server URL")
    path = model_path(model)
    read_gguf(path)  # a clear error for a wrong file before anything loads
    # the engine settings `run` would use here (GPU layers, attention, threads): one place
    target = GgufSpec(path=path, threads=threads, kv_type=kv_type)
    click.echo(f"{path.name}, {target.cores} threads, --gpu-layers {target.layers}")
    click.echo("raw llama_decode throughput, tokens/s, 1,300-token shared prefix:")
    guesses = lookup or AUTO_LOOKUP
    measured = throughput(target, guesses=guesses)
    click.echo(
        f"  {'flash attention':<40}" + "".join(f"{_onoff(t.flash_attn):>8}" for t in measured)
    )
    rows = [("prompt", [t.prompt_rate for t in measured])]
    rows += [
        (f"--parallel {n}: generation", [t.generation[n] for t in measured])
        for n in measured[0].generation
    ]
    rows.append((f"{guesses} guesses checked per step (--lookup)", [t.checking for t in measured]))
    for label, rates in rows:
        click.echo(f"  {label:<40}" + "".join(f"{rate:>8.1f}" for rate in rates))
    widest = {t.flash_attn: best_width(t.generation) for t in measured}
    flash = best_attention(measured, lambda t: t.generation[widest[t.flash_attn]])
    best = widest[flash]
    lookup_flash = best_attention(measured, lambda t: t.checking)
    click.echo(
        f"best here: --parallel {best} with flash attention {_onoff(flash)} "
        f"(with --lookup: {_onoff(lookup_flash)})"
    )
    if quick:
        return
    spec = SampleSpec(per_category=per_category)
    click.echo(f"timed runs: {per_category} per category (seed 0), budget {max_tokens}, early stop")
    defaults = target.rule_mode()
    runs = timed_runs(target, best, spec, max_tokens, lookup, flash)
    _table(runs, "--parallel 1")
    click.echo(f"peak resident memory: {peak_memory_mib():.0f} MiB")
    # against the runs that also began with an empty prefix cache
    mine = runs[-1]
    fastest = min((r for r in runs if not r.warm), key=lambda r: r.wall)
    verdict = (
        "the fastest cold run measured"
        if fastest is mine
        else f"{mine.wall / fastest.wall - 1:.0%} slower than the fastest cold run measured "
        f"({fastest.name}, {fastest.wall:.1f} s)"
    )
    click.echo(
        f"run's defaults here: {defaults.flags} ({defaults.reason}); {mine.wall:.1f} s, {verdict}"
    )


def _table(runs: list[TimedRun], base_name: str) -> None:
    base = runs[0]
    width = max(50, *(len(r.name) + 2 for r in runs))
    click.echo(
        f"  {'':<{width}}{'seconds':>8}{'q/min':>7}{'speed-up':>9}{'outside decode':>15}"
        f"{'gen tokens':>11}{'prompt reused':>14}{'agree':>7}"
    )
    for r in runs:
        agree = sum(base.predictions.get(q) == p for q, p in r.predictions.items())
        click.echo(
            f"  {r.name:<{width}}{r.wall:>8.1f}{r.questions / r.wall * 60:>7.2f}{base.wall / r.wall:>8.2f}x"
            f"{_share(r.outside_decode):>15}{r.generated:>11}{r.prompt_reused:>14.0%}"
            f"{agree:>4}/{base.questions:<2}"
        )
    click.echo(
        f"  agree: predictions equal to those of {base_name} (batch shapes change the "
        "floating-point path, and a greedy choice can flip); gen tokens: the work each did; "
        "prompt reused: prompt tokens found in a prefix cache (a server keeps its own "
        "between runs: start llama-server with --cache-ram 0 to time each run cold)"
    )


def _share(outside: float) -> str:
    """Concurrent requests' decoding times overlap and outrun the wall clock: no share."""
    return f"{outside:.1%}" if outside >= 0 else NO_FIGURE


def _bench_servers(
    model: str | None,
    servers: tuple[str, ...],
    concurrency: str,
    per_category: int,
    max_tokens: int,
    threads: int | None,
) -> None:
    width = NumberOrAuto(1, MAX_PARALLEL)  # None: the server's slots
    try:
        widths = tuple(width.convert(n, None, None) for n in concurrency.split(","))
    except click.BadParameter as exc:
        raise click.BadParameter(
            f"{exc.message} (a list such as 1,2,4,8 or 1,auto)", param_hint="--concurrency"
        ) from None
    path = model_path(model) if model else None
    settings = [ServerSettings(url=url) for url in servers]
    spec = SampleSpec(per_category=per_category)
    click.echo(f"timed runs: {per_category} per category (seed 0), budget {max_tokens}, early stop")
    runs = server_runs(settings, widths, spec, max_tokens, path, threads)
    _table(runs, runs[0].name)
    click.echo(f"  {'':<50}{'q/s':>8}{'gen tokens/s':>14}{'client CPU ms/q':>17}")
    for r in runs:
        rate = r.questions / r.wall if r.wall else 0.0
        tokens = r.generated / r.wall if r.wall else 0.0
        click.echo(f"  {r.name:<50}{rate:>8.1f}{tokens:>14,.0f}{r.cpu_per_question * 1000:>17.2f}")
    click.echo(
        "  client CPU per question near the time per question means the client is the limit; "
        "far below it, the server"
    )


def _onoff(flag: bool) -> str:
    return "on" if flag else "off"
