from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from mmlupro_local.cli import main


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_info_json(reference_counts: dict[str, int]) -> None:
    code, out = invoke("dataset", "info", "--json")
    assert code == 0
    facts = json.loads(out)
    assert facts["test"] == 12032 and facts["validation"] == 70
    assert facts["categories"] == dict(sorted(reference_counts.items()))
    assert round(facts["chance"], 4) == 0.1109
    assert facts["sha256"] == facts["sha256"].lower() and len(facts["sha256"]) == 64
    assert facts["options_histogram"]["10"] == 9982
    assert facts["datasets"] == ["mmlu-pro"]


def test_info_table() -> None:
    code, out = invoke("dataset", "info")
    assert code == 0
    assert "Rows:            test 12,032, validation 70" in out
    assert "Chance level:    11.09%" in out
    assert "computer science      410    5" in out


def test_verify_lists_findings() -> None:
    code, out = invoke("dataset", "verify")
    assert code == 0
    assert "test question 3983: answer is 'C' but answer_index 1 is 'B'" in out
    assert "test: 492 questions where only the correct option has" in out
    assert out.rstrip().endswith("3 findings, 0 errors (sha256 9cb8b4090518)")
    code, out = invoke("dataset", "verify", "--json")
    found = [json.loads(line) for line in out.splitlines()]
    assert {f["check"] for f in found} == {"answer_mismatch", "na_padding", "whitespace_leak"}


def test_unknown_dataset_is_a_clean_error() -> None:
    code, out = invoke("dataset", "info", "--dataset", "nope")
    assert code == 1
    assert out.startswith("Error: no dataset named 'nope'")


def test_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mmlupro_local", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "dataset" in result.stdout
