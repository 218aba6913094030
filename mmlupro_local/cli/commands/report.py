"""`mmlupro-local report` and `compare`: figures of results files, honestly stated."""

from __future__ import annotations

from pathlib import Path

import click

from mmlupro_local.files import output_text
from mmlupro_local.results.compare import compare, render_comparison, render_flips
from mmlupro_local.results.eee import write_eee
from mmlupro_local.results.html_report import render_html
from mmlupro_local.results.report import (
    FORMATS,
    headline,
    load_report,
    mode_note,
    render,
    unique_labels,
)

results_argument = click.argument(
    "results", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)


def _write_text(path: Path, text: str) -> None:
    with output_text(path) as handle:
        handle.write(text)


@click.command("report")
@results_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice([*FORMATS, "eee"]),
    default="table",
    show_default=True,
    help="eee: the Every Eval Ever schema (0.3.0), an aggregate JSON and a per-sample JSONL "
    "per run, written under --eee-dir in its datastore's layout.",
)
@click.option(
    "--eee-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("eee"),
    show_default=True,
    help="Where --format eee writes (data/<benchmark>/<developer>/<model>/ under it).",
)
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a self-contained HTML report here ('-': print it in place of the table).",
)
def report_cmd(results: tuple[Path, ...], fmt: str, eee_dir: Path, html_out: Path | None) -> None:
    """Per-category accuracy with 95 % intervals, extraction and cost, for RESULTS files.

    Several files give one column per run.

    \b
    Examples:
      mmlupro-local report run.jsonl
      mmlupro-local report q4.jsonl q8.jsonl --format markdown
      mmlupro-local report q4.jsonl q8.jsonl --html report.html
      mmlupro-local report run.jsonl --format eee --eee-dir for-eee
    """
    reports = [
        load_report(path, label=label)
        for path, label in zip(results, unique_labels(results), strict=True)
    ]
    for report in reports:
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
    if fmt == "eee":
        for report in reports:
            written = write_eee(report, eee_dir)
            click.echo(
                f"{report.label}: wrote {written.aggregate} and {written.rows} samples in {written.samples}"
            )
        return
    html_to_stdout = html_out is not None and str(html_out) == "-"
    if fmt == "table" and not html_to_stdout:
        for report in reports:
            sentence = headline(report)
            if sentence:
                click.echo(f"{report.label}: {sentence}" if len(reports) > 1 else sentence)
    if not html_to_stdout:  # one document on stdout (issue 32, case 10)
        click.echo(render(reports, fmt))
    note = mode_note(reports)
    if note:
        click.echo(f"note: {note}", err=True)
    if html_out is not None:
        comparison = None
        if len(reports) == 2 and reports[0].dataset_sha256 == reports[1].dataset_sha256:
            comparison = compare(reports[0], reports[1])
        _write_text(html_out, render_html(reports, comparison))
        if not html_to_stdout:
            click.echo(f"wrote {html_out}", err=True)


@click.command("compare")
@click.argument("a", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("b", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--flips", is_flag=True, help="List the questions whose predicted letter differs.")
@click.option(
    "--noise",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A run of A's model in another engine mode (--parallel N, --lookup N): how many "
    "answers flip with no change of model, shown next to the difference.",
)
def compare_cmd(a: Path, b: Path, as_json: bool, flips: bool, noise: Path | None) -> None:
    """Is B better than A? A paired test on the questions both runs answered.

    Prints the accuracy difference with a 95 % interval and an exact McNemar
    p-value, overall and per category, how often the two gave the same letter, and
    says in a sentence what it means.

    \b
    Examples:
      mmlupro-local compare q8_0.jsonl q4_k_m.jsonl --flips
      mmlupro-local compare q8_0.jsonl q4_k_m.jsonl --noise q8_0-parallel8.jsonl
    """
    paths = (a, b) if noise is None else (a, b, noise)
    reports = [
        load_report(path, label=label)
        for path, label in zip(paths, unique_labels(paths), strict=True)
    ]
    for report in reports:
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
    comparison = compare(*reports)
    if as_json:
        import json

        click.echo(json.dumps(comparison.to_json(), indent=2))
        return
    click.echo(render_comparison(comparison))
    if flips:
        click.echo("\nFlipped predictions (- : no letter extracted):")
        click.echo(render_flips(comparison))
