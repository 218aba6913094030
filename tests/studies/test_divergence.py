"""The divergence statistic against a direct computation on small distributions."""

from __future__ import annotations

import numpy as np
import pytest

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
