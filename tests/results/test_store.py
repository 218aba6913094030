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
    run(
        reference_request(model, out=out, sample=SampleSpec(per_category=1, categories=("law",))),
        echo=print,
        engine_factory=FakeEngine(),
        progress=False,
    )
    whole = out.read_bytes()
    out.write_bytes(whole + b'{"type": "res')
    said: list[str] = []
    run(
        reference_request(model, out=out, sample=SampleSpec(per_category=1, categories=("law",))),
        echo=said.append,
        engine_factory=FakeEngine(),
        progress=False,
    )
    assert out.read_bytes() == whole


def test_malformed_records_are_skipped_with_their_line(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    """Issue 13, cases 9 and 11."""
    out = finished_run(model, tmp_path / "r.jsonl", engine)
    header, first, second = lines(out)
    bad = [
        {**first, "correct": "yes"},
        {**second, "question_id": str(second["question_id"])},
        {k: v for k, v in second.items() if k != "category"},
    ]
    out.write_text("".join(json.dumps(r) + "\n" for r in [header, *bad]))
    log = read_results(out)
    assert log.results == {}
    assert [w.split(" (")[0] for w in log.warnings] == [
        f"{out} line 2 is a malformed result",
        f"{out} line 3 is a malformed result",
        f"{out} line 4 is a malformed result",
    ]
    assert "('correct' is \"yes\")" in log.warnings[0] and "no 'category'" in log.warnings[2]
    for args in (
        ["report", str(out)],
        ["compare", str(out), str(out)],
        ["report", str(out), "--html", str(tmp_path / "r.html")],
    ):
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


@pytest.mark.parametrize(("field", "bad"), [("guess_correct", None), ("seconds", float("nan"))])
def test_a_record_with_a_null_or_nan_is_skipped_with_its_line(
    model: Path, tmp_path: Path, field: str, bad: object
) -> None:
    """Issue 26, cases 8 and 13: `"guess_correct": null` crashed report, html and compare;
    a NaN reached `report --format json`, which strict parsers refuse."""
    out = finished_run(model, tmp_path / "r.jsonl", FakeEngine())
    rows = out.read_text().splitlines()
    record = json.loads(rows[1])
    record[field] = bad
    rows[1] = json.dumps(record)  # json writes NaN as NaN, as the sweep's file had it
    out.write_text("\n".join(rows) + "\n")
    for args in (
        ["report", str(out), "--format", "json"],
        ["compare", str(out), str(out)],
        ["report", str(out), "--html", str(tmp_path / "r.html")],
    ):
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)
        assert f"line 2 is a malformed result ('{field}' is" in result.output
    data = json.loads(invoke("report", str(out), "--format", "json").stdout)
    assert data["runs"][0]["overall"]["n"] == 1  # the other record still counts


def test_only_a_higher_schema_asks_for_an_upgrade(model: Path, tmp_path: Path) -> None:
    """Issue 26, case 21."""
    out = finished_run(model, tmp_path / "r.jsonl", FakeEngine())
    rows = out.read_text().splitlines()
    for version, said in (
        (0, "was not written by mmlupro-local"),
        (None, "was not written"),
        (2, "a newer release wrote it: upgrade"),
    ):
        header = json.loads(rows[0])
        if version is None:
            del header["schema"]
        else:
            header["schema"] = version
        out.write_text("\n".join([json.dumps(header), *rows[1:]]) + "\n")
        result = invoke("report", str(out))
        assert result.exit_code == 1 and said in result.output, result.output


def test_a_file_holding_only_a_torn_header_says_so(model: Path, tmp_path: Path) -> None:
    """Issue 26, case 23: it was called "empty: no run has written to it yet"."""
    out = finished_run(model, tmp_path / "r.jsonl", FakeEngine())
    out.write_bytes(out.read_bytes()[:300])  # the run record, cut mid-line
    result = invoke("report", str(out))
    assert result.exit_code == 1 and "holds only an incomplete run record" in result.output
    again = invoke_with(FakeEngine(), "run", str(model), *LAW2, "--out", str(out))
    assert again.exit_code == 0, again.output  # the command starts it afresh


def test_a_huge_file_without_lines_is_named_and_not_read_into_memory(tmp_path: Path) -> None:
    """Issue 26, case 10: a 1 GB sparse file took 1.09 GB and was called "empty"."""
    import resource

    sparse = tmp_path / "sparse.jsonl"
    with sparse.open("wb") as handle:
        handle.truncate(256 * 2**20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = invoke("report", str(sparse))
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
    assert result.exit_code == 1 and "is not a results file of mmlupro-local" in result.output
    assert "runs past 16 MB without an end" in result.output
    assert grown < 100 * 1024  # not the 256 MiB of the file
