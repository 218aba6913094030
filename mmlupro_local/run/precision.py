"""As precise as asked, no more (`run --precision P`): run the sample, estimate the full
score, and while the 95 % interval's half-width is above P points, extend the same seeded
sample (a larger one holds every smaller one, so nothing is asked twice) and go on, until
P is met, the categories are exhausted or --max-questions is reached. Resuming the same
command continues from the file."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from mmlupro_local.datasets.dataset import load_dataset
from mmlupro_local.datasets.summary import population_sizes
from mmlupro_local.results.report import load_report
from mmlupro_local.run.request import RunRequest, RunRequestError
from mmlupro_local.run.runner import RunOutcome, run
from mmlupro_local.run.targets import EngineFactory

Echo = Callable[[str], None]
GROWTH_CAP = 4.0  # a round at most quadruples the sample: the estimate it steers by is rough


def run_to_precision(
    request: RunRequest,
    *,
    echo: Echo,
    engine_factory: EngineFactory | None = None,
    progress: bool = True,
) -> RunOutcome:
    assert request.precision is not None
    target = request.precision / 100
    request = _first_round(request, echo)
    while True:
        outcome = run(request, echo=echo, engine_factory=engine_factory, progress=progress)
        if outcome.interrupted or outcome.failed:
            return outcome
        report = load_report(request.out)
        if report.score is None or report.sizes is None:
            echo("--precision: no estimate of the full score here (the run's dataset differs)")
            return outcome
        estimate = report.score.strict
        said = (
            f"estimated full score {estimate.value:.1%} +/- {estimate.half_width * 100:.1f} "
            f"points after {estimate.questions:,} questions"
        )
        if estimate.exact or estimate.half_width <= target:
            echo(f"{said}: --precision {request.precision:g} met")
            return outcome
        grown = _grown(request, report.sizes, estimate.questions, estimate.questions_for(target))
        if grown is None:
            echo(
                f"{said}: the sample cannot grow further (--max-questions, or every question "
                "of the categories answered)"
            )
            return outcome
        echo(
            f"{said}: above --precision {request.precision:g}, extending to "
            f"{grown.sample.describe()}"
        )
        request = grown


def _first_round(request: RunRequest, echo: Echo) -> RunRequest:
    """The first round within --max-questions too (issue 32, case 8): the largest sample
    of the asked kind that fits, or RunRequestError when not one question per category
    does."""
    spec, cap = request.sample, request.max_questions
    if cap is None:
        return request
    sizes = population_sizes(load_dataset(request.dataset).test, spec.categories)
    population = sum(sizes.values())
    if spec.per_category is not None:
        per = spec.per_category
        while per > 1 and _total(sizes, per) > cap:
            per -= 1
        if _total(sizes, per) > cap:
            raise RunRequestError(
                f"--max-questions {cap} is fewer than one question per category "
                f"({_total(sizes, 1)}): raise it, or name fewer --categories"
            )
        if per == spec.per_category:
            return request
        smaller = replace(spec, per_category=per)
    else:
        if (spec.fraction or 1.0) * population <= cap:
            return request
        smaller = replace(spec, fraction=cap / population)
    echo(f"--max-questions {cap}: the first round is {smaller.describe()}")
    return replace(request, sample=smaller)


def _grown(
    request: RunRequest, sizes: dict[str, int], answered: int, needed: int | None
) -> RunRequest | None:
    """The request for the next round, or None when it cannot grow: at least one more
    question, at most GROWTH_CAP times the sample and --max-questions."""
    spec, population = request.sample, sum(sizes.values())
    cap = min(request.max_questions or population, population)
    wanted = min(max(needed or 0, answered + 1), math.ceil(answered * GROWTH_CAP), cap)
    if wanted <= answered:
        return None
    if spec.per_category is not None:
        per = spec.per_category
        while (
            per < max(sizes.values())
            and _total(sizes, per + 1) <= cap
            and _total(sizes, per) < wanted
        ):
            per += 1
        return (
            None
            if per == spec.per_category
            else replace(request, sample=replace(spec, per_category=per))
        )
    fraction = min(1.0, wanted / population)
    if fraction <= (spec.fraction or 1.0):
        return None
    return replace(request, sample=replace(spec, fraction=fraction))


def _total(sizes: dict[str, int], per: int) -> int:
    """The questions of a sample of `per` per category."""
    return sum(min(per, size) for size in sizes.values())
