from __future__ import annotations

import math

import pytest

from mmlupro_local.results.stats import (
    fewest_detectable,
    mcnemar_exact,
    paired_difference,
    questions_needed,
    wilson,
)


def test_wilson_against_hand_computed_values() -> None:
    # 8 of 10: p=.8, z=1.96: centre (.8+.19208)/1.38415 = .71678, half .22656
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson(10, 10)[1] == 1.0 and wilson(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(500, 1000)
    assert (low, high) == (pytest.approx(0.4691, abs=1e-4), pytest.approx(0.5309, abs=1e-4))


def test_exact_mcnemar() -> None:
    assert mcnemar_exact(1, 9) == pytest.approx(2 * (1 + 10) / 1024)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(3, 12) == pytest.approx(
        2 * sum(math.comb(15, k) for k in range(4)) / 2**15
    )


def test_paired_difference() -> None:
    # 100 questions: A only right on 4, B only right on 12, both right on 50
    a = [True] * 4 + [False] * 12 + [True] * 50 + [False] * 34
    b = [False] * 4 + [True] * 12 + [True] * 50 + [False] * 34
    d = paired_difference(a, b)
    assert (d.n, d.only_a, d.only_b, d.disagreements) == (100, 4, 12, 16)
    assert d.difference == pytest.approx(0.08)
    # Newcombe's interval: near the Wald one at this n, but not the same
    half = 1.959963984540054 * math.sqrt((0.16 - 0.08**2) / 100)
    assert abs(d.ci_low - (0.08 - half)) < 0.01 and abs(d.ci_high - (0.08 + half)) < 0.01
    assert d.ci_low < 0.08 < d.ci_high
    assert d.p_value == pytest.approx(mcnemar_exact(4, 12))


def test_questions_needed() -> None:
    # (1.96 + 0.84)^2 * 0.2 / 0.02^2 = 3924.5 -> 3925
    assert questions_needed(0.2, 0.02) == 3925
    assert questions_needed(0.0, 0.02) == questions_needed(0.02, 0.02)
    with pytest.raises(ValueError):
        questions_needed(0.1, 0)


def test_newcombe_interval_matches_a_published_example() -> None:
    """Cavo et al. 2012 as worked in Fagerland, Lydersen and Laake, "Statistical
    Analysis of Contingency Tables", ch. 8: 59 both, 6 first only, 16 second only, 80
    neither; Newcombe square-and-add: -0.0621 (-0.1186 to -0.0046) for first - second."""
    a = [True] * 59 + [True] * 6 + [False] * 16 + [False] * 80
    b = [True] * 59 + [False] * 6 + [True] * 16 + [False] * 80
    d = paired_difference(a, b)  # B - A: the signs flip
    assert round(d.difference, 4) == 0.0621
    assert (round(d.ci_low, 4), round(d.ci_high, 4)) == (0.0046, 0.1186)


def test_tiny_samples_get_an_honest_interval() -> None:
    """Issue 13 #7: 4 of 4 disagreeing one way gave the Wald interval 100.0 to 100.0."""
    d = paired_difference([False] * 4, [True] * 4)
    assert d.difference == 1.0 and d.p_value == 0.125
    assert 0.2 < d.ci_low < 0.5 and d.ci_high == 1.0
    none = paired_difference([True, False], [True, False])
    assert none.ci_low == pytest.approx(-none.ci_high) and 0.3 < none.ci_high < 1
    assert fewest_detectable() == 6  # 5 one-way disagreements give p = 0.0625
