"""`mmlupro-local bench`: how fast this machine runs a model, and the best --parallel."""

from __future__ import annotations

import click

from mmlupro_local.bench import best_width, peak_memory_mib, throughput, timed_runs
from mmlupro_local.engine import KV_TYPES
from mmlupro_local.hardware import physical_cores
from mmlupro_local.models import model_path
from mmlupro_local.sampling import SampleSpec


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
    default=512,
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
    kv_type: str,
    lookup: int,
    quick: bool,
) -> None:
    """Measure MODEL (a GGUF file or hf://OWNER/REPO/FILE.gguf): prompt and generation tokens/s at --parallel 1, 2, 4, 8, then a
    fixed stratified sample run with --parallel 1 and no prefix cache against the best
    N with a cold and a warm prefix cache, and warm with --lookup. Prints the best
    --parallel for this machine.

    \b
    Example:
      mmlupro-local bench model.gguf
    """
    from mmlupro_local.gguf import read_gguf

    path = model_path(model)
    read_gguf(path)  # a clear error for a wrong file before anything loads
    threads = threads or physical_cores()
    click.echo(f"{path.name}, {threads} threads")
    click.echo("raw llama_decode throughput, 1,300-token shared prefix:")
    measured = throughput(path, threads, kv_type=kv_type)
    for t in measured:
        click.echo(
            f"  --parallel {t.parallel}: generation {t.generation_rate:6.1f} tok/s, prompt {t.prompt_rate:6.0f} tok/s"
        )
    best = best_width(measured)
    click.echo(f"best --parallel for generation here: {best}")
    if quick:
        return
    spec = SampleSpec(per_category=per_category)
    click.echo(f"timed runs: {per_category} per category (seed 0), budget {max_tokens}, early stop")
    runs = timed_runs(path, threads, best, spec, max_tokens, kv_type, lookup)
    base = runs[0]
    click.echo(f"  {'':<42}{'seconds':>8}{'q/min':>7}{'speed-up':>9}{'outside decode':>15}"
               f"{'gen tokens':>11}{'agree':>7}")  # fmt: skip
    for r in runs:
        agree = sum(base.predictions.get(q) == p for q, p in r.predictions.items())
        click.echo(
            f"  {r.name:<42}{r.wall:>8.1f}{r.questions / r.wall * 60:>7.2f}{base.wall / r.wall:>8.2f}x"
            f"{r.outside_decode:>15.1%}{r.generated:>11}{agree:>4}/{base.questions:<2}"
        )
    click.echo(
        "  agree: predictions equal to those of --parallel 1 (batch shapes change the "
        "floating-point path, and a greedy choice can flip); gen tokens: the work each did"
    )
    click.echo(f"peak resident memory: {peak_memory_mib():.0f} MiB")
