"""End to end (issue 31): a question's answer is a property of the model and of the
settings that change the evaluation, not of how it was decoded. On SmolLM2-135M Q4_1 and
Qwen2.5-Coder-0.5B Q4_K_M: one question at a time on a cold prefix cache, then on the
warm cache the defaults and --parallel 4 --lookup 16, and a file begun in one mode and
resumed in another, all give byte-identical responses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e
SAMPLE = ["--categories", "biology,law,math,history", "--seed", "3", "--max-tokens", "192",
          "--no-progress"]  # fmt: skip
# what each model answers on this sample (question id: letter), as the reference gives it
PREDICTIONS = {
    "smollm2": {
        1214: "B",
        1358: "E",
        3225: "B",
        3471: "D",
        4682: "D",
        4922: "E",
        7745: "D",
        8147: "D",
    },
    "qwen05": {
        1214: "B",
        1358: "C",
        3225: "G",
        3471: "J",
        4682: "I",
        4922: "A",
        7745: "C",
        8147: "B",
    },
}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmlupro_local", *args], capture_output=True, text=True, timeout=1200
    )


def run(model: Path, out: Path, *flags: str, per_category: int = 2) -> dict[int, dict[str, Any]]:
    done = cli(
        "run", str(model), *SAMPLE, "--per-category", str(per_category), *flags, "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    return {r["question_id"]: r for r in records if r["type"] == "result"}


@pytest.mark.parametrize("name", ["smollm2", "qwen05"])
def test_every_mode_cache_state_and_resume_gives_the_same_responses(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    model: Path = request.getfixturevalue(name)
    reference = run(model, tmp_path / "reference.jsonl", "--parallel", "1", "--lookup", "0")
    assert len(reference) == 8
    # a cold cache: the first question of each category decoded its prefix
    assert sum(r["decoded_prompt_tokens"] == r["prompt_tokens"] for r in reference.values()) == 4
    responses = {q: r["response"] for q, r in reference.items()}
    defaults = run(model, tmp_path / "defaults.jsonl")
    wide = run(model, tmp_path / "wide.jsonl", "--parallel", "4", "--lookup", "16")
    resumed_file = tmp_path / "resumed.jsonl"
    begun = run(model, resumed_file, "--parallel", "2", "--lookup", "4", per_category=1)
    resumed = run(model, resumed_file, "--parallel", "3", "--lookup", "0")
    assert len(begun) == 4 and len(resumed) == 8
    for other in (defaults, wide, resumed):
        assert {q: r["response"] for q, r in other.items()} == responses
    # the warm runs loaded every category prefix from the cache
    assert all(r["decoded_prompt_tokens"] < r["prompt_tokens"] for r in wide.values())
    assert sum(r["guessed_tokens"] for r in wide.values()) > 0
    assert {q: r["pred"] for q, r in reference.items()} == PREDICTIONS[name]
