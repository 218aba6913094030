"""Issue 34's statistics against direct computation: the reference-as-predictor
estimate and its variance estimate over every possible pair of nested samples of small
populations, and the verdicts at the margin's edges."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import pytest

from mmlupro_local.results.equivalence import look_z, predicted, settle
from mmlupro_local.results.stats import Z95

# per category, each question's (reference correct, quant correct): the quant agrees
# with its reference on all but one question, as quants mostly do
POPULATION = {
    "law": [(1, 1), (1, 0), (0, 0), (1, 1), (0, 0), (1, 1)],
    "math": [(0, 0), (1, 1), (1, 1), (0, 0), (1, 1)],
}
SAMPLED = {"law": (4, 2), "math": (3, 2)}  # (reference's n, quant's n) per category


def nested(questions: int, n_r: int, n_q: int) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every (S_R, S_Q) with S_Q inside S_R, each equally likely under nested sampling."""
    for big in itertools.combinations(range(questions), n_r):
        for small in itertools.combinations(big, n_q):
            yield big, small


def outcomes() -> Iterator[tuple[dict[str, list[bool]], dict[str, list[tuple[bool, bool]]]]]:
    per_category = {h: list(nested(len(rows), *SAMPLED[h])) for h, rows in POPULATION.items()}
    for choice in itertools.product(*per_category.values()):
        reference, paired = {}, {}
        for h, (big, small) in zip(POPULATION, choice, strict=True):
            rows = POPULATION[h]
            reference[h] = [bool(rows[i][0]) for i in big]
            paired[h] = [(bool(rows[i][0]), bool(rows[i][1])) for i in small]
        yield reference, paired


def quant_score() -> float:
    total = sum(len(rows) for rows in POPULATION.values())
    return sum(q for rows in POPULATION.values() for _, q in rows) / total


def test_the_estimate_and_its_variance_are_exact_in_expectation() -> None:
    sizes = {h: len(rows) for h, rows in POPULATION.items()}
    found = [predicted(r, p, sizes) for r, p in outcomes()]
    values = [f.value for f in found if f is not None]
    assert len(values) == 90 * 30  # law: C(6,4) C(4,2); math: C(5,3) C(3,2)
    mean = sum(values) / len(values)
    assert mean == pytest.approx(quant_score(), abs=1e-12)  # design-unbiased
    true_variance = sum((v - mean) ** 2 for v in values) / len(values)
    estimated = sum(f.variance for f in found if f is not None) / len(values)
    assert estimated == pytest.approx(true_variance, rel=1e-9)  # so is its variance
    own = _own_variance(sizes)  # the quant's own estimate on S_Q alone
    assert true_variance < own  # the predictor pays where the quant agrees with it


def _own_variance(sizes: dict[str, int]) -> float:
    total = sum(sizes.values())
    variance = 0.0
    for h, rows in POPULATION.items():
        x = [q for _, q in rows]
        mean = sum(x) / len(x)
        s2 = sum((v - mean) ** 2 for v in x) / (len(x) - 1)
        n_q = SAMPLED[h][1]
        variance += (sizes[h] / total) ** 2 * (1 / n_q - 1 / sizes[h]) * s2
    return variance


def test_a_reference_run_in_full_leaves_only_the_difference_s_variance() -> None:
    sizes = {"law": 6}
    rows = POPULATION["law"]
    reference = {"law": [bool(r) for r, _ in rows]}
    values = []
    for small in itertools.combinations(range(6), 3):
        paired = {"law": [(bool(rows[i][0]), bool(rows[i][1])) for i in small]}
        found = predicted(reference, paired, sizes)
        assert found is not None
        values.append((found.value, found.variance))
    mean = sum(v for v, _ in values) / len(values)
    assert mean == pytest.approx(3 / 6)
    true_variance = sum((v - mean) ** 2 for v, _ in values) / len(values)
    assert sum(e for _, e in values) / len(values) == pytest.approx(true_variance)


def test_a_category_without_pairs_gives_no_estimate() -> None:
    assert predicted({"law": [True, False]}, {"law": []}, {"law": 6}) is None


@pytest.mark.parametrize(
    ("interval", "verdict", "more"),
    [
        ((-0.002, -0.008, 0.004), "equivalent", 0),
        ((-0.05, -0.07, -0.03), "worse", 0),
        ((0.05, 0.03, 0.07), "better", 0),
        # half-width 0.016 must shrink to 0.006: (0.016 / 0.006)^2 = 7.1 times the 100
        ((-0.004, -0.02, 0.012), "unsettled", math.ceil(100 * (0.016 / 0.006) ** 2) - 100),
        # on the margin's edge: the least step more
        ((-0.02, -0.03, -0.01), "unsettled", 1),
    ],
)
def test_verdicts_against_a_one_point_margin(
    interval: Sequence[float], verdict: str, more: int
) -> None:
    value, low, high = interval
    found = settle(value, low, high, 0.01, 100, 12_032)
    assert (found.verdict, found.more_questions) == (verdict, more)


def test_several_looks_widen_each_interval() -> None:
    assert look_z(1) == Z95
    assert look_z(5) == pytest.approx(2.5758, abs=1e-4)  # 1 - 0.05 / 10
    assert look_z(5) < look_z(6)
