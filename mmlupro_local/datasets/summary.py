"""Descriptive figures of a set of questions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from mmlupro_local.datasets.questions import Question


def chance_level(questions: Sequence[Question]) -> float:
    """Expected accuracy of a uniform guess over each question's own options."""
    if not questions:
        return 0.0
    return sum(1 / len(q.choices) for q in questions) / len(questions)


def category_counts(questions: Iterable[Question]) -> dict[str, int]:
    return dict(sorted(Counter(q.category for q in questions).items()))


def population_sizes(
    questions: Iterable[Question], categories: Sequence[str] = ()
) -> dict[str, int]:
    """Questions per category, of the named categories only when some are named: what a
    sample of them is drawn from."""
    return category_counts(q for q in questions if not categories or q.category in categories)


def option_histogram(questions: Iterable[Question]) -> dict[int, int]:
    return dict(sorted(Counter(len(q.choices) for q in questions).items()))


def by_category(questions: Iterable[Question]) -> dict[str, list[Question]]:
    groups: dict[str, list[Question]] = {}
    for question in questions:
        groups.setdefault(question.category, []).append(question)
    return dict(sorted(groups.items()))
