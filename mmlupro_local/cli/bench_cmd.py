"""`mmlupro-local bench`: how fast this machine runs a model, and the best --parallel."""

from __future__ import annotations

import click

from mmlupro_local.bench import (
    TIMED_BUDGET,
    best_attention,
    best_width,
    peak_memory_mib,
    throughput,
    timed_runs,
)
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.engine import KV_TYPES, KvType
from mmlupro_local.model.hardware import physical_cores
from mmlupro_local.model.source import model_path


@click.command("bench")
@click.argument("model")
@click.option(
    "--per-category",
    type=int,
    default=2,
    show_default=True,
    help="Questions per category in the timed runs.",
)
@click.option(
    "--max-tokens",
    type=int,
    default=TIMED_BUDGET,
    show_default=True,
    help="Generation budget in the timed runs.",
)
@click.option("--threads", type=click.IntRange(1), help="CPU threads [default: physical cores].")
@click.option(
    "--kv-type",
    type=click.Choice(KV_TYPES),
    default="f16",
    show_default=True,
    help="KV cache type for the throughput and the parallel runs.",
)
@click.option(
    "--lookup",
    type=click.IntRange(0, 64),
    default=16,
    show_default=True,
    help="Also time the warm parallel run with --lookup N (0: skip it).",
)
@click.option("--quick", is_flag=True, help="Only the raw throughput, no timed runs.")
def bench_cmd(
    model: str,
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

    \b
    Example:
      mmlupro-local bench model.gguf
    """
    from mmlupro_local.model.gguf import read_gguf

    path = model_path(model)
    read_gguf(path)  # a clear error for a wrong file before anything loads
    threads = threads or physical_cores()
    click.echo(f"{path.name}, {threads} threads")
    click.echo("raw llama_decode throughput, tokens/s, 1,300-token shared prefix:")
    guesses = lookup or 16
    measured = throughput(path, threads, kv_type=kv_type, guesses=guesses)
    click.echo(
        f"  {'flash attention':<40}" + "".join(f"{_onoff(t.flash_attn):>8}" for t in measured)
    )
    rows = [("prompt", [t.prompt_rate for t in measured])]
    rows += [(f"--parallel {n}: generation", [t.generation[n] for t in measured])
             for n in measured[0].generation]  # fmt: skip
    rows.append((f"{guesses} guesses checked per step (--lookup)", [t.checking for t in measured]))
    for label, rates in rows:
        click.echo(f"  {label:<40}" + "".join(f"{rate:>8.1f}" for rate in rates))
    widest = {t.flash_attn: best_width(t.generation) for t in measured}
    flash = best_attention(measured, lambda t: t.generation[widest[t.flash_attn]])
    best = widest[flash]
    lookup_flash = best_attention(measured, lambda t: t.checking)
    click.echo(f"best here: --parallel {best} with flash attention {_onoff(flash)} "
               f"(with --lookup: {_onoff(lookup_flash)})")  # fmt: skip
    if quick:
        return
    spec = SampleSpec(per_category=per_category)
    click.echo(f"timed runs: {per_category} per category (seed 0), budget {max_tokens}, early stop")
    runs = timed_runs(path, threads, best, spec, max_tokens, kv_type, lookup, flash)
    base = runs[0]
    click.echo(f"  {'':<50}{'seconds':>8}{'q/min':>7}{'speed-up':>9}{'outside decode':>15}"
               f"{'gen tokens':>11}{'agree':>7}")  # fmt: skip
    for r in runs:
        agree = sum(base.predictions.get(q) == p for q, p in r.predictions.items())
        click.echo(
            f"  {r.name:<50}{r.wall:>8.1f}{r.questions / r.wall * 60:>7.2f}{base.wall / r.wall:>8.2f}x"
            f"{r.outside_decode:>15.1%}{r.generated:>11}{agree:>4}/{base.questions:<2}"
        )
    click.echo(
        "  agree: predictions equal to those of --parallel 1 (batch shapes change the "
        "floating-point path, and a greedy choice can flip); gen tokens: the work each did"
    )
    click.echo(f"peak resident memory: {peak_memory_mib():.0f} MiB")


def _onoff(flag: bool) -> str:
    return "on" if flag else "off"
