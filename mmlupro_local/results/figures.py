"""Accuracy and cost figures of a set of result records."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmlupro_local.results.records import ResultRecord
from mmlupro_local.results.stats import wilson

Record = ResultRecord


@dataclass(frozen=True)
class Figures:
    name: str
    n: int
    correct: int  # strict: an unextracted answer is wrong
    guessed_correct: int  # the seeded guesses that hit (official-compatible credit)
    guessed: int  # answers that needed a guess
    chance: float  # mean of 1/options: what uniform guessing scores on these questions
    levels: dict[int, int] = field(default_factory=dict)  # extraction level -> count
    hit_budget: int = 0
    prompt_tokens: int = 0
    decoded_prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    thinking_tokens: int = 0  # of generated_tokens, inside think blocks
    think_cut: int = 0  # think blocks the budget closed

    @property
    def answer_tokens(self) -> int:
        return self.generated_tokens - self.thinking_tokens

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def official_correct(self) -> int:
        return self.correct + self.guessed_correct

    @property
    def official_accuracy(self) -> float:
        return self.official_correct / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.correct, self.n)

    @property
    def official_interval(self) -> tuple[float, float]:
        return wilson(self.official_correct, self.n)

    def to_json(self) -> dict[str, Any]:
        """Every figure; the rates are null when there are no questions (no figure exists)."""
        some = self.n > 0
        low, high = self.interval
        olow, ohigh = self.official_interval
        return {
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.accuracy if some else None,
            "ci_low": low if some else None,
            "ci_high": high if some else None,
            "official_correct": self.official_correct,
            "official_accuracy": self.official_accuracy if some else None,
            "official_ci_low": olow if some else None,
            "official_ci_high": ohigh if some else None,
            "guessed": self.guessed,
            "chance": self.chance if some else None,
            "above_chance": self.accuracy - self.chance if some else None,
            "levels": {str(k): self.levels.get(k, 0) for k in (1, 2, 3, 0)},
            "hit_budget": self.hit_budget,
            "prompt_tokens": self.prompt_tokens,
            "decoded_prompt_tokens": self.decoded_prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "thinking_tokens": self.thinking_tokens,
            "answer_tokens": self.answer_tokens,
            "think_cut": self.think_cut,
            "seconds": self.seconds,
        }


def figures(name: str, records: Sequence[Record]) -> Figures:
    n = len(records)
    return Figures(
        name=name,
        n=n,
        correct=sum(r.correct for r in records),
        guessed_correct=sum(r.guess_correct for r in records),
        guessed=sum(r.pred is None for r in records),
        chance=sum(1 / r.n_options for r in records) / n if n else 0.0,
        levels=dict(Counter(r.level for r in records)),
        hit_budget=sum(r.stop_reason == "length" for r in records),
        prompt_tokens=sum(r.prompt_tokens for r in records),
        decoded_prompt_tokens=sum(r.decoded_prompt_tokens for r in records),
        generated_tokens=sum(r.generated_tokens for r in records),
        seconds=sum(r.seconds for r in records),
        thinking_tokens=sum(r.thinking_tokens for r in records),
        think_cut=sum(r.think_cut for r in records),
    )


def category_figures(records: Iterable[Record]) -> tuple[list[Figures], Figures]:
    groups: dict[str, list[Record]] = {}
    everything = []
    for record in records:
        groups.setdefault(record.category, []).append(record)
        everything.append(record)
    rows = [figures(name, group) for name, group in sorted(groups.items())]
    return rows, figures("overall", everything)


def macro_accuracy(rows: list[Figures]) -> float | None:
    """The unweighted mean of per-category accuracies (the official figure is micro);
    None without any category."""
    return sum(f.accuracy for f in rows) / len(rows) if rows else None


NO_FIGURE = "–"  # noqa: RUF001 (an en dash, as tables print it); printed where a rate has no questions to be computed from


def percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return NO_FIGURE
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def render_table(rows: list[Figures], overall: Figures) -> str:
    head = f"{'category':<18} {'n':>5} {'correct':>7} {'accuracy':>8} {'95% CI':>13} {'w/ guess':>8} {'guessed':>7} {'chance':>7}"
    rule = "-" * len(head)
    lines = [head, rule]
    for f in [*rows, overall]:
        low, high = f.interval
        if f is overall:
            lines.append(rule)
        interval = f"{low:.1%}-{high:.1%}"
        lines.append(
            f"{f.name:<18} {f.n:>5} {f.correct:>7} {f.accuracy:>8.1%} {interval:>13} "
            f"{f.official_accuracy:>8.1%} {f.guessed:>7} {f.chance:>7.1%}"
        )
    lines.append(f"{'macro average':<18} {'':>5} {'':>7} {percent(macro_accuracy(rows)):>8}")
    return "\n".join(lines)
