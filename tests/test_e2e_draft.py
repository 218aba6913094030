"""End to end (issue 35): speculative decoding with a draft model changes no answer.
SmolLM2-135M drafts for itself (the same vocabulary by construction); its guesses are
checked as lookup's are, so the responses are byte-identical to plain decoding one
question at a time, in one slot or two, and a file begun with a draft resumes without."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fakes import write_fake_model

pytestmark = pytest.mark.e2e
SAMPLE = ["--categories", "biology,law,math,history", "--seed", "3", "--max-tokens", "128",
          "--no-progress"]  # fmt: skip


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmlupro_local", *args], capture_output=True, text=True, timeout=1200
    )


def run(model: Path, out: Path, *flags: str, per_category: int = 1) -> list[dict[str, Any]]:
    done = cli(
        "run", str(model), *SAMPLE, "--per-category", str(per_category), *flags, "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def responses(records: list[dict[str, Any]]) -> dict[int, str]:
    return {r["question_id"]: r["response"] for r in records if r["type"] == "result"}


def test_a_draft_model_changes_no_response(smollm2: Path, tmp_path: Path) -> None:
    plain = run(smollm2, tmp_path / "plain.jsonl", "--parallel", "1", "--lookup", "0")
    one = run(smollm2, tmp_path / "one.jsonl", "--parallel", "1", "--draft", str(smollm2))
    two = run(
        smollm2, tmp_path / "two.jsonl", "--parallel", "2", "--lookup", "4", "--draft", str(smollm2)
    )
    assert len(responses(plain)) == 4
    assert responses(one) == responses(plain) == responses(two)
    for records in (one, two):
        header, end = records[0], records[-1]
        assert header["identity"]["engine"]["draft"].startswith(
            "SmolLM2-135M-Instruct.Q4_1.gguf sha256:"
        )
        drafted = end["used"]["draft"]
        assert drafted["proposed"] >= drafted["kept"] > 0
        # a guess confirmed where the answer stopped counts in the record, not as kept
        guessed = sum(r.get("guessed_tokens", 0) for r in records[1:-1])
        assert drafted["kept"] <= guessed <= drafted["proposed"]
    shown = cli("report", str(tmp_path / "two.jsonl"), "--format", "json")
    mode = json.loads(shown.stdout)["runs"][0]["settings"]["mode"]
    assert mode.startswith("--parallel 2 --lookup 4 --draft SmolLM2-135M-Instruct.Q4_1.gguf")
    # how it ran, not what it computed: a file begun with a draft goes on without one
    begun = tmp_path / "begun.jsonl"
    run(smollm2, begun, "--parallel", "1", "--draft", str(smollm2), "--categories", "law")
    finished = run(smollm2, begun, "--parallel", "1", "--lookup", "0")
    assert responses(finished) == responses(plain)


def test_a_draft_of_another_vocabulary_is_refused_before_decoding(
    smollm2: Path, tmp_path: Path
) -> None:
    stranger = write_fake_model(tmp_path / "stranger.gguf")
    done = cli("run", str(smollm2), *SAMPLE, "--per-category", "1", "--draft", str(stranger),
               "--out", str(tmp_path / "r.jsonl"))  # fmt: skip
    assert done.returncode == 1
    assert (
        "the draft stranger.gguf does not share SmolLM2-135M-Instruct.Q4_1.gguf's vocabulary"
        in done.stderr
    )
    assert "Traceback" not in done.stderr
