"""`mmlupro-local quants`: which of these quantizations to run, one table."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import click

from mmlupro_local.cli import options as o
from mmlupro_local.files import output_text
from mmlupro_local.model.source import model_path
from mmlupro_local.run.request import RESULTS_DIR
from mmlupro_local.studies.quants import QuantsPlan, evaluate
from mmlupro_local.studies.quants_view import render_page, render_table


@click.command("quants")
@click.argument("models", nargs=-1, required=True)
@click.option(
    "--margin",
    type=o.FiniteFloat(0, min_open=True),
    default=1.0,
    show_default=True,
    metavar="POINTS",
    help="Equivalence margin: a model within +/-POINTS of the reference is 'equivalent'.",
)
@click.option(
    "--per-category",
    "start",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Questions per category in the first round; the sample doubles until settled.",
)
@click.option(
    "--max-questions",
    type=click.IntRange(14),
    default=1400,
    show_default=True,
    help="The most questions any model answers (the sample stops growing there).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="The sample's seed.")
@o.method_option
@click.option("--max-tokens", type=click.IntRange(1), help="Generation budget [default: as run's].")
@o.OptionGroup(o.threads_option, o.gpu_layers_option)
@click.option(
    "--reference-results",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A finished results file of the reference (in-process or server, its sample "
    "containing the quants'): its answers stand for the reference's, none generated.",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(RESULTS_DIR) / "quants",
    show_default=True,
    help="Where each model's results file is kept (each resumable).",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a self-contained page: the table, and the difference from the "
    "reference against file size and against speed, the Pareto front marked.",
)
@o.OptionGroup(o.table_or_json_option, o.progress_option)
@o.dataset_option
def quants_cmd(models: tuple[str, ...], **options: Any) -> None:
    """Compare quantizations of one model with the first (REFERENCE): one table of size,
    bits per weight, peak memory, speed, divergence from the reference, estimated score
    and its difference from the reference's, with a verdict against --margin.

    The teacher-forced divergence runs first, on the reference's answers; then every
    model answers the same seeded sample, which grows (nested) until each verdict is
    settled or --max-questions is reached. Interrupt and rerun: it resumes, and the
    divergence is not measured again. A model with the reference's sha256 is the
    reference's weights: its answers are the reference's, not made again.

    --method logprob reaches a verdict far sooner (one forward pass per question,
    nothing generated), on the letter-choice score rather than the chain of thought's.

    \b
    Examples:
      mmlupro-local quants q8_0.gguf q4_k_m.gguf q2_k.gguf
      mmlupro-local quants q8_0.gguf q4_k_m.gguf --margin 2 --format json
      mmlupro-local quants q4_k_m.gguf q2_k.gguf --method logprob --html quants.html
    """
    if len(models) < 2:
        raise click.UsageError("give the reference and at least one other model")
    paths = [model_path(m) for m in models]
    stems = [p.name.removesuffix(".gguf") for p in paths]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise click.UsageError(
            f"{twice[0]} is given twice: each model keeps a results file named after it "
            "(to compare a model with itself, give a copy under another name)"
        )
    plan = QuantsPlan(
        models=paths,
        out_dir=options["out_dir"],
        margin=options["margin"] / 100,
        start=options["start"],
        max_questions=options["max_questions"],
        seed=options["seed"],
        max_tokens=options["max_tokens"],
        threads=options["threads"],
        gpu_layers=options["gpu_layers"],
        dataset=options["dataset_name"],
        reference_results=options["reference_results"],
        method=options["method"],
    )
    page = options["html_path"]
    if page is not None and not page.absolute().parent.is_dir():
        # named now, not after the models have run
        raise click.BadParameter(
            f"{page.parent} is not a folder: create it, or give the page another path",
            param_hint="--html",
        )
    rows = evaluate(plan, echo=partial(click.echo, err=True), progress=o.show_progress(options))
    if page is not None:
        with output_text(page) as handle:
            handle.write(render_page(rows, plan.margin))
        click.echo(f"quants: the page is {page}", err=True)
    if options["fmt"] == "json":
        payload = {"margin_points": options["margin"], "models": [r.to_json() for r in rows]}
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(render_table(rows, plan.margin))
