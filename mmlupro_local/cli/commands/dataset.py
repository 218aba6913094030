"""`mmlupro-local dataset ...`: inspect, verify, import, fetch and export datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mmlupro_local.cli.options import dataset_option
from mmlupro_local.config import datasets_dir
from mmlupro_local.datasets.dataset import (
    EMBEDDED_NAME,
    Dataset,
    dataset_dir,
    list_datasets,
    load_dataset,
)
from mmlupro_local.datasets.formats import write_jsonl
from mmlupro_local.datasets.library import (
    PROX_LANGUAGES,
    PROX_SETS,
    diff_datasets,
    fetch,
    fetch_prox,
    import_paths,
    prox_name,
)
from mmlupro_local.datasets.summary import (
    by_category,
    category_counts,
    chance_level,
    option_histogram,
)
from mmlupro_local.datasets.verify import verify
from mmlupro_local.files import output_text
from mmlupro_local.hub import DEFAULT_REPO


@click.group()
def dataset() -> None:
    """Inspect, verify, import, fetch and export MMLU-Pro datasets.

    The full MMLU-Pro test (12,032) and validation (70) splits ship inside the
    package as 'mmlu-pro'; other copies live in the user cache under a name.
    """


@dataset.command("info")
@dataset_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(dataset_name: str, as_json: bool) -> None:
    """Rows, categories, option counts, chance level and where copies live.

    \b
    Example:
      mmlupro-local dataset info --json
    """
    data = load_dataset(dataset_name)
    facts = _facts(data)
    if as_json:
        click.echo(json.dumps(facts, indent=2, ensure_ascii=False))
        return
    click.echo(f"Dataset:         {data.name}{' (embedded)' if data.name == EMBEDDED_NAME else ''}")
    click.echo(f"Source:          {data.meta.source}")
    click.echo(f"Revision:        {data.meta.revision or '-'}")
    click.echo(f"Content sha256:  {data.sha256}")
    for name, sha in data.meta.source_files.items():
        click.echo(f"  source file    {name}  sha256 {sha}")
    click.echo(f"Rows:            test {len(data.test):,}, validation {len(data.validation):,}")
    click.echo(f"Chance level:    {facts['chance']:.2%} (mean of 1/options over the test split)")
    click.echo("")
    click.echo(f"{'category':<18} {'test':>6} {'val':>4} {'chance':>8}")
    for category, count in facts["categories"].items():
        shots = facts["validation_categories"].get(category, 0)
        chance = facts["chance_by_category"][category]
        click.echo(f"{category:<18} {count:>6} {shots:>4} {chance:>8.2%}")
    histogram = ", ".join(f"{k}: {v}" for k, v in facts["options_histogram"].items())
    click.echo(f"\nOptions per test question: {histogram}")
    click.echo(f"\nStored at:       {facts['path']}")
    click.echo(f"User cache:      {facts['cache_dir']}")
    click.echo(f"Datasets:        {', '.join(facts['datasets'])}")


def _facts(data: Dataset) -> dict[str, Any]:
    groups = by_category(data.test)
    return {
        "name": data.name,
        "source": data.meta.source,
        "revision": data.meta.revision,
        "sha256": data.sha256,
        "source_files": data.meta.source_files,
        "test": len(data.test),
        "validation": len(data.validation),
        "categories": category_counts(data.test),
        "validation_categories": category_counts(data.validation),
        "options_histogram": {str(k): v for k, v in option_histogram(data.test).items()},
        "chance": chance_level(data.test),
        "chance_by_category": {c: chance_level(qs) for c, qs in groups.items()},
        "path": str(dataset_dir(data.name)),
        "cache_dir": str(datasets_dir()),
        "datasets": list_datasets(),
    }


@dataset.command("verify")
@dataset_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per finding.")
def verify_cmd(dataset_name: str, as_json: bool) -> None:
    """Check a dataset's schema and consistency; list what is odd in it.

    Findings: answer letter vs answer_index, "N/A" padding options, duplicate
    ids, categories without 5 validation exemplars, and the whitespace answer
    leak. Exits 1 when a finding is an error (prompts could not be built).
    """
    data = load_dataset(dataset_name)
    findings = verify(data)
    for f in findings:
        if as_json:
            row = {"check": f.check, "severity": f.severity, "message": f.message}
            click.echo(json.dumps({**row, "question_ids": list(f.question_ids)}))
        else:
            ids = _short_ids(f.question_ids)
            click.echo(f"{f.severity:<8} {f.check:<16} {f.message}{ids}")
    errors = sum(f.severity == "error" for f in findings)
    if not as_json:
        click.echo(
            f"{data.name}: {len(findings)} findings, {errors} errors (sha256 {data.sha256[:12]})"
        )
    if errors:
        raise SystemExit(1)


def _short_ids(ids: tuple[int, ...]) -> str:
    if not ids or len(ids) == 1:
        return ""
    shown = ", ".join(map(str, ids[:8]))
    return f" [ids {shown}{', ...' if len(ids) > 8 else ''}]"


LANG_HELP = "An MMLU-ProX translation's language: " + ", ".join(PROX_LANGUAGES) + "."


@dataset.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Name to store it under (use it with --dataset).")
@click.option("--lang", "language", default=None, help=LANG_HELP)
def import_cmd(paths: tuple[Path, ...], name: str, language: str | None) -> None:
    """Import MMLU-Pro data for offline use: parquet, JSON or JSONL files, or a directory.

    The split of each row comes from its 'split' field or the file name
    (test-*.parquet, validation-*.parquet). Parquet needs the 'hub' extra.
    MMLU-ProX rows (option_0 ... option_9) take their language from --lang or
    from the folder they sit in (ko/test-*.parquet), and are then evaluated
    with that language's prompt, stop words and answer extraction.

    \b
    Examples:
      mmlupro-local dataset import ~/MMLU-Pro --name stable
      mmlupro-local dataset import mmlu-pro.jsonl --name carried
      mmlupro-local dataset import ~/MMLU-ProX/ko --name mmlu-prox-ko
    """
    data = import_paths(list(paths), name=name, language=language)
    click.echo(
        f"imported {len(data.test):,} test and {len(data.validation):,} validation rows "
        f"as {data.name!r}" + (f" (language {data.language})" if data.language else "")
    )
    _echo_difference(data)


@dataset.command("fetch")
@click.argument("benchmark", type=click.Choice(["mmlu-pro", *PROX_SETS]), default="mmlu-pro")
@click.option("--lang", "languages", multiple=True, help=LANG_HELP + " Repeat for several.")
@click.option("--revision", default=None, help="Branch, tag or commit (default: latest).")
@click.option("--name", default=None, help="Name to store it under (default: hub-<commit>).")
@click.option("--repo", default=None, help="Hub dataset repository (default: the benchmark's).")
def fetch_cmd(
    benchmark: str,
    languages: tuple[str, ...],
    revision: str | None,
    name: str | None,
    repo: str | None,
) -> None:
    """Download MMLU-Pro, or MMLU-ProX in some languages, into the user cache.

    MMLU-ProX (li-lab/MMLU-ProX) is stored as mmlu-prox-<lang>: run it with
    --dataset mmlu-prox-ko. mmlu-prox-lite (li-lab/MMLU-ProX-Lite, 658 of its
    questions per language, lm-evaluation-harness's mmlu_prox_lite tasks) is
    stored as mmlu-prox-lite-<lang>. Honours HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN and
    HF_HOME. Offline, use 'dataset import' with files carried over instead.

    \b
    Examples:
      mmlupro-local dataset fetch
      mmlupro-local dataset fetch mmlu-prox --lang ko --lang de
      mmlupro-local dataset fetch mmlu-prox-lite --lang ko
    """
    if benchmark == "mmlu-pro":
        if languages:
            raise click.UsageError("--lang is for mmlu-prox: dataset fetch mmlu-prox --lang ko")
        fetched = [fetch(revision=revision, name=name, repo=repo or DEFAULT_REPO)]
    else:
        if not languages:
            raise click.UsageError(f"give one --lang or more ({', '.join(PROX_LANGUAGES)})")
        if name is not None:
            raise click.UsageError(
                f"{benchmark} is stored as {prox_name(languages[0], benchmark)}: leave out --name"
            )
        fetched = [
            fetch_prox(language=lang, revision=revision, benchmark=benchmark, repo=repo)
            for lang in dict.fromkeys(languages)
        ]
    for data in fetched:
        click.echo(
            f"fetched {data.meta.source} at {data.meta.revision} as {data.name!r}: "
            f"{len(data.test):,} test, {len(data.validation):,} validation rows"
        )
        errors = [f for f in verify(data) if f.severity == "error"]
        click.echo(f"verify: {'ok' if not errors else '; '.join(f.message for f in errors)}")
        _echo_difference(data)


def _echo_difference(data: Dataset) -> None:
    if data.language is not None:
        return  # a translation: every row differs from the English copy
    embedded = load_dataset(EMBEDDED_NAME)
    if data.sha256 == embedded.sha256:
        click.echo(f"identical to the embedded copy (sha256 {data.sha256[:12]})")
        return
    diff = diff_datasets(embedded, data)
    click.echo(f"differs from the embedded copy: {diff.summary()} (sha256 {data.sha256[:12]})")


@dataset.command("export")
@dataset_option
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSONL file to write (- for standard output).",
)
def export_cmd(dataset_name: str, out: Path) -> None:
    """Write a dataset as JSONL (one row per line, with its split), to import elsewhere.

    \b
    Example:
      mmlupro-local dataset export --out mmlu-pro.jsonl
      # on the air-gapped machine:
      mmlupro-local dataset import mmlu-pro.jsonl --name carried
    """
    data = load_dataset(dataset_name)
    with output_text(out) as handle:
        write_jsonl([*data.test, *data.validation], handle)
    where = "standard output" if str(out) == "-" else out
    click.echo(
        f"wrote {len(data.test) + len(data.validation):,} rows of {data.name!r} to {where}",
        err=True,
    )
