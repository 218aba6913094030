"""`prompt`: contexts that leave no room are refused."""

from __future__ import annotations

from pathlib import Path

from fakes import (
    invoke,
)


def test_prompt_refuses_contexts_that_leave_no_room(smollm2: Path) -> None:
    """Issue 13, case 18."""
    small = invoke("prompt", "70", "--ctx", "300", "--model", str(smollm2))
    assert small.exit_code == 2 and "--ctx 300 leaves no room for a prompt" in small.output
    assert "-1748" not in small.output
    assert invoke("prompt", "70", "--ctx", "-5", "--model", str(smollm2)).exit_code == 2
    assert invoke("prompt", "70", "--max-tokens", "-1").exit_code == 2
