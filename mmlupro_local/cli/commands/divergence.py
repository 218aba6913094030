"""`mmlupro-local divergence`: how far a model's next-token distributions are from a
reference model's, along the reference's own answers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from mmlupro_local.cli import options as o
from mmlupro_local.engine.server import redact_command
from mmlupro_local.model.source import model_path
from mmlupro_local.run.request import RunRequest, default_out
from mmlupro_local.run.targets.gguf import GgufSpec
from mmlupro_local.studies.divergence import TOP_K, check_pair, measure, reference_texts


@click.command("divergence")
@click.argument("reference")
@click.argument("model")
@o.sample_options
@o.prompt_options
@o.method_option
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    help="The reference's generation budget [default: as run's].",
)
@o.OptionGroup(o.threads_option, o.gpu_layers_option)
@o.parallel_option
@click.option(
    "--results",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A finished run of REFERENCE on this sample: its answers are reused, none generated.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the reference's run is saved [default: as run names it].",
)
@click.option(
    "--top-k",
    type=click.IntRange(1),
    default=TOP_K,
    show_default=True,
    help="Reference tokens kept per position (the rest count as one).",
)
@o.OptionGroup(o.table_or_json_option, o.progress_option)
@o.dataset_option
def divergence_cmd(reference: str, model: str, **options: Any) -> None:
    """How far MODEL's next-token distributions are from REFERENCE's, far more sensitive
    than accuracy: the reference's greedy answers (generated as 'run' would, or read
    from --results) are fed through both models, and per category and overall this
    prints the mean KL divergence KL(REFERENCE || MODEL) per answer token and the share
    of positions where both put the same token on top. Both must share a vocabulary.
    With --method logprob the answers are the reference's chosen letters: one position
    per question, the distribution the letter was chosen from.

    \b
    Examples:
      mmlupro-local divergence q8_0.gguf q4_k_m.gguf --per-category 2
      mmlupro-local divergence q8_0.gguf q4_k_m.gguf --per-category 10 --results q8.jsonl
    """
    sample = o.sample_spec(options)
    ref_path, model_file = model_path(reference), model_path(model)
    check_pair(ref_path, model_file)
    prompt = o.prompt_settings(options)
    threads, gpu_layers = options["threads"], options["gpu_layers"]
    target = GgufSpec(
        path=ref_path,
        source=reference if reference.startswith("hf://") else "",
        threads=threads,
        lookup=0,
        gpu_layers=gpu_layers,
    )
    request = RunRequest(
        target=target,
        out=options["out"]
        or default_out(
            ref_path.stem, prompt.style, prompt.shots, sample.seed, method=options["method"]
        ),
        dataset=options["dataset_name"],
        sample=sample,
        prompt=prompt,
        method=options["method"],
        max_tokens=options["max_tokens"],
        parallel=options["parallel"],
        command=redact_command(sys.argv),
    )
    echo, progress = (lambda t: click.echo(t, err=True)), o.show_progress(options)
    texts = reference_texts(ref_path, request, options["results"], echo=echo, progress=progress)
    settings = target.engine_settings()
    report = measure(ref_path, model_file, texts, settings, k=options["top_k"], progress=progress)
    if options["fmt"] == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.render())
