"""Small, dependency-free statistics for accuracy figures and paired comparisons."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054
Z80 = 0.8416212335729143  # one-sided, for 80 % power


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % by default)."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # at 0 or n correct the bound is exactly 0 or 1; rounding would leave 1e-17
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return low, high


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: b and c are the two kinds of disagreement."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail: float = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2.0 * tail)


@dataclass(frozen=True)
class PairedDifference:
    n: int
    only_a: int  # A right, B wrong
    only_b: int  # B right, A wrong
    difference: float  # accuracy of B minus accuracy of A
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def disagreements(self) -> int:
        return self.only_a + self.only_b


def paired_difference(a_correct: list[bool], b_correct: list[bool]) -> PairedDifference:
    """B minus A on the same questions, with Newcombe's hybrid score interval for paired
    proportions (his method 10) and the exact McNemar test. Unlike the Wald interval it
    stays honest at small n: it does not shrink to a point when every pair disagrees
    the same way."""
    n = len(a_correct)
    only_a = sum(x and not y for x, y in zip(a_correct, b_correct, strict=True))
    only_b = sum(y and not x for x, y in zip(a_correct, b_correct, strict=True))
    if n == 0:
        return PairedDifference(0, 0, 0, 0.0, -1.0, 1.0, 1.0)
    both = sum(x and y for x, y in zip(a_correct, b_correct, strict=True))
    low, high = newcombe_interval(both, only_a, only_b, n - both - only_a - only_b)
    diff = (only_b - only_a) / n
    return PairedDifference(n, only_a, only_b, diff, low, high, mcnemar_exact(only_a, only_b))


def newcombe_interval(both: int, only_a: int, only_b: int, neither: int) -> tuple[float, float]:
    """95 % interval of accuracy(B) - accuracy(A) from the four paired counts (Newcombe
    1998, "Improved confidence intervals for the difference between binomial
    proportions based on paired data", method 10): the Wilson intervals of the two
    accuracies, combined with the correlation phi of the pairs, continuity-corrected as
    the paper defines it."""
    n = both + only_a + only_b + neither
    p_a, p_b = (both + only_a) / n, (both + only_b) / n
    l_a, u_a = wilson(both + only_a, n)
    l_b, u_b = wilson(both + only_b, n)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    corrected = cross - n / 2 if cross > n / 2 else min(cross, 0)
    phi = corrected / math.sqrt(margins) if margins else 0.0
    diff = p_b - p_a
    below = (p_b - l_b) ** 2 - 2 * phi * (p_b - l_b) * (u_a - p_a) + (u_a - p_a) ** 2
    above = (u_b - p_b) ** 2 - 2 * phi * (u_b - p_b) * (p_a - l_a) + (p_a - l_a) ** 2
    return max(-1.0, diff - math.sqrt(max(below, 0.0))), min(1.0, diff + math.sqrt(max(above, 0.0)))


def fewest_detectable(alpha: float = 0.05) -> int:
    """The fewest disagreements with which the exact McNemar test can reach `alpha`
    (all of them one way): below it no sample can show a difference."""
    n = 1
    while mcnemar_exact(n, 0) >= alpha:
        n += 1
    return n


def questions_needed(discordance: float, effect: float) -> int:
    """Paired questions for 80 % power to detect `effect` at 5 % (McNemar, normal
    approximation), given the share of questions on which two runs disagree."""
    if effect <= 0:
        raise ValueError("effect must be positive")
    discordance = max(discordance, effect)
    return math.ceil((Z95 + Z80) ** 2 * discordance / effect**2)
