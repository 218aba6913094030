from __future__ import annotations

import random
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import (
    FakeEngine,
    invoke_with,
)
from mmlupro_local.datasets.dataset import Dataset
from mmlupro_local.datasets.sampling import SampleError, SampleSpec, draw, nested_quotas


def ids(questions: list) -> list[int]:  # type: ignore[type-arg]
    return [q.question_id for q in questions]


def test_per_category_is_stratified_and_seeded(embedded: Dataset) -> None:
    sample = draw(embedded.test, SampleSpec(seed=1, per_category=10))
    assert Counter(q.category for q in sample) == {
        c: 10 for c in {q.category for q in embedded.test}
    }
    assert ids(draw(embedded.test, SampleSpec(seed=1, per_category=10))) == ids(sample)
    assert set(ids(draw(embedded.test, SampleSpec(seed=2, per_category=10)))) != set(ids(sample))


def test_not_the_first_rows(embedded: Dataset) -> None:
    sample = draw(embedded.test, SampleSpec(seed=0, per_category=5))
    first = {
        c: [q.question_id for q in embedded.test if q.category == c][:5]
        for c in {q.category for q in sample}
    }
    assert any(sorted(q.question_id for q in sample if q.category == c) != first[c] for c in first)


def test_independent_of_row_order(embedded: Dataset) -> None:
    shuffled = list(embedded.test)
    random.Random(7).shuffle(shuffled)
    for spec in (SampleSpec(seed=3, per_category=7), SampleSpec(seed=3, fraction=0.05)):
        assert ids(draw(shuffled, spec)) == ids(draw(embedded.test, spec))


def test_larger_sample_contains_smaller(embedded: Dataset) -> None:
    previous: set[int] = set()
    for n in (1, 2, 5, 10, 50):
        current = set(ids(draw(embedded.test, SampleSpec(seed=5, per_category=n))))
        assert previous <= current
        previous = current


def test_fraction_total_is_exact(embedded: Dataset) -> None:
    for fraction, expected in ((0.1, 1203), (0.01, 120), (0.5, 6016), (1.0, 12032)):
        sample = draw(embedded.test, SampleSpec(fraction=fraction))
        assert len(sample) == expected


def test_categories_filter_and_full_set(embedded: Dataset) -> None:
    sample = draw(embedded.test, SampleSpec(per_category=3, categories=("law", "computer science")))
    assert Counter(q.category for q in sample) == {"law": 3, "computer science": 3}
    assert len(draw(embedded.test, SampleSpec())) == 12032
    with pytest.raises(SampleError, match="unknown categories: astrology"):
        draw(embedded.test, SampleSpec(per_category=1, categories=("astrology",)))


def test_bad_specs(embedded: Dataset) -> None:
    with pytest.raises(SampleError, match="either"):
        draw(embedded.test, SampleSpec(per_category=1, fraction=0.1))
    with pytest.raises(SampleError, match=r"\(0, 1\]"):
        draw(embedded.test, SampleSpec(fraction=1.5))
    with pytest.raises(SampleError, match="empty"):
        draw(embedded.test, SampleSpec(fraction=0.00001))


@given(
    st.dictionaries(st.text(min_size=1, max_size=5), st.integers(0, 500), min_size=1, max_size=20),
    st.fractions(min_value=0, max_value=1),
)
def test_quotas_sum_exactly_within_their_quota(sizes: dict[str, int], fraction) -> None:  # type: ignore[no-untyped-def]
    quotas = nested_quotas(sizes, fraction)
    total = sum(sizes.values())
    target = int(fraction * total + fraction.__class__(1, 2))
    assert sum(quotas.values()) == target
    for c, n in sizes.items():
        assert abs(quotas[c] - Fraction(n * target, total or 1)) < 1
        assert 0 <= quotas[c] <= n


@settings(deadline=None, max_examples=50)
@given(st.dictionaries(st.text(min_size=1, max_size=5), st.integers(0, 30), min_size=1, max_size=8))
def test_a_larger_fraction_never_takes_a_question_away(sizes: dict[str, int]) -> None:
    """Issue 32, case 12: every fraction's quotas hold the smaller fractions' quotas."""
    total = sum(sizes.values())
    previous = dict.fromkeys(sizes, 0)
    for seats in range(total + 1):
        quotas = nested_quotas(sizes, Fraction(seats, total or 1))
        assert all(quotas[c] >= previous[c] for c in sizes)
        previous = quotas


def test_fractions_of_the_test_set_are_nested(embedded: Dataset) -> None:
    """Issue 32, case 12, as found: 16/12032 then 17/12032 had 15 of 17 in common."""
    smaller = set(ids(draw(embedded.test, SampleSpec(fraction=16 / 12032))))
    larger = set(ids(draw(embedded.test, SampleSpec(fraction=17 / 12032))))
    assert len(smaller) == 16 and len(larger) == 17 and smaller < larger
    previous: set[int] = set()
    for seats in range(1, 300, 7):
        current = set(ids(draw(embedded.test, SampleSpec(seed=2, fraction=seats / 12032))))
        assert previous < current
        previous = current


def test_samples_that_mean_everything_are_refused(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    """Issue 13, case 8."""
    out = str(tmp_path / "r.jsonl")
    huge = invoke_with(engine, "run", str(model), "--per-category", "100000", "--out", out)
    assert huge.exit_code == 1
    assert (
        "--per-category 100,000 is more than any category holds (the largest, math, has 1,351)"
        in huge.output
    )
    for empty in (",", "", " , "):
        result = invoke_with(
            engine, "run", str(model), "--per-category", "1", "--categories", empty, "--out", out
        )
        assert result.exit_code == 2 and "names no category" in result.output, empty
    assert engine.calls == [] and not Path(out).exists()
    some = invoke_with(engine, "run", str(model), "--per-category", "400", "--categories", "history,law",
                  "--max-tokens", "8", "--out", out, "--no-progress")  # fmt: skip
    assert some.exit_code == 0, some.output
    assert "1 categories hold fewer and are taken whole: history (381)" in some.output
