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
    """B minus A on the same questions, with a 95 % Wald interval for paired
    proportions and the exact McNemar test."""
    n = len(a_correct)
    only_a = sum(x and not y for x, y in zip(a_correct, b_correct, strict=True))
    only_b = sum(y and not x for x, y in zip(a_correct, b_correct, strict=True))
    if n == 0:
        return PairedDifference(0, 0, 0, 0.0, 0.0, 0.0, 1.0)
    diff = (only_b - only_a) / n
    variance = ((only_a + only_b) / n - diff * diff) / n
    half = Z95 * math.sqrt(max(variance, 0.0))
    return PairedDifference(
        n, only_a, only_b, diff, diff - half, diff + half, mcnemar_exact(only_a, only_b)
    )


def questions_needed(discordance: float, effect: float) -> int:
    """Paired questions for 80 % power to detect `effect` at 5 % (McNemar, normal
    approximation), given the share of questions on which two runs disagree."""
    if effect <= 0:
        raise ValueError("effect must be positive")
    discordance = max(discordance, effect)
    return math.ceil((Z95 + Z80) ** 2 * discordance / effect**2)
