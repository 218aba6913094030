"""The estimated full score (issue 24) against direct computations: the exact expectation
over every stratified sample of a tiny population, the all-wrong small category, a full
run, a proportional sample, the shipped item model."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest

from mmlupro_local.datasets.dataset import Dataset
from mmlupro_local.datasets.items import item_model
from mmlupro_local.datasets.sampling import SampleSpec, draw
from mmlupro_local.results.estimates import (
    assisted,
    fit_ability,
    from_counts,
    headline,
    paired,
    post_stratified,
)


@dataclass(frozen=True)
class Q:
    question_id: int
    category: str
    correct: bool


def right(q: Q) -> bool:
    return q.correct


# a population of 7 questions in two categories, and the sample sizes per category
POPULATION = {
    "a": [Q(1, "a", True), Q(2, "a", False), Q(3, "a", False), Q(4, "a", True), Q(5, "a", True)],
    "b": [Q(6, "b", True), Q(7, "b", False), Q(8, "b", False)],
}
SIZES = {h: len(qs) for h, qs in POPULATION.items()}
TRUTH = sum(q.correct for qs in POPULATION.values() for q in qs) / 8


def every_sample(n_a: int, n_b: int) -> list[list[Q]]:
    return [
        list(x) + list(y)
        for x in itertools.combinations(POPULATION["a"], n_a)
        for y in itertools.combinations(POPULATION["b"], n_b)
    ]


def test_the_post_stratified_estimate_and_its_variance_are_unbiased_over_every_sample() -> None:
    samples = every_sample(2, 2)  # 10 x 3 equally likely stratified samples
    estimates = [post_stratified(s, SIZES, right) for s in samples]
    mean = sum(e.value for e in estimates) / len(estimates)
    assert mean == pytest.approx(TRUTH, abs=1e-12)
    true_variance = sum((e.value - mean) ** 2 for e in estimates) / len(estimates)
    estimated = sum(e.variance for e in estimates) / len(estimates)
    assert estimated == pytest.approx(true_variance, abs=1e-12)
    # the pooled mean of an equal allocation is not: it counts each category equally
    pooled = sum(sum(map(right, s)) / len(s) for s in samples) / len(samples)
    assert pooled == pytest.approx((3 / 5 + 1 / 3) / 2) and pooled != pytest.approx(TRUTH)


def test_the_assisted_estimate_is_unbiased_however_wrong_its_item_model() -> None:
    # items whose prediction does not depend on ability (a = 0), and wrong (question 1,
    # answered, predicted at 12 %; question 7, missed, at 73 %): the residuals correct
    # them exactly in expectation
    items = {
        q.question_id: (0.0, (q.question_id % 3) - 1.0 - 2 * q.correct)
        for qs in POPULATION.values()
        for q in qs
    }
    population = {h: [items[q.question_id] for q in qs] for h, qs in POPULATION.items()}
    estimates = [assisted(s, population, items, right, bounded=False) for s in every_sample(2, 2)]
    assert all(e is not None and e.method == "assisted" for e in estimates)
    mean = sum(e.value for e in estimates if e) / len(estimates)
    assert mean == pytest.approx(TRUTH, abs=1e-12)


def test_a_small_category_all_wrong_still_has_an_honest_interval() -> None:
    sample = [Q(i, "law", False) for i in range(5)]
    e = post_stratified(sample, {"law": 1101}, right)
    assert e.value == 0.0 and e.variance == 0.0  # a Wald interval would be [0, 0]
    assert e.low == 0.0 and 0.2 < e.high < 0.5  # add-one smoothing keeps doubt
    assert math.isclose(e.half_width, e.high / 2)


def test_a_full_run_is_the_exact_score_with_no_interval() -> None:
    every = [q for qs in POPULATION.values() for q in qs]
    e = post_stratified(every, SIZES, right)
    assert (e.method, e.value, e.low, e.high) == ("exact", TRUTH, TRUTH, TRUTH)
    assert e.questions_for(0.01) is None
    items = {q.question_id: (1.0, 0.0) for q in every}
    population = {h: [items[q.question_id] for q in qs] for h, qs in POPULATION.items()}
    assert assisted(every, population, items, right) is None  # nothing for a model to add
    assert headline(e, None) is e


def test_a_proportional_sample_estimates_its_pooled_mean(embedded: Dataset) -> None:
    # a third of law (1,101) and history (381) is 367 and 127, exactly proportional
    sample = draw(embedded.test, SampleSpec(seed=3, fraction=1 / 3, categories=("law", "history")))
    sizes = {"law": 1101, "history": 381}
    answers = [Q(q.question_id, q.category, q.question_id % 3 == 0) for q in sample]
    e = post_stratified(answers, sizes, right)
    assert e.questions == 494 and e.value == pytest.approx(sum(map(right, answers)) / 494)


def test_counts_and_records_give_the_same_estimate() -> None:
    sample = every_sample(3, 2)[7]
    counts = {
        h: (sum(q.category == h for q in sample), sum(q.correct for q in sample if q.category == h))
        for h in SIZES
    }
    assert from_counts(counts, SIZES) == post_stratified(sample, SIZES, right)


def test_the_paired_difference_against_a_recount() -> None:
    a = [Q(i, "a" if i < 6 else "b", i % 2 == 0) for i in range(10)]
    b = [Q(i, "a" if i < 6 else "b", i % 3 == 0) for i in range(10)]
    sizes = {"a": 60, "b": 40}
    d = paired(list(zip(a, b, strict=True)), sizes, right)
    assert d is not None
    by = {
        h: [(x.correct, y.correct) for x, y in zip(a, b, strict=True) if x.category == h]
        for h in sizes
    }
    recount = sum(
        sizes[h] / 100 * sum(y - x for x, y in pairs) / len(pairs) for h, pairs in by.items()
    )
    assert d.value == pytest.approx(recount) and d.low < d.value < d.high
    assert 0 < d.p_value <= 1 and d.method == "post-stratified"


def test_the_shipped_item_model_loads_from_the_package(embedded: Dataset) -> None:
    model = item_model(embedded)
    assert model is not None and len(model.a) == len(embedded.test) == 12032
    assert len(model.runs) == 20 and all(a >= 0.0 for a in model.a)
    items = model.by_question(embedded)
    # an able model (theta > 0) is predicted to answer more than a weak one
    assert fit_ability([(items[70], True)] * 5) > fit_ability([(items[70], False)] * 5)


def test_residuals_that_do_not_vary_still_leave_an_interval() -> None:
    """An item model that predicts every question alike, and answers that all went one
    way, give residuals of variance 0: the interval falls back to the smoothed binomial
    variance instead of dividing by zero."""
    items = {i: (0.0, 0.0) for i in range(10)}
    rows = [Q(i, "a", False) for i in range(4)]
    e = assisted(rows, {"a": [items[i] for i in range(10)]}, items, right)
    assert e is not None and e.variance == 0.0
    assert e.low == 0.0 and 0.2 < e.high < 0.5
