"""`run --precision` (issue 24): the seeded sample grows, nested, until the estimated full
score's interval is as narrow as asked; the rule is recorded and a rerun continues."""

from __future__ import annotations

from pathlib import Path

from fakes import FakeEngine, invoke_with, lines

COMMAND = ["--per-category", "2", "--categories", "law,history", "--no-progress"]


def test_the_sample_grows_until_the_interval_is_narrow_enough(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    engine = FakeEngine()
    result = invoke_with(
        engine, "run", str(model), *COMMAND, "--precision", "12", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    runs = [r for r in lines(out) if r["type"] == "run"]
    results = [r for r in lines(out) if r["type"] == "result"]
    sizes = [r["sample"]["size"] for r in runs]
    assert sizes[0] == 4 and sizes == sorted(sizes) and len(sizes) >= 2
    assert all(r["sample"]["precision"] == 12.0 for r in runs)
    # nested: every question is asked once, each round adding to the last
    assert len(results) == len({r["question_id"] for r in results}) == sizes[-1]
    assert len(engine.calls) == sizes[-1]
    said = [line for line in result.output.splitlines() if line.startswith("estimated full score")]
    assert all("extending to" in line for line in said[:-1]) and "--precision 12 met" in said[-1]
    half = float(said[-1].split("+/- ")[1].split(" ")[0])
    assert half <= 12.0
    again = FakeEngine()
    rerun = invoke_with(again, "run", str(model), *COMMAND, "--precision", "12", "--out", str(out))
    assert rerun.exit_code == 0 and again.calls == []  # it continues: nothing left to ask
    assert said[-1] in rerun.output


def test_max_questions_caps_the_growth(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    result = invoke_with(
        FakeEngine(),
        "run",
        str(model),
        *COMMAND,
        "--precision",
        "0.5",
        "--max-questions",
        "20",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert len([r for r in lines(out) if r["type"] == "result"]) == 20
    assert "the sample cannot grow further" in result.output
    refused = invoke_with(FakeEngine(), "run", str(model), "--full", "--precision", "2")
    assert refused.exit_code == 2 and "--precision grows a sample" in refused.output
