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


def test_a_file_that_recorded_a_precision_of_nan_is_read(model: Path, tmp_path: Path) -> None:
    """Issue 32, case 3: releases that took --precision nan ran one round and wrote NaN,
    and then report, resume and divergence refused the file for good; it reads as a run
    with no precision goal."""
    out = tmp_path / "r.jsonl"
    done = invoke_with(
        FakeEngine(), "run", str(model), *COMMAND, "--precision", "50", "--out", str(out)
    )
    assert done.exit_code == 0, done.output
    text = out.read_text()
    assert '"precision": 50.0' in text
    out.write_text(text.replace('"precision": 50.0', '"precision": NaN'))
    report = invoke_with(FakeEngine(), "report", str(out))
    assert report.exit_code == 0, report.output
    again = FakeEngine()
    resumed = invoke_with(again, "run", str(model), *COMMAND, "--out", str(out))
    assert resumed.exit_code == 0, resumed.output
    assert again.calls == [] and "already" in resumed.output


def test_max_questions_caps_the_first_round_too(model: Path, tmp_path: Path) -> None:
    """Issue 32, case 8: --max-questions 20 with --per-category 10 --precision 5 ran 140
    questions; the first round now shrinks to the largest that fits."""
    out = tmp_path / "r.jsonl"
    engine = FakeEngine()
    args = [
        "--per-category",
        "10",
        "--categories",
        "law,history",
        "--precision",
        "1",
        "--max-questions",
        "7",
        "--no-progress",
    ]
    result = invoke_with(engine, "run", str(model), *args, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "--max-questions 7: the first round is 3 per category in law, history" in result.output
    assert len([r for r in lines(out) if r["type"] == "result"]) == 6 == len(engine.calls)
    few = invoke_with(
        FakeEngine(),
        "run",
        str(model),
        *args[:-2],
        "1",
        "--no-progress",
        "--out",
        str(tmp_path / "few.jsonl"),
    )
    assert few.exit_code != 0
    assert "--max-questions 1 is fewer than one question per category (2)" in few.output
