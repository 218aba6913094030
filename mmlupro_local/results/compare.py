"""Paired comparison of two runs on the questions both answered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmlupro_local.errors import MmluProError
from mmlupro_local.results.report import RunReport
from mmlupro_local.results.stats import (
    PairedDifference,
    fewest_detectable,
    paired_difference,
    questions_needed,
)

DETECT = 0.02  # the effect size the sample-size hint is about: 2 points


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    overall: PairedDifference
    categories: dict[str, PairedDifference]
    needed_per_category: int  # paired questions per category to detect DETECT

    def sentence(self) -> str:
        d = self.overall
        if d.n == 0:
            return "the runs share no questions"
        if d.disagreements < fewest_detectable():
            return (
                f"too few questions to tell: the runs disagree on {d.disagreements} of {d.n}, and "
                f"the paired test needs at least {fewest_detectable()} disagreements to detect any "
                f"difference ({d.difference * 100:+.1f} points, 95 % CI {d.ci_low * 100:.1f} to "
                f"{d.ci_high * 100:.1f}, p = {_p(d.p_value)}); about {self.needed_per_category} "
                f"questions per category would be needed to detect {DETECT * 100:.0f} points"
            )
        if d.p_value < 0.05:
            if d.difference > 0:
                better, worse, low, high = self.b, self.a, d.ci_low, d.ci_high
            else:
                better, worse, low, high = self.a, self.b, -d.ci_high, -d.ci_low
            return (
                f"{better} is better than {worse} by {abs(d.difference) * 100:.1f} points, "
                f"95 % CI {low * 100:.1f} to {high * 100:.1f}, p = {_p(d.p_value)}"
            )
        return (
            f"no detectable difference at this sample size ({d.difference * 100:+.1f} points, "
            f"95 % CI {d.ci_low * 100:.1f} to {d.ci_high * 100:.1f}, p = {_p(d.p_value)}); about "
            f"{self.needed_per_category} questions per category would be needed to detect "
            f"{DETECT * 100:.0f} points"
        )

    def largest(self, k: int = 3) -> list[tuple[str, PairedDifference]]:
        """The categories where B and A differ most, largest absolute difference first."""
        ranked = sorted(
            self.categories.items(), key=lambda item: (-abs(item[1].difference), item[0])
        )
        return [(name, d) for name, d in ranked[:k] if d.difference != 0]

    def to_json(self) -> dict[str, Any]:
        def figures(d: PairedDifference) -> dict[str, Any]:
            return {"n": d.n, "only_a": d.only_a, "only_b": d.only_b, "disagreements": d.disagreements,
                    "difference": d.difference, "ci_low": d.ci_low, "ci_high": d.ci_high, "p_value": d.p_value}  # fmt: skip

        return {
            "a": self.a,
            "b": self.b,
            "overall": figures(self.overall),
            "categories": {k: figures(v) for k, v in self.categories.items()},
            "needed_per_category": self.needed_per_category,
            "largest_differences": [
                {"category": name, "difference": d.difference} for name, d in self.largest()
            ],
            "sentence": self.sentence(),
        }


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def compare(a: RunReport, b: RunReport) -> Comparison:
    if a.dataset_sha256 != b.dataset_sha256:
        raise MmluProError(
            f"{a.path} and {b.path} were run on different datasets "
            f"({a.dataset_sha256[:12]} vs {b.dataset_sha256[:12]}); their questions are not comparable"
        )
    a_by_id = {r.question_id: r for r in a.records}
    shared = [(a_by_id[r.question_id], r) for r in b.records if r.question_id in a_by_id]
    shared.sort(key=lambda pair: pair[0].question_id)
    overall = paired_difference([x.correct for x, _ in shared], [y.correct for _, y in shared])
    categories = {}
    for name in sorted({x.category for x, _ in shared}):
        pairs = [(x, y) for x, y in shared if x.category == name]
        categories[name] = paired_difference(
            [x.correct for x, _ in pairs], [y.correct for _, y in pairs]
        )
    discordance = overall.disagreements / overall.n if overall.n else 0.5
    needed = questions_needed(discordance, DETECT)
    n_categories = max(1, len(categories))
    return Comparison(a.label, b.label, overall, categories, -(-needed // n_categories))


def render_comparison(c: Comparison) -> str:
    lines = [
        f"{'category':<18} {'n':>5} {'A only':>6} {'B only':>6} {'B - A':>7} {'95% CI':>16} {'p':>8}"
    ]
    for name, d in [*c.categories.items(), ("overall", c.overall)]:
        interval = f"{d.ci_low * 100:+.1f} to {d.ci_high * 100:+.1f}"
        lines.append(
            f"{name:<18} {d.n:>5} {d.only_a:>6} {d.only_b:>6} {d.difference * 100:>+7.1f} {interval:>16} {_p(d.p_value):>8}"
        )
    lines.append(
        f"\nA = {c.a}, B = {c.b}; {c.overall.disagreements} questions where they disagree."
    )
    if c.largest():
        biggest = ", ".join(f"{name} {d.difference * 100:+.1f}" for name, d in c.largest())
        lines.append(f"Largest differences (B - A, points): {biggest}")
    lines.append(f"Verdict: {c.sentence()}.")
    return "\n".join(lines)
