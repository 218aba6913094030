"""Consistency checks over a dataset: each finding names the questions it is about."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from mmlupro_local.datasets.dataset import Dataset
from mmlupro_local.datasets.questions import LETTERS, PADDING_OPTION, Question

SHOTS_NEEDED = 5


@dataclass(frozen=True)
class Finding:
    check: str
    severity: str  # "error": prompts cannot be built as specified; "warning"; "info"
    message: str
    question_ids: tuple[int, ...] = field(default=())


def verify(dataset: Dataset) -> list[Finding]:
    return [
        *_duplicate_ids(dataset),
        *_exemplar_counts(dataset),
        *_answer_mismatches(dataset.test + dataset.validation),
        *_padding(dataset.test + dataset.validation),
        *_whitespace_leak(dataset.test),
    ]


def _duplicate_ids(dataset: Dataset) -> list[Finding]:
    findings = []
    for split, rows in (("test", dataset.test), ("validation", dataset.validation)):
        counts = Counter(q.question_id for q in rows)
        dupes = tuple(sorted(i for i, n in counts.items() if n > 1))
        if dupes:
            findings.append(
                Finding("duplicate_ids", "error", f"{split}: {len(dupes)} duplicate ids", dupes)
            )
    return findings


def _exemplar_counts(dataset: Dataset) -> list[Finding]:
    shots = Counter(q.category for q in dataset.validation)
    findings = []
    for category in sorted({q.category for q in dataset.test}):
        if shots[category] < SHOTS_NEEDED:
            findings.append(
                Finding(
                    "few_exemplars",
                    "error",
                    f"category {category!r} has {shots[category]} validation exemplars; "
                    f"the 5-shot prompt needs {SHOTS_NEEDED}",
                )
            )
    return findings


def _answer_mismatches(questions: tuple[Question, ...]) -> list[Finding]:
    findings = []
    for q in questions:
        if LETTERS[q.answer_index] != q.answer:
            findings.append(
                Finding(
                    "answer_mismatch",
                    "warning",
                    f"{q.split} question {q.question_id}: answer is {q.answer!r} but answer_index "
                    f"{q.answer_index} is {LETTERS[q.answer_index]!r}; scoring uses the letter",
                    (q.question_id,),
                )
            )
    return findings


def _padding(questions: tuple[Question, ...]) -> list[Finding]:
    by_split: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        if PADDING_OPTION in q.options:
            by_split[q.split].append(q)
    findings = []
    for split, padded in sorted(by_split.items()):
        n_options = sum(q.options.count(PADDING_OPTION) for q in padded)
        findings.append(
            Finding(
                "na_padding",
                "info",
                f"{split}: {n_options} '{PADDING_OPTION}' padding options in {len(padded)} "
                "questions (dropped before use, as the official scripts do)",
                tuple(q.question_id for q in padded),
            )
        )
    return findings


def leaks_answer(question: Question) -> bool:
    """Only the correct option has leading or trailing whitespace."""
    choices = question.choices
    index = LETTERS.index(question.answer)
    padded = [i for i, option in enumerate(choices) if option != option.strip()]
    return padded == [index]


def _whitespace_leak(questions: tuple[Question, ...]) -> list[Finding]:
    leaking = [q for q in questions if leaks_answer(q)]
    if not leaking:
        return []
    per_category = Counter(q.category for q in leaking)
    detail = ", ".join(f"{c} {n}" for c, n in per_category.most_common())
    return [
        Finding(
            "whitespace_leak",
            "warning",
            f"test: {len(leaking)} questions where only the correct option has leading or "
            f"trailing whitespace ({detail}); run with --strip-options to hide it",
            tuple(q.question_id for q in leaking),
        )
    ]
