"""End to end: SmolLM2-135M Q4_1 and a second quantization of it (Q4_0, requantized with
gguf-py's reference quantizers by scripts/requantize.py) in one `run`, and `divergence`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ["--per-category", "1", "--categories", "history,law", "--max-tokens", "32",
          "--no-progress"]  # fmt: skip


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmlupro_local", *args], capture_output=True, text=True, timeout=900
    )


def results(path: Path) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["type"] == "result"]


@pytest.fixture(scope="module")
def q4_0(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quant") / "SmolLM2-135M-Instruct.Q4_0.gguf"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "requantize.py"), str(smollm2), str(out), "Q4_0"],
        check=True,
        timeout=300,
    )
    return out


def test_two_quantizations_in_one_command(smollm2: Path, q4_0: Path, tmp_path: Path) -> None:
    done = cli("run", str(smollm2), str(q4_0), *SAMPLE, "--out-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    a = results(tmp_path / "SmolLM2-135M-Instruct.Q4_1.completion.5shot.seed0.jsonl")
    b = results(tmp_path / "SmolLM2-135M-Instruct.Q4_0.completion.5shot.seed0.jsonl")
    assert [r["question_id"] for r in a] == [r["question_id"] for r in b] and len(a) == 2
    same = sum(x["pred"] == y["pred"] for x, y in zip(a, b, strict=True))
    assert f"Same letter: {same / 2:.1%} ({same} of 2)" in done.stdout
    assert f"{2 - same} flipped predictions" in done.stdout
    for name, runs in (("Q4_1", a), ("Q4_0", b)):  # the combined table counts each file
        assert name in done.stdout
        assert "overall" in done.stdout and len(runs) == 2


def test_divergence_is_zero_against_itself_and_positive_against_another_quantization(
    smollm2: Path, q4_0: Path, tmp_path: Path
) -> None:
    ref = tmp_path / "ref.jsonl"
    itself = cli(
        "divergence", str(smollm2), str(smollm2), *SAMPLE, "--out", str(ref), "--format", "json"
    )
    assert itself.returncode == 0, itself.stderr
    figures = json.loads(itself.stdout)["overall"]
    assert figures["mean_kl"] == 0.0 and figures["same_top"] == 1.0 and figures["positions"] > 20
    other = cli(
        "divergence", str(smollm2), str(q4_0), *SAMPLE, "--results", str(ref), "--format", "json"
    )
    assert other.returncode == 0, other.stderr
    data = json.loads(other.stdout)
    assert data["overall"]["mean_kl"] > 0.01 and data["overall"]["same_top"] < 1.0
    assert data["overall"]["positions"] == figures["positions"]  # the same answers, reused
    assert sorted(data["categories"]) == ["history", "law"]
    capped = cli("divergence", str(smollm2), str(q4_0), *SAMPLE, "--results", str(ref),
                 "--top-k", "1000000000")  # fmt: skip
    assert capped.returncode == 0, capped.stderr  # issue 26, case 28: what was kept
    assert "top 49152 tokens kept" in capped.stdout and "1000000000" not in capped.stdout
