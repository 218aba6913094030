"""End to end with SmolLM2-135M: `quants` on the model, a copy of it under another name
and a requantization (Q4_0 through gguf-py), one look of 14 questions; its page in a
real browser; a rerun that measures no divergence again."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from browser import browser_or_skip, headless

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
KEYS = {"size_bytes", "bits_per_weight", "prompt_tokens_per_s", "gen_tokens_per_s",
        "peak_memory_bytes", "kl_mean", "kl_p99", "top1_agreement", "estimate",
        "difference", "verdict"}  # fmt: skip


def test_one_table_of_every_figure_for_each_model(smollm2: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(smollm2, copy)
    q4_0 = tmp_path / "q4_0.gguf"
    made = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "requantize.py"), str(smollm2), str(q4_0), "Q4_0"],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    args = [sys.executable, "-m", "mmlupro_local", "quants", str(smollm2), str(copy), str(q4_0),
            "--per-category", "1", "--max-questions", "14", "--max-tokens", "32",
            "--out-dir", str(tmp_path / "out"), "--no-progress", "--format", "json",
            "--html", str(tmp_path / "quants.html")]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    reference, same, lower = json.loads(done.stdout)["models"]
    for row in (reference, same, lower):
        assert row.keys() >= KEYS
        assert row["peak_memory_bytes"] > row["size_bytes"]
        assert row["prompt_tokens_per_s"] > 0 and row["gen_tokens_per_s"] > 0
    assert reference["reference"] and reference["verdict"] == "equivalent"
    assert reference["quant_type"] == "Q4_1" and lower["quant_type"] == "Q4_0"
    assert lower["bits_per_weight"] < reference["bits_per_weight"]
    # a copy is the reference's weights (its sha256): its answers are the reference's,
    # not made again; no divergence, no difference
    assert same["same_weights_as_reference"] and not lower["same_weights_as_reference"]
    assert same["results"] == reference["results"] != lower["results"]
    assert (same["kl_mean"], same["kl_p99"], same["top1_agreement"]) == (0.0, 0.0, 1.0)
    assert same["difference"]["value"] == 0.0
    assert same["estimator"] == "reference as predictor"
    assert lower["kl_mean"] > 0.01 and lower["top1_agreement"] < 1.0
    # 14 questions settle nothing at a 1-point margin: each says how many more it needs
    assert same["verdict"] == lower["verdict"] == "unsettled"
    assert same["more_questions"] > 0 and lower["more_questions"] > 0
    # the page, rendered in a real browser: the table, and both plots with every model
    browser = browser_or_skip()
    flags = headless(browser, tmp_path / "profile")
    page = (tmp_path / "quants.html").as_uri()
    dom = subprocess.run(
        [*flags, "--dump-dom", page], capture_output=True, text=True, timeout=120
    ).stdout
    assert dom.count('<svg class="scatter"') == 2 and dom.count("<circle") == 6
    assert dom.count("<tr>") == 4 and "Q4_0" in dom
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "quants.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", page], capture_output=True, timeout=120, check=True
    )
    assert shot.stat().st_size > 10_000
    # a rerun resumes every file and keeps the divergence measured: the same figures
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "q4_0.gguf's divergence as measured before" in again.stderr
    rows = json.loads(again.stdout)["models"]
    assert [r["kl_mean"] for r in rows] == [reference["kl_mean"], 0.0, lower["kl_mean"]]
    assert [r["difference"] for r in rows] == [
        reference["difference"],
        same["difference"],
        lower["difference"],
    ]
    # nothing ran again, yet the figures of the sessions that did are kept: peak memory
    # and speeds as the first invocation measured them
    for key in ("peak_memory_bytes", "prompt_tokens_per_s", "gen_tokens_per_s"):
        assert [r[key] for r in rows] == [reference[key], same[key], lower[key]], key
