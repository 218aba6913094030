"""The results file's schema: typed records written and read back, older files still
resumed and reported, unknown versions refused clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakes import FakeEngine, reference_request, write_fake_model
from mmlupro_local.cli import main
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.results.records import ResultRecord, RunHeader, SchemaError
from mmlupro_local.results.store import StoreError, read_results
from mmlupro_local.run.runner import run


def test_records_round_trip_byte_for_byte(release_file: Path) -> None:
    for line in release_file.read_text().splitlines():
        record = json.loads(line)
        typed = (RunHeader if record["type"] == "run" else ResultRecord).from_json(record)
        assert typed.to_json() == record
        assert list(typed.to_json()) == list(record)  # the same key order, so the same bytes


def test_a_file_of_an_earlier_release_is_reported_but_not_resumed(
    release_file: Path, tmp_path: Path
) -> None:
    """Issue 31: answers of releases before canonical decode shapes depended on batching,
    so such a file is not resumed by this engine, and the refusal says what to do; it
    still reports and compares."""
    out = tmp_path / "old.jsonl"
    shutil.copy(release_file, out)
    before = out.read_bytes()
    model = write_fake_model(tmp_path / "fake.gguf")  # the same bytes, so the same sha256
    engine = FakeEngine()
    with pytest.raises(StoreError) as refused:
        run(
            reference_request(
                model, out=out, sample=SampleSpec(per_category=2, categories=("law", "history"))
            ),
            echo=print,
            engine_factory=engine,
            progress=False,
        )
    assert "made by an earlier release" in str(refused.value)
    assert "Start a new --out" in str(refused.value) and not engine.calls
    assert out.read_bytes() == before
    report = CliRunner().invoke(main, ["report", str(out), "--format", "json"])
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["runs"][0]["overall"]["n"] == 3
    compared = CliRunner().invoke(main, ["compare", str(release_file), str(out), "--json"])
    assert compared.exit_code == 0 and json.loads(compared.stdout)["overall"]["n"] == 3


def test_a_file_of_an_earlier_shape_rule_is_not_resumed(model: Path, tmp_path: Path) -> None:
    """A file made under the rule before this one (cpu-streams-1 read prompts 48 rows at a
    time, so some tokens came out otherwise) is refused with what to do, untouched."""
    out = tmp_path / "r.jsonl"
    first = SampleSpec(per_category=1, categories=("law", "history"))
    run(
        reference_request(model, out=out, sample=first),
        echo=print,
        engine_factory=FakeEngine(),
        progress=False,
    )
    out.write_text(out.read_text().replace('"cpu-streams-2"', '"cpu-streams-1"'))
    before = out.read_bytes()
    engine = FakeEngine()
    more = SampleSpec(per_category=2, categories=("law", "history"))
    with pytest.raises(StoreError) as refused:
        run(
            reference_request(model, out=out, sample=more),
            echo=print,
            engine_factory=engine,
            progress=False,
        )
    message = str(refused.value)
    assert (
        "decode shapes (cpu-streams-1)" in message and "this release's (cpu-streams-2)" in message
    )
    assert "Start a new --out" in message and not engine.calls and out.read_bytes() == before


def test_a_file_of_the_release_before_the_run_stage_reports_with_its_siblings(
    test_data: Path,
) -> None:
    """Issue 23: a file main wrote before the refactor (the fast defaults: --parallel 2
    --lookup 16 --threads 2) and its logprob and server siblings report and compare."""
    out = test_data / "schema1-release-2006866.jsonl"
    siblings = [
        str(test_data / f"schema1-release-2006866-{kind}.jsonl") for kind in ("logprob", "server")
    ]
    report = CliRunner().invoke(main, ["report", str(out), *siblings, "--format", "json"])
    assert report.exit_code == 0, report.output
    runs = json.loads(report.stdout)["runs"]
    assert [r["settings"]["mode"] for r in runs] == [
        "--parallel 2 --lookup 16 --threads 2",
        "--parallel 1 --threads 2",
        "--parallel 2",
    ]
    compared = CliRunner().invoke(main, ["compare", str(out), siblings[1], "--json"])
    assert compared.exit_code == 0 and json.loads(compared.stdout)["overall"]["n"] == 3


def test_an_unknown_schema_version_is_a_clear_error(release_file: Path, tmp_path: Path) -> None:
    lines = release_file.read_text().splitlines()
    header = json.loads(lines[0])
    out = tmp_path / "future.jsonl"
    out.write_text("\n".join([json.dumps({**header, "schema": 2}), *lines[1:]]) + "\n")
    message = r"line 1: results schema 2 is not one this mmlupro-local reads \(it reads schema 1\)"
    with pytest.raises(StoreError, match=message):
        read_results(out)
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 1 and "upgrade mmlupro-local" in result.output
    with pytest.raises(SchemaError, match="results schema null"):
        RunHeader.from_json({k: v for k, v in header.items() if k != "schema"})
