"""Issue 34's statistics, in a pure module: is a quantization within a margin of its
reference, and the reference as a predictor of the quantization's full score.

The reference as predictor: a quant answers like its reference on most questions, so
its full score is cheaper to estimate as the reference's estimate on a larger sample
S_R (or its exact score) plus the paired difference (quant - reference) on the quant's
smaller sample S_Q, a seeded subsample of S_R in every category (the nested samples of
datasets.sampling). Per category h, with N_h questions, n_r and n_q of them sampled,
y the reference's correctness and d the quant's minus the reference's:

    estimate = sum_h W_h (ybar_R,h + dbar_Q,h)                      W_h = N_h / N
    variance = sum_h W_h^2 [ (1/n_r - 1/N_h) s2_y + (1/n_q - 1/N_h) s2_d
                             + 2 (1/n_r - 1/N_h) s_yd ]

Both means are unbiased under stratified random sampling, so the sum is (design-
unbiased); the covariance term is there because S_Q lies inside S_R (E[dbar_Q | S_R] =
dbar_R, so Cov(ybar_R, dbar_Q) = Cov(ybar_R, dbar_R)). s2_y comes from S_R, s2_d and
s_yd from S_Q; each is unbiased for its population figure, so the variance estimate is
too. A test checks both against the exact expectation over every possible pair of
nested samples of small populations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

from mmlupro_local.results.stats import Z95

Verdict = Literal["equivalent", "worse", "better", "unsettled"]
Outcome = tuple[bool, bool]  # (reference correct, quant correct) on one question


@dataclass(frozen=True)
class Settled:
    """A difference's verdict against an equivalence margin (fractions of 1)."""

    verdict: Verdict
    more_questions: int  # about how many more paired questions would settle it (0: settled)

    def sentence(self, value: float, margin: float) -> str:
        points = margin * 100
        if self.verdict == "equivalent":
            return f"within +/-{points:g} point{'s' if points != 1 else ''} of the reference"
        if self.verdict == "worse":
            return f"loses {-value * 100:.1f} points"
        if self.verdict == "better":
            return f"gains {value * 100:.1f} points"
        return f"not settled yet: about {self.more_questions:,} more questions"


def settle(
    value: float, low: float, high: float, margin: float, questions: int, population: int
) -> Settled:
    """Equivalent when the interval lies inside +/-margin, worse or better when it lies
    wholly beyond it; else unsettled, with the paired questions (spread as these are)
    that would shrink the interval enough to decide whichever way the value points."""
    if -margin <= low and high <= margin:
        return Settled("equivalent", 0)
    if high < -margin:
        return Settled("worse", 0)
    if low > margin:
        return Settled("better", 0)
    half = (high - low) / 2
    room = abs(abs(value) - margin)  # how narrow the half-width must get
    if questions <= 0 or half <= 0 or room <= 0:
        return Settled("unsettled", max(0, population - questions))
    needed = math.ceil(questions * (half / room) ** 2)
    return Settled("unsettled", max(1, min(population, needed) - questions))


def look_z(looks: int, level: float = 0.95) -> float:
    """The z of each of `looks` intervals such that all hold together at `level`
    (Bonferroni): a sample grown until the verdicts settle looks more than once, and
    each look at 95 % would let a chance swing settle one."""
    if looks <= 1:
        return Z95
    return NormalDist().inv_cdf(1 - (1 - level) / (2 * looks))


@dataclass(frozen=True)
class Predicted:
    """The quant's estimated full score with the reference as predictor."""

    value: float
    variance: float
    questions: int  # the quant's paired questions
    reference_questions: int  # the reference's, on which its own estimate stands

    def interval(self, z: float = Z95) -> tuple[float, float]:
        half = z * math.sqrt(max(self.variance, 0.0))
        return max(0.0, self.value - half), min(1.0, self.value + half)


def predicted(
    reference: Mapping[str, Sequence[bool]],
    paired: Mapping[str, Sequence[Outcome]],
    sizes: Mapping[str, int],
) -> Predicted | None:
    """The estimate above. `reference`: per category, the reference's correctness on
    its sample S_R (all N_h of them when it ran in full); `paired`: per category, the
    (reference, quant) outcomes on the quant's sample S_Q, inside S_R. None when a
    category of `sizes` has no paired question."""
    if not sizes or any(not paired.get(h) for h in sizes):
        return None
    total = sum(sizes.values())
    value = variance = 0.0
    for h, big in sizes.items():
        w = big / total
        ref = [float(c) for c in reference[h]]
        pairs = paired[h]
        n_r, n_q = len(ref), len(pairs)
        if n_q > n_r:
            raise ValueError(
                f"{h}: the quant's sample ({n_q}) is not inside the reference's ({n_r})"
            )
        y_r = sum(ref) / n_r
        d = [float(q) - float(r) for r, q in pairs]
        y_q = [float(r) for r, _ in pairs]
        d_bar = sum(d) / n_q
        value += w * (y_r + d_bar)
        f_r, f_q = 1 / n_r - 1 / big, 1 / n_q - 1 / big
        variance += w * w * (f_r * _var(ref) + f_q * _var(d) + 2 * f_r * _cov(y_q, d))
    n_q = sum(len(p) for p in paired.values())
    n_r = sum(len(reference[h]) for h in sizes)
    return Predicted(value, max(variance, 0.0), n_q, n_r)


def _var(xs: Sequence[float]) -> float:
    return _cov(xs, xs)


def _cov(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The sample covariance (n - 1); 0 from a single value, which says nothing of it."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / (n - 1)
