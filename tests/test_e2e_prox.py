"""End to end with SmolLM2-135M on the MMLU-ProX fixture (tests/data/mmlu-prox): import
in Korean, German and Arabic, the prompt the harness renders, a real run in each
language, one report of the three and the Every Eval Ever files of one."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e
DATA = Path(__file__).resolve().parent / "data"
SAMPLE = ("--per-category", "1", "--categories", "law,math", "--max-tokens", "48")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmlupro_local", *args], capture_output=True, text=True, timeout=900
    )


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# what SmolLM2 answers to law question 1335 in each language (48 tokens, greedy): the
# language of the prompt changes the answer
OPENINGS = {
    "ko": " We refer to Wikipedia articles on police for help.",
    "de": " We refer to Wikipedia articles on law for help.",
    "ar": " We refer to Wikipedia articles on legal rights for the defendant",
}


def test_three_languages_import_prompt_run_and_report(smollm2: Path, tmp_path: Path) -> None:
    outs = []
    for lang in ("ko", "de", "ar"):
        name = f"prox-{lang}"
        imported = cli(
            "dataset", "import", str(DATA / "mmlu-prox" / lang), "--name", name, "--lang", lang
        )
        assert imported.returncode == 0, imported.stderr
        golden = gzip.decompress((DATA / "mmlu-prox-prompts" / f"{lang}.jsonl.gz").read_bytes())
        first = json.loads(golden.decode("utf-8").splitlines()[0])
        shown = cli("prompt", str(first["question_id"]), "--dataset", name)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == first["prompt"] + "\n"
        out = tmp_path / f"{lang}.jsonl"
        ran = cli(
            "run", str(smollm2), "--dataset", name, *SAMPLE, "--out", str(out), "--no-progress"
        )
        assert ran.returncode == 0, ran.stderr
        header, *answers = records(out)
        assert header["dataset"]["language"] == lang
        assert header["identity"]["prompt"]["wording"] == f"mmlu-prox-{lang}"
        by_id = {a["question_id"]: a for a in answers}
        assert sorted(by_id) == [1335, 8391]
        assert by_id[1335]["response"].startswith(OPENINGS[lang])
        assert all(a["stop_reason"] == "length" and a["generated_tokens"] == 48 for a in answers)
        # the same run again: every answer is there already, the file is unchanged
        before = out.read_bytes()
        again = cli(
            "run", str(smollm2), "--dataset", name, *SAMPLE, "--out", str(out), "--no-progress"
        )
        assert again.returncode == 0 and out.read_bytes() == before
        outs.append(out)
    report = cli("report", *map(str, outs))
    assert report.returncode == 0, report.stderr
    assert (
        "in Korean" in report.stdout
        and "in German" in report.stdout
        and "in Arabic" in report.stdout
    )
    assert "on the 2 questions all answered" in report.stdout
    eee = cli("report", str(outs[0]), "--format", "eee", "--eee-dir", str(tmp_path / "eee"))
    assert eee.returncode == 0, eee.stderr
    (aggregate,) = (tmp_path / "eee").rglob("*.json")
    assert (
        json.loads(aggregate.read_text())["model_info"]["inference_engine"]["version"] != "unknown"
    )
