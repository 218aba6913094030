"""How far a model's next-token distributions are from a reference model's, along the
reference's own greedy answers to MMLU-Pro questions (teacher forcing): the mean KL
divergence KL(REF || MODEL) and the share of positions where both put the same token
on top, the statistics `llama-perplexity --kl-divergence` reports on wikitext.

Memory stays bounded: the reference's pass keeps, per position, its top-k tokens and
log-probabilities and the log of the rest's mass, spooled to a temporary file; the
model's pass reads them back in order. The KL is then that of the two distributions
over k+1 outcomes (the top k, and "any other token"): exact when k is the vocabulary,
otherwise a lower bound of the full KL (merging outcomes never increases a KL), and
exactly 0 for a model against itself.
"""

from __future__ import annotations

import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from mmlupro_local.datasets.dataset import Dataset, load_dataset
from mmlupro_local.datasets.sampling import draw
from mmlupro_local.engine import EngineSettings
from mmlupro_local.errors import MmluProError
from mmlupro_local.model.fingerprint import model_sha256
from mmlupro_local.model.gguf import read_gguf
from mmlupro_local.results.records import ResultRecord
from mmlupro_local.results.store import read_results
from mmlupro_local.run.request import RunRequest
from mmlupro_local.run.runner import run
from mmlupro_local.task.prompt import ChatRenderer
from mmlupro_local.task.wording import wording_for

TOP_K = 64
Echo = Callable[[str], None]


class DivergenceError(MmluProError):
    """The two models, or the reference answers, cannot be compared."""


# -- the statistic


def top_k(log_probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The k most likely tokens (most likely first), their log-probs, and the log of
    the probability of all others (-inf when none are left)."""
    k = min(k, log_probs.size)
    ids = np.argpartition(-log_probs, k - 1)[:k]
    ids = ids[np.lexsort((ids, -log_probs[ids]))]  # by probability, ties by id
    return ids.astype(np.int64), log_probs[ids], _log_rest(log_probs, ids)


def _log_rest(log_probs: np.ndarray, ids: np.ndarray) -> float:
    rest = np.delete(log_probs, ids)
    if rest.size == 0:
        return float("-inf")
    top = rest.max()
    return float(top + np.log(np.exp(rest - top).sum())) if np.isfinite(top) else float("-inf")


def bucket_kl(ids: np.ndarray, ref: np.ndarray, ref_rest: float, model: np.ndarray) -> float:
    """KL(REF || MODEL) over the outcomes: each of `ids`, and every other token together.
    `ref` holds REF's log-probs of `ids`, `model` MODEL's log-probs of the whole vocabulary."""
    p = np.exp(ref)
    kl = float(np.sum(p * (ref - model[ids])))
    if np.isfinite(ref_rest):
        kl += float(np.exp(ref_rest) * (ref_rest - _log_rest(model, ids)))
    return max(kl, 0.0)  # a KL is never negative; below 0 is rounding


# -- the figures


@dataclass(frozen=True)
class Divergence:
    """Figures over a set of answer positions."""

    name: str
    questions: int
    positions: int
    mean_kl: float
    median_kl: float
    p99_kl: float
    same_top: float  # share of positions where both models' most likely token is the same

    @classmethod
    def of(cls, name: str, questions: int, kls: Sequence[float], same: int) -> Divergence:
        values = np.asarray(kls, dtype=np.float64)
        if values.size == 0:
            return cls(name, questions, 0, 0.0, 0.0, 0.0, 0.0)
        return cls(
            name,
            questions,
            int(values.size),
            float(values.mean()),
            float(np.median(values)),
            float(np.percentile(values, 99)),
            same / values.size,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "positions": self.positions,
            "mean_kl": self.mean_kl,
            "median_kl": self.median_kl,
            "p99_kl": self.p99_kl,
            "same_top": self.same_top,
        }


@dataclass(frozen=True)
class DivergenceReport:
    reference: str
    model: str
    top_k: int
    categories: list[Divergence]
    overall: Divergence
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "model": self.model,
            "top_k": self.top_k,
            "kl": "KL(reference || model), nats per answer token, over the reference's "
            "top-k tokens and the rest as one outcome (a lower bound of the full KL)",
            "categories": {d.name: d.to_json() for d in self.categories},
            "overall": self.overall.to_json(),
            "seconds": self.seconds,
        }

    def render(self) -> str:
        lines = [
            f"{'category':<18} {'n':>4} {'tokens':>7} {'mean KL':>9} {'median':>9} "
            f"{'99%':>9} {'same top':>9}"
        ]
        for d in [*self.categories, self.overall]:
            lines.append(
                f"{d.name:<18} {d.questions:>4} {d.positions:>7} {d.mean_kl:>9.5f} "
                f"{d.median_kl:>9.5f} {d.p99_kl:>9.5f} {d.same_top:>9.2%}"
            )
        lines.append(
            f"\nKL({self.reference} || {self.model}) in nats per answer token, along the "
            f"reference's greedy answers; top {self.top_k} tokens kept per position "
            f"(the rest as one outcome); {self.seconds:.0f} s"
        )
        return "\n".join(lines)


# -- the two passes


@dataclass(frozen=True)
class Text:
    category: str
    prompt: str
    answer: str


_RECORD = struct.Struct("<qd")  # per position: how many top ids follow, the rest's log-mass


def check_pair(reference: Path, model: Path) -> None:
    """Both files are GGUF models with one vocabulary, read from their headers before
    the reference pass spends its time (issue 32, case 16); ModelFileError or
    DivergenceError saying which."""
    if not read_gguf(reference).shares_vocabulary(read_gguf(model)):
        raise DivergenceError(
            f"{model.name} and {reference.name} do not share a vocabulary (their tokens "
            "differ), so their next-token distributions cannot be compared"
        )


def measure(
    reference: Path,
    model: Path,
    texts: list[Text],
    settings: EngineSettings,
    *,
    k: int = TOP_K,
    progress: bool = True,
) -> DivergenceReport:
    from mmlupro_local.engine.teacher import TeacherForcing

    began = time.perf_counter()
    kept = k
    with tempfile.TemporaryFile(prefix="mmlupro-divergence-") as spool:
        forcing = TeacherForcing(reference, settings)
        try:
            vocabulary = forcing.vocabulary_digest()
            splits = [forcing.split(t.prompt, t.answer) for t in texts]
            longest = max((len(tokens) for tokens, _ in splits), default=1)
            forcing.reserve(longest)
            for tokens, start in _bar(splits, progress, f"{reference.name} (reference)"):
                for _, log_probs in forcing.log_probs(tokens, start):
                    kept = min(k, log_probs.size)  # what is kept, not what was asked
                    ids, ref, rest = top_k(log_probs, k)
                    spool.write(_RECORD.pack(ids.size, rest))
                    spool.write(ids.astype("<i8").tobytes() + ref.astype("<f8").tobytes())
        finally:
            forcing.close()
        spool.seek(0)
        forcing = TeacherForcing(model, settings)
        try:
            forcing.reserve(longest)
            if forcing.vocabulary_digest() != vocabulary:
                raise DivergenceError(
                    f"{model.name} and {reference.name} do not share a vocabulary (their "
                    "tokens differ), so their next-token distributions cannot be compared"
                )
            kls: dict[str, list[float]] = {}
            same: dict[str, int] = {}
            for text, (tokens, start) in zip(
                texts, _bar(splits, progress, model.name), strict=True
            ):
                if forcing.split(text.prompt, text.answer) != (tokens, start):
                    raise DivergenceError(f"{model.name} tokenizes the answers differently")
                for _, log_probs in forcing.log_probs(tokens, start):
                    ids, ref, rest = _read(spool)
                    kls.setdefault(text.category, []).append(bucket_kl(ids, ref, rest, log_probs))
                    same[text.category] = same.get(text.category, 0) + int(
                        int(np.argmax(log_probs)) == int(ids[0])
                    )
        finally:
            forcing.close()
    counts = {c: sum(t.category == c for t in texts) for c in kls}
    rows = [Divergence.of(c, counts[c], kls[c], same[c]) for c in sorted(kls)]
    overall = Divergence.of(
        "overall", len(texts), [x for c in sorted(kls) for x in kls[c]], sum(same.values())
    )
    return DivergenceReport(
        reference.name, model.name, kept, rows, overall, time.perf_counter() - began
    )


def _read(spool: IO[bytes]) -> tuple[np.ndarray, np.ndarray, float]:
    size, rest = _RECORD.unpack(spool.read(_RECORD.size))
    ids = np.frombuffer(spool.read(8 * size), dtype="<i8")
    ref = np.frombuffer(spool.read(8 * size), dtype="<f8")
    return ids, ref, rest


def _bar(items: list[Any], progress: bool, name: str) -> Iterator[Any]:
    yield from tqdm(items, desc=name, unit="q", disable=not progress, leave=False)


# -- the reference's answers


def reference_texts(
    reference: Path, request: RunRequest, results: Path | None, *, echo: Echo, progress: bool
) -> list[Text]:
    """The prompt and the reference's answer for every question of the sample: from a
    finished results file of the `reference` model, or from a run of it (`request`,
    resumable as any)."""
    dataset = load_dataset(request.dataset)
    sample = draw(dataset.test, request.sample)
    if results is None:
        records = {r.question_id: r for r in run(request, echo=echo, progress=progress).records}
    else:
        records = _finished(results, reference, request, dataset)
    missing = [q.question_id for q in sample if q.question_id not in records]
    if missing:
        said = "finish that run first"
        if results is not None:
            header = read_results(results).runs[-1].sample
            if header.seed != request.sample.seed or header.size < len(sample):
                said = (
                    f"it holds another sample ({header.description}) than this command asks "
                    f"for ({request.sample.describe()}): give its sample options, or leave "
                    "out --results"
                )
        raise DivergenceError(
            f"{len(missing)} questions of the sample have no reference answer in "
            f"{results or request.out}; {said}"
        )
    render: ChatRenderer | None = None
    if request.prompt.style == "chat":  # rendered as the run rendered it (--thinking too)
        from mmlupro_local.run.targets.gguf import run_renderer

        render = run_renderer(reference, None, request.prompt.thinking)
    texts = []
    method, wording = request.answering, wording_for(dataset.language)
    for q in sorted(sample, key=lambda q: (q.category, q.question_id)):  # shared prefixes
        record = records[q.question_id]
        prompt, answer = method.forced(
            q, record, dataset.validation, request.prompt, wording=wording, render=render
        )
        texts.append(Text(q.category, prompt, answer))
    return texts


def _said(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _finished(
    path: Path, reference: Path, request: RunRequest, dataset: Dataset
) -> dict[int, ResultRecord]:
    log = read_results(path)
    if log.header is None:
        raise DivergenceError(f"{path} holds no run")
    ident = log.header.identity
    if ident.model_sha256 != model_sha256(reference):
        raise DivergenceError(f"{path} is not a run of {reference.name}")
    if ident.dataset_sha256 != dataset.sha256 or ident.prompt.style != request.prompt.style:
        raise DivergenceError(f"{path} ran another dataset or prompt style than asked")
    # the answers were made with the file's settings: asking for others is a mistake to say
    # (issue 26, case 14), and another sample no reason to "finish" it (case 16)
    asked = {
        "--shots": (ident.prompt.shots, request.prompt.shots),
        "--strip-options": (ident.prompt.strip_options, request.prompt.strip_options),
        "--method": (ident.method, request.method),
    }
    if request.max_tokens is not None:
        asked["--max-tokens"] = (ident.generation.max_tokens, request.max_tokens)
    for flag, (recorded, given) in asked.items():
        if recorded != given:
            raise DivergenceError(
                f"{path} was run with {flag} {_said(recorded)}, not {_said(given)}: its answers "
                f"are what they are; leave out {flag}, or leave out --results to generate anew"
            )
    return dict(log.results)
