"""Reports of results files: every figure of one or several runs, as data and as text."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmlupro_local.datasets.dataset import (
    EMBEDDED_NAME,
    OFFICIAL_MAX_TOKENS,
    Dataset,
    load_dataset,
)
from mmlupro_local.datasets.items import item_model
from mmlupro_local.datasets.library import LANGUAGE_NAMES
from mmlupro_local.datasets.summary import population_sizes
from mmlupro_local.datasets.verify import leaks_answer
from mmlupro_local.errors import MmluProError
from mmlupro_local.results.estimates import Estimate, FullScore, full_score, strict, with_guess
from mmlupro_local.results.figures import (
    NO_FIGURE,
    Figures,
    category_figures,
    figures,
    macro_accuracy,
    percent,
)
from mmlupro_local.results.records import Identity, ResultRecord, RunHeader
from mmlupro_local.results.store import SHOWN, read_results

FORMATS = ("table", "markdown", "json", "csv")


@dataclass
class RunReport:
    path: Path
    label: str
    first: RunHeader  # the run record that decided the results (their identity)
    latest: RunHeader  # the last session's (sample, engine, tool)
    records: list[ResultRecord]
    categories: list[Figures]
    overall: Figures
    leak: Figures | None  # the whitespace-leak questions, when the dataset is at hand
    rest: Figures | None
    sample_size: int
    warnings: list[str] = field(default_factory=list)
    score: FullScore | None = None  # the estimated full-benchmark score
    sizes: dict[str, int] | None = None  # questions per category sampled from, in the dataset
    sampled_categories: tuple[str, ...] = ()  # the categories the runs named (): all

    @property
    def identity(self) -> Identity:
        return self.first.identity

    @property
    def mode(self) -> str:
        """The engine mode as flags (those left at the engine's defaults unsaid)."""
        return self.identity.mode()

    @property
    def arithmetic(self) -> str:
        """What, besides the model, changes its greedy answers (Identity.arithmetic)."""
        return self.identity.arithmetic()

    @property
    def method(self) -> str:
        return self.identity.method

    @property
    def complete(self) -> bool:
        return len(self.records) >= self.sample_size

    @property
    def dataset_sha256(self) -> str:
        return self.identity.dataset_sha256

    @functools.cached_property
    def settings(self) -> dict[str, Any]:
        """The settings a report shows and writes (the HTML page reads them key by key)."""
        ident, model = self.identity, self.first.model
        return {
            "model": model.get("name"),
            "model_sha256": ident.model_sha256,
            "model_key": ident.model_key,
            "method": ident.method,
            "mode": self.mode,
            "quantization": model.get("quantization"),
            "architecture": model.get("architecture"),
            "dataset": self.first.dataset.get("name"),
            "language": self.first.dataset.get("language") or "en",
            "dataset_sha256": ident.dataset_sha256,
            "style": ident.prompt.style,
            # --thinking as set in the chat template ("": the template's own default)
            "thinking": ident.prompt.thinking
            or ("template default" if ident.prompt.style == "chat" else ""),
            "shots": ident.prompt.shots,
            "strip_options": ident.prompt.strip_options,
            "extract": ident.extraction.mode,
            "max_tokens": ident.generation.max_tokens,
            "think_budget": ident.generation.think_budget,
            "early_stop": ident.generation.early_stop,
            "seed": ident.seed,
            "sample": self.latest.sample.description,
            "engine": dict(self.latest.engine),
            "tool_version": self.latest.tool_version,
        }

    def to_json(self) -> dict[str, Any]:
        seconds = self.overall.seconds
        return {
            "file": str(self.path),
            "label": self.label,
            "settings": self.settings,
            **(self.score.to_json() if self.score else {}),
            "complete": self.complete,
            "sample_size": self.sample_size,
            "overall": self.overall.to_json(),
            "macro_accuracy": macro_accuracy(self.categories),
            "categories": {f.name: f.to_json() for f in self.categories},
            "leak_questions": self.leak.to_json() if self.leak else None,
            "other_questions": self.rest.to_json() if self.rest else None,
            "cost": {
                "prompt_tokens": self.overall.prompt_tokens,
                "decoded_prompt_tokens": self.overall.decoded_prompt_tokens,
                "generated_tokens": self.overall.generated_tokens,
                "seconds": seconds,
                "generated_tokens_per_second": self.overall.generated_tokens / seconds
                if seconds
                else 0.0,
                "questions_per_minute": self.overall.n / seconds * 60 if seconds else 0.0,
            },
            "warnings": self.warnings,
        }


def unique_labels(paths: tuple[Path, ...]) -> list[str]:
    """File stems, made unique when two runs share one."""
    stems = [p.stem for p in paths]
    return [s if stems.count(s) == 1 else f"{s} ({i + 1})" for i, s in enumerate(stems)]


def load_report(path: Path, *, label: str | None = None) -> RunReport:
    log = read_results(path)
    if log.header is None:
        if path.stat().st_size:  # a torn first line: killed as it began (issue 26, case 23)
            raise MmluProError(
                f"{path} holds only an incomplete run record (the run was killed as it began); "
                "run its command again, which starts it afresh"
            )
        raise MmluProError(f"{path} is empty: no run has written to it yet")
    latest = log.runs[-1]
    warnings = list(log.warnings)
    dataset = _dataset_of(log.header, warnings)
    records = list(log.results.values())
    if dataset is not None:
        records = _in_dataset(records, log.lines, dataset, path, warnings)
    rows, overall = category_figures(records)
    sample_size = latest.sample.size or len(records)
    if len(records) < sample_size:
        warnings.append(
            f"{path}: incomplete run, {len(records)} of {sample_size} questions; "
            "rerun its command to finish it"
        )
    leak, rest = _leak_split(records, dataset) if dataset else (None, None)
    sampled = sampled_categories(log.runs)
    sizes = population_sizes(dataset.test, sampled) if dataset else None
    score = estimate_full_score(records, dataset, sizes) if dataset and sizes else None
    return RunReport(
        path,
        label or path.stem,
        log.header,
        latest,
        records,
        rows,
        overall,
        leak,
        rest,
        sample_size,
        warnings,
        score,
        sizes,
        sampled,
    )


def sampled_categories(runs: Sequence[RunHeader]) -> tuple[str, ...]:
    """The categories a file's runs sampled from, together: a run topping up one category
    does not shrink the population the others drew from (issue 32, case 6); () is all."""
    return categories_union([run.sample.categories for run in runs])


def categories_union(named: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """Samples' categories together (each () meaning all); () is all."""
    if any(not categories for categories in named):
        return ()
    return tuple(sorted({c for categories in named for c in categories}))


def _in_dataset(
    records: list[ResultRecord],
    lines: dict[int, int],
    dataset: Dataset,
    path: Path,
    warnings: list[str],
) -> list[ResultRecord]:
    """The results whose question is in the run's dataset under the category it has
    there; the others (a hand-edited file: issue 32, case 9) are named by line and
    left out of every figure and the estimate, with a count."""
    categories = {q.question_id: q.category for q in dataset.test}
    kept, problems = [], []
    for record in records:
        where = f"{path} line {lines.get(record.question_id, '?')}"
        known = categories.get(record.question_id)
        if known is None:
            problems.append(f"{where}: question {record.question_id} is not in {dataset.name}")
        elif known != record.category:
            problems.append(
                f"{where}: question {record.question_id} is in {known!r}, not {record.category!r}"
            )
        else:
            kept.append(record)
    warnings.extend(problems[:SHOWN])
    if problems:
        more = f" ({len(problems) - SHOWN} not named above)" if len(problems) > SHOWN else ""
        warnings.append(
            f"{path}: {len(problems)} results left out of the report and the estimate{more}: "
            "the file was edited, or written for another dataset"
        )
    return kept


def _dataset_of(header: RunHeader, warnings: list[str]) -> Dataset | None:
    """The dataset the run drew from, when it is here as it was."""
    name = header.dataset.get("name")
    try:
        dataset = load_dataset(name or None)
    except MmluProError:
        warnings.append(
            f"dataset {name!r} is not available here: no leak figures and no estimate of "
            "the full score"
        )
        return None
    if dataset.sha256 != header.identity.dataset_sha256:
        warnings.append(
            "the dataset here differs from the one the run used: no leak figures and no "
            "estimate of the full score"
        )
        return None
    return dataset


def estimate_full_score(
    records: list[ResultRecord], dataset: Dataset, sizes: dict[str, int]
) -> FullScore | None:
    """Weighted by the category sizes of the dataset, over the categories the sample
    was drawn from; assisted by the item model where it was fitted on these questions."""
    chosen = set(sizes)
    model = item_model(dataset)
    items = model.by_question(dataset) if model else None
    population: dict[str, list[tuple[float, float]]] | None = None
    if items is not None:
        population = {}
        for q in dataset.test:
            if q.category in chosen:
                population.setdefault(q.category, []).append(items[q.question_id])
    return full_score(records, sizes, items, population, strict, with_guess)


def _leak_split(records: list[ResultRecord], dataset: Dataset) -> tuple[Figures, Figures]:
    leaking = {q.question_id for q in dataset.test if leaks_answer(q)}
    inside = [r for r in records if r.question_id in leaking]
    outside = [r for r in records if r.question_id not in leaking]
    return figures("leak questions", inside), figures("other questions", outside)


# -- text formats ----------------------------------------------------------------------


def _rate(report: RunReport, value: float) -> float | None:
    return value if report.overall.n else None


def _cell(f: Figures | None) -> str:
    if f is None or f.n == 0:
        return NO_FIGURE
    low, high = f.interval
    return f"{f.accuracy:.1%} [{low:.1%}, {high:.1%}]"


def _estimate_cell(e: Estimate | None) -> str:
    if e is None:
        return NO_FIGURE
    if e.exact:
        return f"{e.value:.1%} (exact)"
    return f"{e.value:.1%} [{e.low:.1%}, {e.high:.1%}]"


def _estimate_rows(reports: list[RunReport]) -> list[tuple[str, list[str]]]:
    scores = [r.score for r in reports]
    rows = [
        ("estimated full score", [_estimate_cell(s.strict if s else None) for s in scores]),
        (
            "  estimator",
            [
                f"{s.strict.method}, {s.strict.questions:,} of {s.strict.population:,}"
                if s
                else NO_FIGURE
                for s in scores
            ],
        ),
    ]
    if any(s and s.strict.method == "assisted" for s in scores):
        rows.append(
            ("  post-stratified", [_estimate_cell(s.strict_plain if s else None) for s in scores])
        )
    rows.append(("  guesses credited", [_estimate_cell(s.guesses if s else None) for s in scores]))
    return rows


def headline(report: RunReport) -> str:
    """The sentence a report of a sample leads with: what the full score is estimated to
    be, how sure, from what, and what it is the score of (issue 32, case 11)."""
    if report.score is None:
        return ""
    e = report.score.strict
    answered = sorted({r.category for r in report.records} & set(report.sizes or {}))
    score_of = _score_of(report, answered)
    if e.exact:
        said = f"{score_of} {e.value:.1%}: all {e.population:,} questions answered"
    else:
        how = (
            "post-stratified"
            if e.method == "post-stratified"
            else "assisted by an item model fitted on 20 official CoT runs"
        )
        said = (
            f"estimated {score_of} {e.value:.1%} (95 % CI {e.low:.1%}-{e.high:.1%}), "
            f"from {e.questions:,} of {e.population:,} questions, weighted by category size "
            f"({how})"
        )
    return "; ".join([said, *_provisos(report, answered)])


def _score_of(report: RunReport, answered: list[str]) -> str:
    """What the estimate is of: the benchmark (or the dataset it was run on), by the
    method, over the categories it has answers in."""
    name = report.first.dataset.get("name") or EMBEDDED_NAME
    bench = "MMLU-Pro" if name == EMBEDDED_NAME else f"{name!r}"
    if not report.identity.generation.generates:
        bench += " letter-choice"
    language = report.first.dataset.get("language")
    score = f"score in {LANGUAGE_NAMES.get(language, language)}" if language else "score"
    if report.sampled_categories or len(answered) < len(report.sizes or {}):
        return f"{bench} {score} on {_categories(answered)}"
    return f"{bench} {score}"


def _categories(names: Sequence[str]) -> str:
    return ", ".join(names) if len(names) <= 3 else f"{len(names)} categories"


def _provisos(report: RunReport, answered: list[str]) -> list[str]:
    """What keeps the number from being the benchmark's score as the official script
    measures it: categories without answers yet, a run cut short, a smaller budget."""
    said = []
    missing = len(report.sizes or {}) - len(answered)
    if missing:
        said.append(f"{missing} sampled categories have no answers yet")
    if not report.complete:
        said.append(
            f"cut short: {len(report.records):,} of {report.sample_size:,} sampled questions "
            "answered (run the same command again to finish)"
        )
    budget = report.identity.generation.max_tokens
    if report.identity.generation.generates and budget < OFFICIAL_MAX_TOKENS:
        said.append(
            f"at a {budget:,}-token budget, below the official {OFFICIAL_MAX_TOKENS:,} "
            "(answers it cuts off count as wrong)"
        )
    return said


def shared_questions(reports: Sequence[RunReport]) -> set[int]:
    """The questions every run answered, each under the same category: runs in several
    languages pair on them (MMLU-ProX's translations keep MMLU-Pro's question ids)."""
    if not reports:
        return set()
    category = {r.question_id: r.category for r in reports[0].records}
    ids = set(category)
    for report in reports[1:]:
        ids &= {r.question_id for r in report.records if category.get(r.question_id) == r.category}
    return ids


def _shared_rows(reports: list[RunReport]) -> list[tuple[str, list[str]]]:
    """Runs in several languages: each one's accuracy on the questions all of them
    answered, so that their columns compare the same questions."""
    if len({r.settings["language"] for r in reports}) < 2:
        return []
    ids = shared_questions(reports)
    cells = [
        _cell(figures("shared", [x for x in r.records if x.question_id in ids])) for r in reports
    ]
    return [(f"on the {len(ids)} questions all answered", cells)]


def _rows(reports: list[RunReport]) -> list[tuple[str, list[str]]]:
    names = sorted({f.name for r in reports for f in r.categories})
    rows = _estimate_rows(reports)
    for name in names:
        rows.append(
            (
                name,
                [_cell(next((f for f in r.categories if f.name == name), None)) for r in reports],
            )
        )
    # a per-category sample's mean counts each category equally: not the full score
    rows.append(("pooled sample mean", [_cell(r.overall) for r in reports]))
    rows.append(("macro average", [percent(macro_accuracy(r.categories)) for r in reports]))
    rows.append(
        ("with guesses credited", [percent(_rate(r, r.overall.official_accuracy)) for r in reports])
    )
    rows.append(("chance level", [percent(_rate(r, r.overall.chance)) for r in reports]))
    rows.append(
        (
            "above chance",
            [
                percent(_rate(r, r.overall.accuracy - r.overall.chance), signed=True)
                for r in reports
            ],
        )
    )
    rows.append(
        ("n", [str(r.overall.n) + ("" if r.complete else f" of {r.sample_size}") for r in reports])
    )
    rows.append(
        (
            "extracted at level 1/2/3",
            ["/".join(str(r.overall.levels.get(k, 0)) for k in (1, 2, 3)) for r in reports],
        )
    )
    rows.append(("guessed", [str(r.overall.guessed) for r in reports]))
    for points in (2, 1):
        rows.append((f"questions for +/-{points} points", [_needed(r, points) for r in reports]))
    rows.append(("hit the token budget", [str(r.overall.hit_budget) for r in reports]))
    if any(r.overall.thinking_tokens for r in reports):
        rows.append(
            (
                "thinking / answer tokens",
                [f"{r.overall.thinking_tokens}/{r.overall.answer_tokens}" for r in reports],
            )
        )
        rows.append(
            (
                "thinking tokens per question",
                [
                    f"{r.overall.thinking_tokens / r.overall.n:,.0f}" if r.overall.n else "-"
                    for r in reports
                ],
            )
        )
        rows.append(
            (
                "think blocks cut by the budget",
                [
                    f"{r.overall.think_cut} (budget {r.identity.generation.think_budget or 'none'})"
                    for r in reports
                ],
            )
        )
    rows.append(("whitespace-leak questions", [_cell(r.leak) for r in reports]))
    rows.append(("other questions", [_cell(r.rest) for r in reports]))
    rows += _shared_rows(reports)
    settings = [r.settings for r in reports]
    keys: tuple[str, ...] = ("model", "quantization", "method", "style", "shots", "max_tokens")
    if any(s["thinking"] for s in settings):
        keys = (*keys[:4], "thinking", *keys[4:])
    keys = (*(("language",) if len({s["language"] for s in settings}) > 1 else ()), *keys, "sample")
    for key in keys:
        rows.append((key, [str(s[key]) for s in settings]))
    rows.append(("engine mode", [r.mode for r in reports]))
    rows.append(
        (
            "prompt / decoded / generated tokens",
            [
                f"{r.overall.prompt_tokens}/{r.overall.decoded_prompt_tokens}/{r.overall.generated_tokens}"
                for r in reports
            ],
        )
    )
    rows.append(("wall time (s)", [f"{r.overall.seconds:.1f}" for r in reports]))
    rows.append(
        (
            "generated tokens/s",
            [
                f"{r.overall.generated_tokens / r.overall.seconds:.1f}"
                if r.overall.seconds
                else "-"
                for r in reports
            ],
        )
    )
    rows.append(
        (
            "questions/min",
            [
                f"{r.overall.n / r.overall.seconds * 60:.1f}" if r.overall.seconds else "-"
                for r in reports
            ],
        )
    )
    return rows


def _needed(report: RunReport, points: int) -> str:
    """How many questions an interval of +/- `points` would take from where the run stands."""
    if report.score is None:
        return NO_FIGURE
    e = report.score.strict
    needed = e.questions_for(points / 100)
    return "reached" if needed is None else f"about {needed:,}"


def mode_note(reports: list[RunReport]) -> str:
    """A line when the runs differ in engine mode (or method), which alone flips some
    greedy answers; "" when they do not."""
    modes = {r.arithmetic for r in reports}
    methods = {r.method for r in reports}
    notes = []
    if len(methods) > 1:
        notes.append(
            f"the runs used different methods ({', '.join(sorted(methods))}): their "
            "scores measure different things"
        )
    if len(modes) > 1:
        notes.append(
            "the runs differ in how the engine computed (--threads, --kv-type, a GPU, or "
            "an earlier release's batching): that alone flips some greedy answers; differences within the noise floor "
            "(README, 'compare --noise') are no evidence"
        )
    return "; ".join(notes)


def render(reports: list[RunReport], fmt: str) -> str:
    if fmt == "json":
        import json

        return json.dumps({"runs": [r.to_json() for r in reports]}, indent=2, ensure_ascii=False)
    if fmt == "csv":
        return _csv(reports)
    rows = _rows(reports)
    head = ["", *(r.label for r in reports)]
    if fmt == "markdown":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join([name, *cells]) + " |" for name, cells in rows]
        return "\n".join(lines)
    widths = [
        max(len(str(x)) for x in column)
        for column in zip(head, *[[n, *c] for n, c in rows], strict=True)
    ]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(head, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(x.ljust(w) for x, w in zip([n, *c], widths, strict=True)).rstrip()
        for n, c in rows
    ]
    return "\n".join(lines)


def _csv(reports: list[RunReport]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = [
        "n",
        "correct",
        "accuracy",
        "ci_low",
        "ci_high",
        "official_accuracy",
        "guessed",
        "chance",
    ]
    writer.writerow(["file", "category", *columns])
    for report in reports:
        for f in [*report.categories, report.overall]:
            data = f.to_json()
            writer.writerow([report.path, f.name, *(data[c] for c in columns)])
    return out.getvalue()
