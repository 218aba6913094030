"""The divergence statistic against a direct computation on small distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fakes import FakeEngine, invoke, invoke_with, write_fake_model
from mmlupro_local.studies.divergence import Divergence, bucket_kl, top_k


def log_softmax(x: np.ndarray) -> np.ndarray:
    return x - np.log(np.exp(x - x.max()).sum()) - x.max()


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return log_softmax(rng.normal(size=12) * 2), log_softmax(rng.normal(size=12) * 2)


def test_with_every_token_kept_it_is_the_exact_kl(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ref, model = pair
    ids, top, rest = top_k(ref, 12)
    direct = float(np.sum(np.exp(ref) * (ref - model)))
    assert rest == float("-inf") and bucket_kl(ids, top, rest, model) == pytest.approx(
        direct, abs=1e-12
    )
    assert direct > 0


def test_with_k_kept_it_is_the_kl_of_the_merged_distributions(
    pair: tuple[np.ndarray, np.ndarray],
) -> None:
    ref, model = pair
    p, q = np.exp(ref), np.exp(model)
    for k in (1, 3, 7):
        ids, top, rest = top_k(ref, k)
        assert list(ids) == list(np.argsort(-p)[:k])  # the k most likely, most likely first
        others = np.setdiff1d(np.arange(12), ids)
        pm = np.append(p[ids], p[others].sum())
        qm = np.append(q[ids], q[others].sum())
        direct = float(np.sum(pm * np.log(pm / qm)))
        assert bucket_kl(ids, top, rest, model) == pytest.approx(direct, abs=1e-12)
        # merging outcomes never increases a KL
        assert direct <= float(np.sum(p * np.log(p / q))) + 1e-12


def test_a_distribution_against_itself_is_exactly_zero(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ref, _ = pair
    for k in (1, 5, 12):
        ids, top, rest = top_k(ref, k)
        assert bucket_kl(ids, top, rest, ref) == 0.0


def test_figures_over_positions() -> None:
    d = Divergence.of("law", 2, [0.0, 0.5, 1.0, 0.1], same=3)
    assert (d.positions, d.mean_kl, d.median_kl, d.same_top) == (4, 0.4, 0.3, 0.75)
    assert Divergence.of("none", 0, [], 0).positions == 0


def test_results_made_otherwise_are_refused_before_anything_loads(tmp_path: Path) -> None:
    """Issue 26, cases 14 and 16: --max-tokens, --shots and --strip-options beside
    --results were ignored, and another sample was told to "finish that run first"."""
    model = write_fake_model(tmp_path / "fake.gguf")
    out = tmp_path / "ref.jsonl"
    sample = ["--per-category", "1", "--categories", "law", "--no-progress"]
    made = invoke_with(FakeEngine(), "run", str(model), *sample, "--out", str(out))
    assert made.exit_code == 0, made.output
    base = ["divergence", str(model), str(model), *sample, "--results", str(out)]
    for extra, said in (
        (["--shots", "3"], "was run with --shots 5, not 3"),
        (["--max-tokens", "64"], "was run with --max-tokens 2048, not 64"),
        (["--strip-options"], "was run with --strip-options false, not true"),
    ):
        result = invoke(*base, *extra)
        assert result.exit_code == 1 and said in result.output, result.output
    other = invoke("divergence", str(model), str(model), "--per-category", "2", "--categories",
                   "law", "--no-progress", "--results", str(out))  # fmt: skip
    assert other.exit_code == 1 and "holds another sample (1 per category" in other.output


def test_both_models_are_checked_before_the_reference_pass(smollm2: Path, tmp_path: Path) -> None:
    """Issue 32, case 16: a missing MODEL, a directory or another vocabulary were found
    only after the whole reference pass."""
    fake = write_fake_model(tmp_path / "fake.gguf")  # a header with no vocabulary
    out = tmp_path / "ref.jsonl"
    sample = ["--per-category", "1", "--categories", "law", "--no-progress", "--out", str(out)]
    for model, said in (
        (tmp_path / "missing.gguf", "no such file"),
        (tmp_path, "is a directory"),
        (fake, "fake.gguf and SmolLM2-135M-Instruct.Q4_1.gguf do not share a vocabulary"),
    ):
        engine = FakeEngine()
        result = invoke_with(engine, "divergence", str(smollm2), str(model), *sample)
        assert result.exit_code == 1 and said in result.output, result.output
        assert not engine.calls and not out.exists()
