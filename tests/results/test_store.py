"""The results store: foreign files refused, torn lines cut, malformed records skipped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fakes import (
    LAW2,
    FakeEngine,
    finished_run,
    invoke,
    invoke_with,
    lines,
    reference_request,
)
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.results.store import read_results
from mmlupro_local.run.runner import run


@pytest.mark.parametrize("content", [b'{"a": 1}\n', b"notes without a newline", b'{"a": 1}'])
def test_a_foreign_one_line_file_is_refused_not_emptied(
    model: Path, tmp_path: Path, engine: FakeEngine, content: bytes
) -> None:
    """Issue 13, case 1."""
    out = tmp_path / "x.json"
    out.write_bytes(content)
    result = invoke_with(engine, "run", str(model), *LAW2, "--out", str(out))
    assert result.exit_code == 1
    assert "holds no run record" in result.output and "choose another --out" in result.output
    assert out.read_bytes() == content and engine.calls == []


def test_a_torn_line_after_a_run_record_is_still_cut(model: Path, tmp_path: Path) -> None:
    """Issue 13, case 1."""
    out = tmp_path / "r.jsonl"
    run(reference_request(model, out=out, sample=SampleSpec(per_category=1, categories=("law",))),
        echo=print, engine_factory=FakeEngine(), progress=False)  # fmt: skip
    whole = out.read_bytes()
    out.write_bytes(whole + b'{"type": "res')
    said: list[str] = []
    run(reference_request(model, out=out, sample=SampleSpec(per_category=1, categories=("law",))),
        echo=said.append, engine_factory=FakeEngine(), progress=False)  # fmt: skip
    assert out.read_bytes() == whole


def test_malformed_records_are_skipped_with_their_line(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    """Issue 13, cases 9 and 11."""
    out = finished_run(model, tmp_path / "r.jsonl", engine)
    header, first, second = lines(out)
    bad = [{**first, "correct": "yes"}, {**second, "question_id": str(second["question_id"])},
           {k: v for k, v in second.items() if k != "category"}]  # fmt: skip
    out.write_text("".join(json.dumps(r) + "\n" for r in [header, *bad]))
    log = read_results(out)
    assert log.results == {}
    assert [w.split(" (")[0] for w in log.warnings] == [
        f"{out} line 2 is a malformed result",
        f"{out} line 3 is a malformed result",
        f"{out} line 4 is a malformed result",
    ]
    assert "('correct' is \"yes\")" in log.warnings[0] and "no 'category'" in log.warnings[2]
    for args in (["report", str(out)], ["compare", str(out), str(out)],
                 ["report", str(out), "--html", str(tmp_path / "r.html")]):  # fmt: skip
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert "line 4 is a malformed result (no 'category'); skipped" in result.output


def test_answers_that_arrive_together_share_one_fsync(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 25: a fast engine's answers are written in groups, each acknowledged (in the
    log, on the bar) only once its group is on disk; a slow engine's one at a time."""
    import mmlupro_local.results.store as store_module

    syncs: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        syncs.append(fd)
        real(fd)

    monkeypatch.setattr(store_module.os, "fsync", counting)
    out = tmp_path / "r.jsonl"
    result = invoke_with(FakeEngine(), "run", str(model), "--per-category", "20",
                         "--categories", "law,history", "--no-progress", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    written = [r for r in lines(out) if r["type"] == "result"]
    assert len(written) == 40 and len(syncs) < 40  # the scripted engine answers at once
    slow = FakeEngine(delay=0.03)
    syncs.clear()
    result = invoke_with(slow, "run", str(model), "--per-category", "2", "--categories", "law",
                         "--no-progress", "--out", str(tmp_path / "slow.jsonl"))  # fmt: skip
    assert result.exit_code == 0 and len(syncs) == 1 + 2  # the run record, then each answer
