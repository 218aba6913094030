"""Paired comparison of two runs on the questions both answered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmlupro_local.errors import MmluProError
from mmlupro_local.results.estimates import PairedEstimate, paired, strict
from mmlupro_local.results.records import ResultRecord
from mmlupro_local.results.report import RunReport, shared_questions
from mmlupro_local.results.stats import (
    Z80,
    PairedDifference,
    fewest_detectable,
    paired_difference,
    questions_needed,
    wilson,
)

DETECT = 0.02  # the effect size the sample-size hint is about: 2 points


@dataclass(frozen=True)
class Agreement:
    """How often two runs gave the same letter (both giving none counts as the same)."""

    n: int
    same: int

    @property
    def rate(self) -> float:
        return self.same / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.same, self.n)

    def describe(self) -> str:
        low, high = self.interval
        return (
            f"{self.rate:.1%} ({self.same} of {self.n}), 95 % CI {low:.1%} to {high:.1%}"
            if self.n
            else "no shared questions"
        )

    def to_json(self) -> dict[str, Any]:
        low, high = self.interval
        return {
            "n": self.n,
            "same": self.same,
            "rate": self.rate if self.n else None,
            "ci_low": low if self.n else None,
            "ci_high": high if self.n else None,
        }


@dataclass(frozen=True)
class Flip:
    """A question the two runs answered with different letters."""

    question_id: int
    category: str
    answer: str
    pred_a: str | None
    pred_b: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "question_id": self.question_id,
            "category": self.category,
            "answer": self.answer,
            "pred_a": self.pred_a,
            "pred_b": self.pred_b,
        }


@dataclass(frozen=True)
class NoiseFloor:
    """How often A's own model changes its answers when only the engine mode changes."""

    label: str
    mode_a: str
    mode_other: str
    agreement: Agreement

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.label,
            "mode_a": self.mode_a,
            "mode_other": self.mode_other,
            "agreement": self.agreement.to_json(),
            "flip_rate": 1 - self.agreement.rate if self.agreement.n else None,
        }


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    overall: PairedDifference
    categories: dict[str, PairedDifference]
    needed_per_category: int  # paired questions per category to detect DETECT
    agreement: Agreement = Agreement(0, 0)
    flips: tuple[Flip, ...] = ()
    noise: NoiseFloor | None = None
    modes: tuple[str, str] = ("", "")  # each run's engine mode
    methods: tuple[str, str] = ("cot", "cot")  # each run's --method
    unpaired: tuple[int, int] = (0, 0)  # questions of A, and of B, the other did not answer
    languages: tuple[str, str] = ("en", "en")  # each run's dataset's language
    same_file: bool = False
    # B's estimated full score minus A's (categories weighted by size), when the dataset
    # is at hand; the verdict rests on it and its stratified test
    difference: PairedEstimate | None = None

    def _figure(self) -> tuple[float, float, float, str]:
        """(difference, low, high, the p-values said) the verdict rests on."""
        d, e = self.overall, self.difference
        if e is None:
            return d.difference, d.ci_low, d.ci_high, f"p = {_p(d.p_value)}"
        return (
            e.value,
            e.low,
            e.high,
            (f"stratified p = {_p(e.p_value)}, pooled McNemar p = {_p(d.p_value)}"),
        )

    @property
    def p_value(self) -> float:
        return self.overall.p_value if self.difference is None else self.difference.p_value

    @property
    def within_noise(self) -> bool:
        """B changed no more of A's answers than A's own model does across engine modes."""
        if self.noise is None or not self.agreement.n or not self.noise.agreement.n:
            return False
        return 1 - self.agreement.rate <= 1 - self.noise.agreement.rate

    def sentence(self) -> str:
        text = self._verdict()
        if self.noise is not None and self.noise.agreement.n and self.agreement.n:
            flips, floor = 1 - self.agreement.rate, 1 - self.noise.agreement.rate
            text += (
                f"; B changed {flips:.1%} of A's answers, and A's own model changes "
                f"{floor:.1%} between {self.noise.mode_a} and {self.noise.mode_other} "
                "(the noise floor)"
            )
            if self.within_noise:
                text += ": a difference smaller than the noise floor"
        return text

    def _verdict(self) -> str:
        d = self.overall
        if d.n == 0:
            return "the runs share no questions"
        value, low, high, said = self._figure()
        of = "" if self.difference is None else " of the estimated full score"
        if d.disagreements < fewest_detectable():
            return (
                f"too few questions to tell: the runs disagree on {d.disagreements} of {d.n}, and "
                f"the paired test needs at least {fewest_detectable()} disagreements to detect any "
                f"difference ({value * 100:+.1f} points{of}, 95 % CI {low * 100:.1f} to "
                f"{high * 100:.1f}, {said}); about {self.needed_per_category} "
                f"questions per category would be needed to detect {DETECT * 100:.0f} points"
            )
        if self.p_value < 0.05:
            if value > 0:
                better, worse = self.b, self.a
            else:
                better, worse, low, high = self.a, self.b, -high, -low
            return (
                f"{better} is better than {worse} by {abs(value) * 100:.1f} points{of}, "
                f"95 % CI {low * 100:.1f} to {high * 100:.1f}, {said}"
            )
        return (
            f"no detectable difference at this sample size ({value * 100:+.1f} points{of}, "
            f"95 % CI {low * 100:.1f} to {high * 100:.1f}, {said}); about "
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
            return {
                "n": d.n,
                "only_a": d.only_a,
                "only_b": d.only_b,
                "disagreements": d.disagreements,
                "difference": d.difference,
                "ci_low": d.ci_low,
                "ci_high": d.ci_high,
                "p_value": d.p_value,
            }

        return {
            "a": self.a,
            "b": self.b,
            "modes": {"a": self.modes[0], "b": self.modes[1]},
            "methods": {"a": self.methods[0], "b": self.methods[1]},
            "agreement": self.agreement.to_json(),
            "flips": [flip.to_json() for flip in self.flips],
            "noise_floor": self.noise.to_json() if self.noise else None,
            "within_noise_floor": self.within_noise if self.noise else None,
            "overall": figures(self.overall),
            "categories": {k: figures(v) for k, v in self.categories.items()},
            "needed_per_category": self.needed_per_category,
            **({"difference": self.difference.to_json()} if self.difference else {}),
            "largest_differences": [
                {"category": name, "difference": d.difference} for name, d in self.largest()
            ],
            "sentence": self.sentence(),
        }


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _shared(a: RunReport, b: RunReport) -> list[tuple[ResultRecord, ResultRecord]]:
    """The questions both answered. Runs on two datasets pair only when one is a
    translation (MMLU-ProX keeps MMLU-Pro's question ids), on the ids both have under
    the same category."""
    languages = (a.settings["language"], b.settings["language"])
    if a.dataset_sha256 != b.dataset_sha256 and languages[0] == languages[1]:
        raise MmluProError(
            f"{a.path} and {b.path} were run on different datasets "
            f"({a.dataset_sha256[:12]} vs {b.dataset_sha256[:12]}); their questions are not comparable"
        )
    ids = shared_questions([a, b])
    a_by_id = {r.question_id: r for r in a.records}
    shared = [(a_by_id[r.question_id], r) for r in b.records if r.question_id in ids]
    return sorted(shared, key=lambda pair: pair[0].question_id)


def _agreement(shared: list[tuple[ResultRecord, ResultRecord]]) -> Agreement:
    return Agreement(len(shared), sum(x.pred == y.pred for x, y in shared))


def noise_floor(a: RunReport, other: RunReport) -> NoiseFloor:
    """A against a run of the very same model in another engine mode."""
    if a.identity.model_key != other.identity.model_key:
        raise MmluProError(
            f"{other.path} is not a run of {a.label}'s model ({a.first.model.get('name')}); "
            "a noise floor compares one model with itself in another engine mode"
        )
    if a.method != other.method:
        raise MmluProError(
            f"{other.path} used --method {other.method} and {a.path} --method "
            f"{a.method}; a noise floor compares one method in two engine modes"
        )
    mode_a, mode_other = a.mode, other.mode
    if a.arithmetic == other.arithmetic:
        if a.identity.exact:
            raise MmluProError(
                f"{a.path} and {other.path} compute every token the same way (canonical "
                f"decode shapes, {a.arithmetic}): --parallel and --lookup change no answer, "
                "so their noise floor is zero. A noise floor needs a run whose arithmetic "
                "differs: other --threads, --kv-type, or a GPU"
            )
        raise MmluProError(
            f"{a.path} and {other.path} ran in the same engine mode ({mode_a}); a noise floor "
            "needs another mode, such as --parallel 8 or --lookup 16"
        )
    return NoiseFloor(other.label, mode_a, mode_other, _agreement(_shared(a, other)))


def compare(a: RunReport, b: RunReport, noise: RunReport | None = None) -> Comparison:
    shared = _shared(a, b)
    overall = paired_difference([x.correct for x, _ in shared], [y.correct for _, y in shared])
    categories = {}
    for name in sorted({x.category for x, _ in shared}):
        pairs = [(x, y) for x, y in shared if x.category == name]
        categories[name] = paired_difference(
            [x.correct for x, _ in pairs], [y.correct for _, y in pairs]
        )
    sizes = {**(b.sizes or {}), **(a.sizes or {})}
    difference = paired(shared, sizes, strict) if sizes else None
    if difference is not None and difference.variance > 0:
        needed = difference.questions_for(DETECT, Z80)
    else:
        discordance = overall.disagreements / overall.n if overall.n else 0.5
        needed = questions_needed(discordance, DETECT)
    n_categories = max(1, len(categories))
    flips = tuple(
        Flip(x.question_id, x.category, x.answer, x.pred, y.pred)
        for x, y in shared
        if x.pred != y.pred
    )
    return Comparison(
        a.label,
        b.label,
        overall,
        categories,
        -(-needed // n_categories),
        agreement=_agreement(shared),
        flips=flips,
        noise=noise_floor(a, noise) if noise is not None else None,
        modes=(a.mode, b.mode),
        methods=(a.method, b.method),
        difference=difference,
        unpaired=(len(a.records) - len(shared), len(b.records) - len(shared)),
        languages=(a.settings["language"], b.settings["language"]),
        same_file=a.path.resolve() == b.path.resolve(),
    )


def render_flips(c: Comparison) -> str:
    lines = [f"{'id':>6} {'category':<18} {'answer':>6} {'A':>4} {'B':>4}"]
    for f in c.flips:
        lines.append(
            f"{f.question_id:>6} {f.category:<18} {f.answer:>6} {f.pred_a or '-':>4} "
            f"{f.pred_b or '-':>4}"
        )
    return "\n".join(lines)


def render_comparison(c: Comparison) -> str:
    lines = [
        f"{'category':<18} {'n':>5} {'A only':>6} {'B only':>6} {'B - A':>7} {'95% CI':>16} {'p':>8}"
    ]
    for name, d in [*c.categories.items(), ("pooled", c.overall)]:
        interval = f"{d.ci_low * 100:+.1f} to {d.ci_high * 100:+.1f}"
        lines.append(
            f"{name:<18} {d.n:>5} {d.only_a:>6} {d.only_b:>6} {d.difference * 100:>+7.1f} {interval:>16} {_p(d.p_value):>8}"
        )
    e = c.difference
    if e is not None:
        interval = f"{e.low * 100:+.1f} to {e.high * 100:+.1f}"
        lines.append(
            f"{'full score (est.)':<18} {e.questions:>5} {'':>6} {'':>6} {e.value * 100:>+7.1f} "
            f"{interval:>16} {_p(e.p_value):>8}"
        )
        lines.append(
            "full score (est.): the categories' paired differences weighted by category size, "
            "a stratified interval and test; pooled: each question counted once"
        )
    lines.append(
        f"\nA = {c.a}, B = {c.b}; on {c.overall.disagreements} questions one was right and the "
        f"other wrong."
    )
    lines.append(
        f"Same letter: {c.agreement.describe()}; {len(c.flips)} flipped predictions (a "
        "different letter, right or wrong)."
    )
    if c.same_file:
        lines.append("A and B are the same file: the comparison says nothing.")
    if any(c.unpaired):
        lines.append(
            f"Not compared: {c.unpaired[0]} of A's and {c.unpaired[1]} of B's questions, "
            "which the other run did not answer (the runs' samples differ)."
        )
    if c.languages[0] != c.languages[1]:
        lines.append(
            f"The runs are in different languages (A {c.languages[0]}, B {c.languages[1]}): "
            "paired on the questions both translations have; the difference measures the "
            "language as much as the model."
        )
    if c.methods[0] != c.methods[1]:
        lines.append(
            f"The runs used different methods (A --method {c.methods[0]}, B --method "
            f"{c.methods[1]}): the difference measures the method as much as the model."
        )
    if c.modes[0] != c.modes[1]:
        lines.append(
            f"The runs differ in engine mode (A {c.modes[0]}, B {c.modes[1]}): that alone "
            "flips some greedy answers."
        )
    if c.noise is not None:
        lines.append(
            f"Noise floor ({c.noise.label}, A's model at {c.noise.mode_other}): same letter "
            f"{c.noise.agreement.describe()}."
        )
    if c.largest():
        biggest = ", ".join(f"{name} {d.difference * 100:+.1f}" for name, d in c.largest())
        lines.append(f"Largest differences (B - A, points): {biggest}")
    lines.append(f"Verdict: {c.sentence()}.")
    return "\n".join(lines)
