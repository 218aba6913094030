"""`mmlupro-local divergence`: how far a model's next-token distributions are from a
reference model's, along the reference's own answers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mmlupro_local.cli.dataset_cmds import dataset_option
from mmlupro_local.cli.run_cmd import categories_callback, default_out, parallel_value
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.divergence import TOP_K, measure, reference_texts
from mmlupro_local.engine import EngineSettings
from mmlupro_local.model.hardware import physical_cores
from mmlupro_local.model.source import model_path
from mmlupro_local.runner import RunConfig
from mmlupro_local.task.prompt import MAX_SHOTS, STYLES, PromptSettings, Style
from mmlupro_local.task.settings import MAX_TOKENS


@click.command("divergence")
@click.argument("reference")
@click.argument("model")
@click.option("--per-category", type=int, help="Questions per category (seeded random draw).")
@click.option("--fraction", type=float, help="Fraction of each category.")
@click.option("--full", is_flag=True, help="All 12,032 test questions.")
@click.option(
    "--categories", callback=categories_callback, help="Only these categories (comma-separated)."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Sample seed.")
@click.option("--style", type=click.Choice(STYLES), default=PromptSettings.style, show_default=True)
@click.option("--shots", type=click.IntRange(0, MAX_SHOTS), default=MAX_SHOTS, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1), default=MAX_TOKENS, show_default=True,
              help="The reference's generation budget.")  # fmt: skip
@click.option("--threads", type=click.IntRange(1), help="CPU threads [default: physical cores].")
@click.option("--gpu-layers", type=int, default=EngineSettings.gpu_layers, show_default=True)
@click.option("--parallel", default="1", show_default=True,
              help="Questions the reference answers together (as in run).")  # fmt: skip
@click.option(
    "--results",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A finished run of REFERENCE on this sample: its answers are reused, none generated.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where the reference's run is saved [default: as run names it].")  # fmt: skip
@click.option("--top-k", type=click.IntRange(1), default=TOP_K, show_default=True,
              help="Reference tokens kept per position (the rest count as one).")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)  # fmt: skip
@click.option("--progress/--no-progress", default=True)
@dataset_option
def divergence_cmd(reference: str, model: str, per_category: int | None, fraction: float | None,
                   full: bool, categories: tuple[str, ...], seed: int, style: Style, shots: int,
                   max_tokens: int, threads: int | None, gpu_layers: int, parallel: str,
                   results: Path | None, out: Path | None, top_k: int, fmt: str,
                   progress: bool, dataset_name: str) -> None:  # fmt: skip
    """How far MODEL's next-token distributions are from REFERENCE's, far more sensitive
    than accuracy: the reference's greedy answers (generated as 'run' would, or read
    from --results) are fed through both models, and per category and overall this
    prints the mean KL divergence KL(REFERENCE || MODEL) per answer token and the share
    of positions where both put the same token on top. Both must share a vocabulary.

    \b
    Examples:
      mmlupro-local divergence q8_0.gguf q4_k_m.gguf --per-category 2
      mmlupro-local divergence q8_0.gguf q4_k_m.gguf --per-category 10 --results q8.jsonl
    """
    if sum((per_category is not None, fraction is not None, full)) != 1:
        raise click.UsageError("choose exactly one of --per-category N, --fraction F or --full")
    ref_path, model_file = model_path(reference), model_path(model)
    settings = EngineSettings(threads=threads or physical_cores(), gpu_layers=gpu_layers)
    n_parallel = parallel_value(parallel)  # None: 'auto', decided by the run
    config = RunConfig(
        model=ref_path,
        out=out or default_out(ref_path, style, shots, seed),
        model_source=reference if reference.startswith("hf://") else "",
        dataset=dataset_name,
        sample=SampleSpec(seed=seed, per_category=per_category, fraction=fraction,
                          categories=categories),
        prompt=PromptSettings(style=style, shots=shots),
        max_tokens=max_tokens,
        engine=settings,
        parallel=n_parallel or 1,
        auto=frozenset({"parallel"}) if n_parallel is None else frozenset(),
        command=tuple(sys.argv),
    )  # fmt: skip
    texts = reference_texts(config, results, echo=lambda t: click.echo(t, err=True),
                            progress=progress)  # fmt: skip
    report = measure(ref_path, model_file, texts, settings, k=top_k, progress=progress)
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.render())
