"""The credential audit itself (tests/credentials.py) finds what it must."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import credentials
from credentials import API_KEY, BAD_KEYS, PASSWORD, leaks


def test_a_planted_credential_is_found_in_files_in_any_spelling() -> None:
    with tempfile.TemporaryDirectory() as outside:  # not in what the session audits
        found_in(Path(outside))


def found_in(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "r.jsonl").write_text(
        json.dumps({"command": f"--server http://a:{PASSWORD}@h"})
    )
    (tmp_path / "page.html").write_text(json.dumps(BAD_KEYS[1]))  # ü as \\u00fc
    (tmp_path / "error.log").write_text(repr(f"Bearer {BAD_KEYS[0]}".encode()))
    (tmp_path / "config.yaml").write_text(f"server: http://a:{API_KEY}@h")  # the test's own
    assert leaks([tmp_path], []) == [
        f"{tmp_path / 'error.log'}: 'X-Evil'",
        f"{tmp_path / 'page.html'}: 'ünïcode'",
        f"{tmp_path / 'run' / 'r.jsonl'}: {PASSWORD!r}",
    ]


def test_outputs_read_through_the_cli_runner_or_a_subprocess_are_audited(tmp_path: Path) -> None:
    before = len(credentials.outputs)
    subprocess.run([sys.executable, "-c", f"print({API_KEY!r})"], capture_output=True, check=True)
    assert leaks([], credentials.outputs[before:]) == [f"output 0: {API_KEY!r}"]
    del credentials.outputs[before:]  # planted by this test on purpose
    assert leaks([tmp_path], ["nothing secret"]) == []
