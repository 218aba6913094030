"""Stratified, seeded subsamples of the test split.

Within each category questions are ranked by sha256(seed, question_id), and a sample
takes the top of each ranking. So a sample depends only on the seed and the question
ids (not on row order), and a larger sample (per category or a fraction) contains every
smaller one with the same seed, which lets a bigger run resume a smaller one.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from mmlupro_local.datasets.questions import Question
from mmlupro_local.errors import MmluProError


class SampleError(MmluProError):
    """The requested sample cannot be drawn."""


@dataclass(frozen=True)
class SampleSpec:
    """What to draw; exactly one of per_category / fraction, or neither for the full set."""

    seed: int = 0
    per_category: int | None = None
    fraction: float | None = None
    categories: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.per_category is not None:
            size = f"{self.per_category} per category"
        elif self.fraction is not None:
            size = f"{self.fraction:g} of each category"
        else:
            size = "all questions"
        where = f" in {', '.join(self.categories)}" if self.categories else ""
        return f"{size}{where}, seed {self.seed}"


def rank_key(seed: int, question_id: int) -> bytes:
    return hashlib.sha256(f"{seed}:{question_id}".encode()).digest()


def draw(questions: Iterable[Question], spec: SampleSpec) -> list[Question]:
    """The sample, grouped by category (sorted by name), each group in rank order."""
    if spec.per_category is not None and spec.fraction is not None:
        raise SampleError("choose either a per-category count or a fraction, not both")
    by_category: dict[str, list[Question]] = defaultdict(list)
    for question in questions:
        by_category[question.category].append(question)
    if spec.categories:
        unknown = sorted(set(spec.categories) - set(by_category))
        if unknown:
            raise SampleError(
                f"unknown categories: {', '.join(unknown)}. Known: {', '.join(sorted(by_category))}"
            )
        by_category = {c: by_category[c] for c in spec.categories}
    quotas = _quotas({c: len(qs) for c, qs in by_category.items()}, spec)
    sample: list[Question] = []
    for category in sorted(by_category):
        ranked = sorted(by_category[category], key=lambda q: rank_key(spec.seed, q.question_id))
        sample.extend(ranked[: quotas[category]])
    if not sample:
        raise SampleError("the sample is empty: ask for a larger fraction or more categories")
    return sample


def _quotas(sizes: dict[str, int], spec: SampleSpec) -> dict[str, int]:
    if spec.per_category is not None:
        if spec.per_category < 1:
            raise SampleError("--per-category must be at least 1")
        largest = max(sizes, key=lambda c: (sizes[c], c))
        if spec.per_category > sizes[largest]:
            raise SampleError(
                f"--per-category {spec.per_category:,} is more than any category holds (the "
                f"largest, {largest}, has {sizes[largest]:,}); for every question use --full"
            )
        return {c: min(n, spec.per_category) for c, n in sizes.items()}
    if spec.fraction is not None:
        if not 0 < spec.fraction <= 1:
            raise SampleError("--fraction must be in (0, 1]")
        return nested_quotas(sizes, Fraction(str(spec.fraction)))
    return dict(sizes)


def shortfalls(questions: Iterable[Question], spec: SampleSpec) -> str | None:
    """A warning naming the categories that hold fewer questions than --per-category
    asks for (they are taken whole), or None."""
    if spec.per_category is None:
        return None
    sizes: dict[str, int] = defaultdict(int)
    for question in questions:
        if not spec.categories or question.category in spec.categories:
            sizes[question.category] += 1
    short = sorted(c for c, n in sizes.items() if n < spec.per_category)
    if not short:
        return None
    listed = ", ".join(f"{c} ({sizes[c]:,})" for c in short)
    return f"--per-category {spec.per_category:,}: {len(short)} categories hold fewer and are taken whole: {listed}"


def nested_quotas(sizes: dict[str, int], fraction: Fraction) -> dict[str, int]:
    """Proportional quotas that sum to exactly round(fraction * total), each within one
    of its exact share, and nested: a larger fraction never takes a question from a
    category (issue 32, case 12; Hamilton's largest remainders, used before, can: the
    Alabama paradox). Balinski and Young's quota method: seats one at a time, each to
    the category with the most questions per seat held (n / (q + 1)) among those a seat
    keeps within their upper quota; ties go to the first name."""
    total = sum(sizes.values())
    target = int(fraction * total + Fraction(1, 2))  # round half up, exactly
    quotas = dict.fromkeys(sizes, 0)
    for house in range(1, target + 1):
        eligible = [c for c, n in sizes.items() if quotas[c] < -(-n * house // total)]
        # n / (q + 1) as a float orders these exactly: distinct ratios of integers up to
        # 10^5 differ far beyond a double's rounding
        chosen = min(eligible, key=lambda c: (-sizes[c] / (quotas[c] + 1), c))
        quotas[chosen] += 1
    return quotas
