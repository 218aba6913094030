"""`mmlupro-local quants`: which of these quantizations to run, one table."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import click

from mmlupro_local.cli import options as o
from mmlupro_local.model.source import model_path
from mmlupro_local.run.request import RESULTS_DIR
from mmlupro_local.studies.quants import Interval, QuantRow, QuantsPlan, evaluate

NO_FIGURE = "-"


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
@o.OptionGroup(o.table_or_json_option, o.progress_option)
@o.dataset_option
def quants_cmd(models: tuple[str, ...], **options: Any) -> None:
    """Compare quantizations of one model with the first (REFERENCE): one table of size,
    bits per weight, peak memory, speed, divergence from the reference, estimated score
    and its difference from the reference's, with a verdict against --margin.

    The teacher-forced divergence runs first, on the reference's answers; then every
    model answers the same seeded sample, which grows (nested) until each verdict is
    settled or --max-questions is reached. Interrupt and rerun: it resumes.

    \b
    Examples:
      mmlupro-local quants q8_0.gguf q4_k_m.gguf q2_k.gguf
      mmlupro-local quants q8_0.gguf q4_k_m.gguf --margin 2 --format json
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
    )
    rows = evaluate(plan, echo=partial(click.echo, err=True), progress=o.show_progress(options))
    if options["fmt"] == "json":
        payload = {"margin_points": options["margin"], "models": [r.to_json() for r in rows]}
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(render(rows, plan.margin))


def _points(i: Interval | None, signed: bool = False) -> str:
    if i is None:
        return NO_FIGURE
    sign = "+" if signed else ""
    return f"{i.value * 100:{sign}.1f} [{i.low * 100:{sign}.1f}, {i.high * 100:{sign}.1f}]"


def _number(value: float | None, spec: str) -> str:
    return NO_FIGURE if value is None else format(value, spec)


def render(rows: list[QuantRow], margin: float) -> str:
    head = (
        "model",
        "type",
        "MiB",
        "bpw",
        "peak MiB",
        "prompt t/s",
        "gen t/s",
        "KL mean",
        "KL p99",
        "same top",
        "score %",
        "vs ref, points",
        "verdict",
    )
    table = [head]
    for r in rows:
        verdict = (
            "the reference"
            if r.reference
            else r.settled.sentence(r.difference.value if r.difference else 0.0, margin)
        )
        peak = None if r.peak_memory_bytes is None else r.peak_memory_bytes / 2**20
        table.append(
            (
                r.name,
                r.quant_type,
                f"{r.size_bytes / 2**20:,.0f}",
                _number(r.bits_per_weight, ".2f"),
                _number(peak, ",.0f"),
                _number(r.prompt_tokens_per_s or None, ".1f"),
                _number(r.gen_tokens_per_s or None, ".1f"),
                _number(r.kl_mean, ".4f"),
                _number(r.kl_p99, ".3f"),
                _number(r.top1_agreement, ".1%"),
                _points(r.estimate)
                + (" (ref.)" if r.estimator == "reference as predictor" else ""),
                NO_FIGURE if r.reference else _points(r.difference, signed=True),
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table]
    notes = [r for r in rows if r.divergence_note]
    lines += [f"{r.name}: no divergence figures: {r.divergence_note}" for r in notes]
    lines.append(
        "score: estimated full score with its 95 % interval, widened for the looks taken; "
        "(ref.): the reference's estimate plus the paired difference, narrower than the "
        "model's own; KL in nats per answer token along the reference's answers"
    )
    return "\n".join(lines)
