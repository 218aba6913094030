"""quants' kept figures: used only under the key they were measured with."""

from __future__ import annotations

from pathlib import Path

from mmlupro_local.studies.kept_figures import cached, keep

KEY = {"reference_sha256": "a" * 64, "model_sha256": "b" * 64, "sample": "5 per category, seed 0"}
FIGURES = {"kl_mean": 0.03, "kl_p99": 0.4, "top1_agreement": 0.95, "peak_memory_bytes": 10}


def test_figures_come_back_under_their_key_only(tmp_path: Path) -> None:
    path = tmp_path / "out" / "q2_k.divergence.json"
    assert cached(path, KEY) is None  # none kept yet
    keep(path, KEY, FIGURES)
    assert cached(path, KEY) == FIGURES
    assert cached(path, {**KEY, "sample": "10 per category, seed 0"}) is None
    assert cached(path, {**KEY, "model_sha256": "c" * 64}) is None


def test_a_damaged_file_means_measuring_again(tmp_path: Path) -> None:
    path = tmp_path / "q2_k.divergence.json"
    for text in ('{"version": 1, "key": ', "[]", '{"version": 0, "key": {}, "figures": {}}'):
        path.write_text(text)
        assert cached(path, KEY) is None
