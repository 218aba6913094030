"""How well the estimates of the full MMLU-Pro score do on real runs (issue 24): leave one
model out of the 20 released official runs (../shared/data/official-runs/correct.csv.gz),
fit the item model on the other 19, draw samples with the project's own sampler, and
compare each estimate with the left-out model's true full score.

Printed per sample size and estimator: the bias (the mean error over seeds, averaged over
models, and the worst model's), the mean absolute error, the worst error, the coverage of
the 95 % interval (over all, and for the worst model) and its mean width, all in points.

    python scripts/study_estimates.py [--seeds 100] [--sizes 70,140,560,1400]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from fit_items import RUNS, fit, read_runs  # noqa: E402
from mmlupro_local.datasets.dataset import load_dataset  # noqa: E402
from mmlupro_local.datasets.sampling import SampleSpec, draw  # noqa: E402
from mmlupro_local.results.estimates import Estimate, assisted, headline, post_stratified  # noqa: E402
from mmlupro_local.results.stats import Z95, wilson  # noqa: E402


@dataclass(frozen=True)
class Answer:
    question_id: int
    category: str
    correct: bool


def pooled(records: list[Answer]) -> Estimate:
    """What report printed before: the sample's mean, a Wilson interval on n."""
    right = sum(r.correct for r in records)
    low, high = wilson(right, len(records))
    return Estimate(right / len(records), low, high, "post-stratified", len(records), 0)


def wald(e: Estimate) -> Estimate:
    """The same estimate with a Wald interval on its unsmoothed stratified variance (0 for
    a category whose few questions all went one way): the choice the shipped one beats."""
    half = Z95 * e.variance**0.5
    return Estimate(e.value, e.value - half, e.value + half, e.method, e.questions, e.population)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--sizes", default="70,140,560,1400")
    parser.add_argument("--runs", type=Path, default=RUNS)
    args = parser.parse_args()
    began = time.perf_counter()
    ids, categories, names, y = read_runs(args.runs)
    dataset = load_dataset()
    category_of = dict(zip(ids, categories, strict=True))
    sizes = [int(s) for s in args.sizes.split(",")]
    samples = {
        size: [
            [
                q.question_id
                for q in draw(dataset.test, SampleSpec(seed=seed, per_category=size // 14))
            ]
            for seed in range(args.seeds)
        ]
        for size in sizes
    }
    position = {qid: i for i, qid in enumerate(ids)}
    population = {h: categories.count(h) for h in set(categories)}
    estimators: dict[str, Callable[..., Estimate]] = {}
    # errors[size][estimator][model] = [(error, covered, width) per seed]
    errors: dict[int, dict[str, dict[str, list[tuple[float, bool, float]]]]] = {}
    for m, name in enumerate(names):
        keep = [i for i in range(len(names)) if i != m]
        _, a, c = fit(y[keep])
        items = {qid: (float(a[i]), float(c[i])) for i, qid in enumerate(ids)}
        population_items: dict[str, list[tuple[float, float]]] = {}
        for qid in ids:
            population_items.setdefault(category_of[qid], []).append(items[qid])
        truth = float(y[m].mean())
        estimators = {
            "pooled (old)": pooled,
            "post-strat. Wald": lambda r: wald(post_stratified(r, population, _credit)),
            "post-stratified": lambda r: post_stratified(r, population, _credit),
            "assisted": lambda r, pi=population_items, it=items: assisted(r, pi, it, _credit),
            "headline": lambda r, pi=population_items, it=items: headline(
                post_stratified(r, population, _credit), assisted(r, pi, it, _credit)
            ),
        }
        for size in sizes:
            for sample in samples[size]:
                records = [Answer(q, category_of[q], bool(y[m, position[q]])) for q in sample]
                for label, estimator in estimators.items():
                    e = estimator(records)
                    row = (
                        100 * (e.value - truth),
                        e.low <= truth <= e.high,
                        100 * (e.high - e.low),
                    )
                    errors.setdefault(size, {}).setdefault(label, {}).setdefault(name, []).append(
                        row
                    )
        print(f"  {name}: done ({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
    print(
        f"{len(names)} models left out one at a time (item model fitted on the other "
        f"{len(names) - 1}), {args.seeds} seeds; errors in points of the full score"
    )
    head = (
        f"{'questions':>9}  {'estimator':<16}{'bias':>7}{'worst bias':>11}{'MAE':>7}"
        f"{'worst':>7}{'coverage':>9}{'worst cov.':>11}{'width':>7}"
    )
    print(head)
    for size in sizes:
        for label in estimators:
            by_model = errors[size][label]
            rows = [r for runs in by_model.values() for r in runs]
            biases = [sum(e for e, _, _ in runs) / len(runs) for runs in by_model.values()]
            coverages = [sum(c for _, c, _ in runs) / len(runs) for runs in by_model.values()]
            print(
                f"{size:>9}  {label:<16}{sum(biases) / len(biases):>+7.2f}"
                f"{max(biases, key=abs):>+11.2f}{sum(abs(e) for e, _, _ in rows) / len(rows):>7.2f}"
                f"{max(abs(e) for e, _, _ in rows):>7.2f}"
                f"{sum(c for _, c, _ in rows) / len(rows):>9.1%}{min(coverages):>11.1%}"
                f"{sum(w for _, _, w in rows) / len(rows):>7.2f}"
            )
    print(f"({time.perf_counter() - began:.0f} s)")


def _credit(record: Answer) -> bool:
    return record.correct


if __name__ == "__main__":
    main()
