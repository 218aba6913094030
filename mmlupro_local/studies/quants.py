"""Which quantization to run: every figure that answers it, for each model against the
first (the reference), in one resumable pass, one model in memory at a time.

Order: every model is checked (file, memory) before anything runs; the reference
answers the first sample; each other model's teacher-forced divergence along those
answers is measured (cheap, and it stands whatever accuracy settles); then each model
answers the same sample. The sample then doubles (nested, seeded) for the models whose
verdict is not settled, until all are or --max-questions is reached. Each look's
intervals are widened for the number of looks planned (equivalence.look_z), so that
stopping when a verdict looks settled does not make it settled by chance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmlupro_local.datasets.dataset import Dataset, load_dataset
from mmlupro_local.datasets.sampling import SampleSpec, draw
from mmlupro_local.engine import round_ctx
from mmlupro_local.errors import MmluProError
from mmlupro_local.model.fingerprint import model_sha256
from mmlupro_local.model.gguf import read_gguf
from mmlupro_local.results.equivalence import Settled, look_z, predicted, settle
from mmlupro_local.results.estimates import paired, strict
from mmlupro_local.results.records import ResultRecord
from mmlupro_local.results.report import RunReport, estimate_full_score, load_report
from mmlupro_local.results.stats import Z95
from mmlupro_local.run.request import RunRequest
from mmlupro_local.run.runner import run
from mmlupro_local.run.targets.gguf import GgufSpec
from mmlupro_local.studies import kept_figures
from mmlupro_local.studies.divergence import (
    TOP_K,
    DivergenceError,
    Text,
    check_pair,
    measure,
    reference_texts,
)
from mmlupro_local.studies.peak import Peak, memory_peak
from mmlupro_local.task.methods import MethodName, method_named
from mmlupro_local.task.settings import MAX_TOKENS

Echo = Callable[[str], None]
CATEGORIES = 14
PROMPT_ALLOWANCE = 2048  # tokens a 5-shot prompt may take, for the memory check before runs


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def to_json(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass
class QuantRow:
    """One model's figures (fractions of 1 for scores, nats for KL)."""

    name: str
    path: Path
    reference: bool
    size_bytes: int
    quant_type: str
    bits_per_weight: float | None
    prompt_tokens_per_s: float = 0.0
    gen_tokens_per_s: float = 0.0
    peak_memory_bytes: int | None = None
    # the process's peak so far, not this model's alone (no reset where it ran: macOS)
    peak_upper_bound: bool = False
    kl_mean: float | None = None
    kl_p99: float | None = None
    top1_agreement: float | None = None
    divergence_note: str = ""  # why there is no divergence figure
    # the reference's very file under another name (sha256): a result is a function of
    # the weights and the settings, so its answers are the reference's, not made again
    same_weights: bool = False
    estimate: Interval | None = None
    estimator: str = ""  # "own" or "reference as predictor"
    own: Interval | None = None  # the model's own estimate (the two, for comparing widths)
    predicted: Interval | None = None  # the reference's estimate plus the difference
    difference: Interval | None = None
    settled: Settled = field(default_factory=lambda: Settled("unsettled", 0))
    questions: int = 0
    out: Path | None = None

    @property
    def verdict(self) -> str:
        return "equivalent" if self.reference else self.settled.verdict

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": self.reference,
            "size_bytes": self.size_bytes,
            "quant_type": self.quant_type,
            "bits_per_weight": self.bits_per_weight,
            "prompt_tokens_per_s": self.prompt_tokens_per_s,
            "gen_tokens_per_s": self.gen_tokens_per_s,
            "peak_memory_bytes": self.peak_memory_bytes,
            "peak_memory_upper_bound": self.peak_upper_bound,
            "kl_mean": self.kl_mean,
            "kl_p99": self.kl_p99,
            "top1_agreement": self.top1_agreement,
            "divergence_note": self.divergence_note or None,
            "same_weights_as_reference": self.same_weights,
            "estimate": self.estimate.to_json() if self.estimate else None,
            "estimator": self.estimator,
            "estimate_own": self.own.to_json() if self.own else None,
            "estimate_from_reference": self.predicted.to_json() if self.predicted else None,
            "difference": self.difference.to_json() if self.difference else None,
            "verdict": self.verdict,
            "more_questions": 0 if self.reference else self.settled.more_questions,
            "questions": self.questions,
            "results": str(self.out) if self.out else None,
        }


@dataclass(frozen=True)
class QuantsPlan:
    models: list[Path]  # the reference first
    out_dir: Path
    margin: float  # fraction of 1
    start: int  # questions per category in the first round
    max_questions: int  # the most any model answers
    seed: int = 0
    max_tokens: int | None = None
    threads: int | None = None
    gpu_layers: int | None = None
    dataset: str = "mmlu-pro"
    reference_results: Path | None = None
    method: MethodName = "cot"

    @property
    def rounds(self) -> list[int]:
        """Questions per category at each look: doubling from `start` up to the cap."""
        cap = max(self.start, self.max_questions // CATEGORIES)
        sizes, n = [], self.start
        while n < cap:
            sizes.append(n)
            n *= 2
        return [*sizes, cap]


def evaluate(plan: QuantsPlan, *, echo: Echo, progress: bool) -> list[QuantRow]:
    specs = [
        GgufSpec(path=p, threads=plan.threads, gpu_layers=plan.gpu_layers) for p in plan.models
    ]
    rows = [_row(spec, index == 0) for index, spec in enumerate(specs)]
    _check_memory(specs, plan)
    weights = model_sha256(plan.models[0])
    for row in rows[1:]:
        row.same_weights = model_sha256(row.path) == weights
    if plan.reference_results is not None:
        check_nested(plan.reference_results, plan)
        rows[0].out = plan.reference_results
    z = look_z(len(plan.rounds))
    reference = rows[0]
    dataset = load_dataset(plan.dataset)
    for looks, per_category in enumerate(plan.rounds, start=1):
        sample = SampleSpec(per_category=per_category, seed=plan.seed)
        # each look stands on its own sample, whatever more the files hold (a rerun with
        # another plan, an interrupted later look)
        look = Look(dataset, {q.question_id for q in draw(dataset.test, sample)}, z)
        echo(f"quants: look {looks} of at most {len(plan.rounds)}, {per_category} per category")
        ref_request = _request(specs[0], plan, sample)
        if plan.reference_results is None:
            _answer(reference, ref_request, echo, progress)
        if looks == 1:
            _diverge_all(rows, specs, ref_request, plan, echo, progress)
        for row, spec in zip(rows[1:], specs[1:], strict=True):
            if row.same_weights:
                row.out = plan.reference_results or ref_request.out
            elif row.verdict == "unsettled":
                _answer(row, _request(spec, plan, sample), echo, progress)
        ref_report = load_report(plan.reference_results or ref_request.out)
        # the reference's answers: all of a given finished run (its larger sample is what
        # makes it a predictor), else this look's
        ref_records = ref_report.records
        if plan.reference_results is None:
            reference.prompt_tokens_per_s, reference.gen_tokens_per_s = _rates(ref_report)
            ref_records = look.of(ref_records)
        sizes = ref_report.sizes or {}
        reference.estimate = look.own(ref_records, sizes)
        reference.questions = len(ref_records)
        reference.estimator = "own"
        for row in rows[1:]:
            _figures(row, ref_records, sizes, look, plan)
            if row.same_weights:
                row.peak_memory_bytes = reference.peak_memory_bytes
                row.peak_upper_bound = reference.peak_upper_bound
            echo(f"quants: {row.name} after {row.questions} questions: {_progress(row, plan)}")
        if all(r.verdict != "unsettled" for r in rows[1:]):
            break
    return rows


def _progress(row: QuantRow, plan: QuantsPlan) -> str:
    d = row.difference
    if d is None:
        return "no paired questions yet"
    said = row.settled.sentence(d.value, plan.margin)
    return f"{d.value * 100:+.1f} points [{d.low * 100:+.1f}, {d.high * 100:+.1f}], {said}"


def _row(spec: GgufSpec, reference: bool) -> QuantRow:
    info = read_gguf(spec.path)  # a missing, foreign or truncated file, named now
    return QuantRow(
        name=spec.path.name,
        path=spec.path,
        reference=reference,
        size_bytes=info.size,
        quant_type=info.quantization,
        bits_per_weight=info.bits_per_weight,
    )


def _check_memory(specs: list[GgufSpec], plan: QuantsPlan) -> None:
    """Every model against this machine's memory before the first runs (issue 34: not
    after the others)."""
    from mmlupro_local.run.targets.gguf import LocalModel

    budget = plan.max_tokens or MAX_TOKENS
    for spec in specs:
        target = LocalModel(spec, lambda *_: None)  # type: ignore[arg-type]
        warnings: list[str] = []
        target.check_memory(round_ctx(budget + PROMPT_ALLOWANCE), warnings, 1)


def _request(spec: GgufSpec, plan: QuantsPlan, sample: SampleSpec) -> RunRequest:
    stem = spec.path.name.removesuffix(".gguf")
    return RunRequest(
        target=spec,
        out=plan.out_dir / f"{stem}.{method_named(plan.method).file_infix}seed{plan.seed}.jsonl",
        dataset=plan.dataset,
        sample=sample,
        max_tokens=plan.max_tokens,
        method=plan.method,
    )


def _answer(row: QuantRow, request: RunRequest, echo: Echo, progress: bool) -> None:
    """The model answers the sample (resuming its file), its peak memory measured."""
    with memory_peak() as peak:
        outcome = run(request, echo=echo, progress=progress)
    row.out = outcome.path
    # the peak of a session that answered (a resumed file with nothing to do loads no
    # weights), kept beside the file for the sessions after it
    kept = outcome.path.with_suffix(".peak.json")
    key = {"model_sha256": model_sha256(row.path), "method": request.method}
    before = kept_figures.cached(kept, key) or {}
    if outcome.written and peak.bytes is not None:
        before = {
            "peak_memory_bytes": max(peak.bytes, before.get("peak_memory_bytes") or 0),
            "peak_upper_bound": peak.whole_process or bool(before.get("peak_upper_bound")),
        }
        kept_figures.keep(kept, key, before)
    if before:
        _note_peak(row, Peak(before["peak_memory_bytes"], before["peak_upper_bound"]))
    if outcome.interrupted:
        raise KeyboardInterrupt


def _note_peak(row: QuantRow, peak: Peak) -> None:
    if peak.bytes is not None:
        row.peak_memory_bytes = max(row.peak_memory_bytes or 0, peak.bytes)
        row.peak_upper_bound = row.peak_upper_bound or peak.whole_process


def _rates(report: RunReport) -> tuple[float, float]:
    """Prompt and generation tokens/s as the engine measured them on this run's answers
    (time inside llama_decode, the prompt's part apart)."""
    records = report.records
    prompt = sum(r.decoded_prompt_tokens for r in records)
    # a scored choice's decoding is all prompt (files before prompt_seconds was kept for it)
    prompt_s = sum(
        r.prompt_seconds or (r.decode_seconds * (not r.generated_tokens)) for r in records
    )
    generated = sum(r.generated_tokens for r in records)
    gen_s = sum(r.decode_seconds - r.prompt_seconds for r in records)
    return (prompt / prompt_s if prompt_s > 0 else 0.0, generated / gen_s if gen_s > 0 else 0.0)


def _diverge_all(
    rows: list[QuantRow],
    specs: list[GgufSpec],
    ref_request: RunRequest,
    plan: QuantsPlan,
    echo: Echo,
    progress: bool,
) -> None:
    """KL and top-token agreement along the reference's answers (read once for all);
    a model of another vocabulary gets every other figure and says why it has none of
    these."""
    reference = plan.models[0]
    texts: list[Text] | None = None
    for row, spec in zip(rows[1:], specs[1:], strict=True):
        if row.same_weights:  # the same distributions, by construction
            row.kl_mean, row.kl_p99, row.top1_agreement = 0.0, 0.0, 1.0
            continue
        try:
            check_pair(reference, spec.path)
        except DivergenceError as exc:
            row.divergence_note = str(exc)
            continue
        path = ref_request.out.parent / f"{spec.path.name.removesuffix('.gguf')}.divergence.json"
        key = {
            "reference_sha256": model_sha256(reference),
            "model_sha256": model_sha256(spec.path),
            "sample": ref_request.sample.describe(),
            "method": plan.method,
            "max_tokens": plan.max_tokens,
            "dataset": plan.dataset,
            "reference_results": str(plan.reference_results or ""),
            "top_k": TOP_K,
        }
        figures = kept_figures.cached(path, key)
        if figures is None:
            if texts is None:
                texts = reference_texts(
                    reference, ref_request, plan.reference_results, echo=echo, progress=progress
                )
            # no peak here: the pass holds the reference and the model one after the other
            found = measure(reference, spec.path, texts, spec.engine_settings(), progress=progress)
            figures = {
                "kl_mean": found.overall.mean_kl,
                "kl_p99": found.overall.p99_kl,
                "top1_agreement": found.overall.same_top,
            }
            kept_figures.keep(path, key, figures)
        else:
            echo(f"quants: {spec.path.name}'s divergence as measured before ({path})")
        row.kl_mean, row.kl_p99 = figures["kl_mean"], figures["kl_p99"]
        row.top1_agreement = figures["top1_agreement"]


@dataclass(frozen=True)
class Look:
    """One look's sample (question ids) and the z its intervals are widened to."""

    dataset: Dataset
    ids: set[int]
    z: float

    def of(self, records: list[ResultRecord]) -> list[ResultRecord]:
        return [r for r in records if r.question_id in self.ids]

    def own(self, records: list[ResultRecord], sizes: dict[str, int]) -> Interval | None:
        """The estimate from these answers alone, its interval widened from 95 % to z."""
        score = estimate_full_score(records, self.dataset, sizes) if records and sizes else None
        if score is None:
            return None
        e, scale = score.strict, self.z / Z95
        low, high = e.value - (e.value - e.low) * scale, e.value + (e.high - e.value) * scale
        return Interval(e.value, max(0.0, low), min(1.0, high))


def _figures(
    row: QuantRow,
    ref_records: list[ResultRecord],
    sizes: dict[str, int],
    look: Look,
    plan: QuantsPlan,
) -> None:
    if row.out is None:
        return
    report = load_report(row.out)
    row.prompt_tokens_per_s, row.gen_tokens_per_s = _rates(report)
    mine = look.of(report.records)
    row.questions = len(mine)
    z = look.z
    ref_by_id = {r.question_id: r for r in ref_records}
    pairs = [(ref_by_id[r.question_id], r) for r in mine if r.question_id in ref_by_id]
    diff = paired(pairs, sizes, strict) if sizes else None
    own = look.own(mine, sizes)
    row.estimate, row.estimator, row.own = own, "own", own
    if diff is None:
        return
    half = z * math.sqrt(diff.variance)
    low, high = max(-1.0, diff.value - half), min(1.0, diff.value + half)
    row.difference = Interval(diff.value, low, high)
    row.settled = settle(diff.value, low, high, plan.margin, diff.questions, diff.population)
    by_category: dict[str, list[bool]] = {}
    for r in ref_records:
        by_category.setdefault(r.category, []).append(r.correct)
    outcomes: dict[str, list[tuple[bool, bool]]] = {}
    for x, y in pairs:
        outcomes.setdefault(x.category, []).append((x.correct, y.correct))
    guess = predicted(by_category, outcomes, {h: n for h, n in sizes.items() if h in outcomes})
    if guess is None:
        return
    low_p, high_p = guess.interval(z)
    row.predicted = Interval(guess.value, low_p, high_p)
    if own is None or (high_p - low_p) < (own.high - own.low):
        row.estimate, row.estimator = row.predicted, "reference as predictor"


class QuantsError(MmluProError):
    """Models that cannot be compared as asked."""


def check_nested(reference_results: Path, plan: QuantsPlan) -> None:
    """A reference's results file predicts only when the quants' samples lie inside its
    own: the same seed, and at least as many questions per category."""
    report = load_report(reference_results)
    method = report.latest.identity.method
    if method != plan.method:
        raise QuantsError(
            f"{reference_results} was answered with --method {method}; the quants are asked "
            f"with --method {plan.method}: give that, or another results file"
        )
    sample = report.latest.sample
    wanted = plan.rounds[-1]
    inside = sample.per_category is None and sample.fraction is None  # a full run
    inside = inside or (sample.seed == plan.seed and (sample.per_category or 0) >= wanted)
    if not inside:
        raise QuantsError(
            f"{reference_results} holds {sample.description}; the quants' samples must lie "
            f"inside it (seed {plan.seed}, up to {wanted} per category): run the reference "
            "with those, or in full"
        )
