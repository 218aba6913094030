"""Per-category accuracy of a set of result records, as rows and as text."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mmlupro_local.stats import wilson


@dataclass(frozen=True)
class Figures:
    name: str
    n: int
    correct: int  # strict: an unextracted answer is wrong
    guessed_correct: int  # official-compatible: the seeded guess is credited
    guessed: int  # answers that needed a guess
    chance: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def official_accuracy(self) -> float:
        return (self.correct + self.guessed_correct) / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.correct, self.n)


def figures(name: str, records: list[Mapping[str, Any]]) -> Figures:
    return Figures(
        name=name,
        n=len(records),
        correct=sum(bool(r.get("correct")) for r in records),
        guessed_correct=sum(bool(r.get("guess_correct")) for r in records),
        guessed=sum(r.get("pred") is None for r in records),
        chance=sum(1 / r["n_options"] for r in records) / len(records) if records else 0.0,
    )


def category_figures(records: Iterable[Mapping[str, Any]]) -> tuple[list[Figures], Figures]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    everything = []
    for record in records:
        groups.setdefault(str(record["category"]), []).append(record)
        everything.append(record)
    rows = [figures(name, group) for name, group in sorted(groups.items())]
    return rows, figures("overall", everything)


def render_table(rows: list[Figures], overall: Figures) -> str:
    head = f"{'category':<18} {'n':>5} {'correct':>7} {'accuracy':>8} {'95% CI':>15} {'w/ guess':>8} {'guessed':>7} {'chance':>7}"
    lines = [head, "-" * len(head)]
    for f in [*rows, overall]:
        low, high = f.interval
        if f is overall:
            lines.append("-" * len(head))
        lines.append(
            f"{f.name:<18} {f.n:>5} {f.correct:>7} {f.accuracy:>8.1%} "
            f"{f'{low:.1%}-{high:.1%}':>15} {f.official_accuracy:>8.1%} {f.guessed:>7} {f.chance:>7.1%}"
        )
    return "\n".join(lines)
