"""report and compare on results made by the runner with a scripted fake engine."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fakes import (
    FakeEngine,
    finished_run,
    invoke,
    lines,
    question_of,
    reference_request,
    write_fake_model,
)
from mmlupro_local.cli import main
from mmlupro_local.datasets.dataset import Dataset
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.datasets.verify import leaks_answer
from mmlupro_local.results.compare import compare
from mmlupro_local.results.html_data import script_json, unpack_responses
from mmlupro_local.results.html_report import render_html
from mmlupro_local.results.report import headline, load_report
from mmlupro_local.results.stats import wilson
from mmlupro_local.run.runner import run


def scripted(embedded: Dataset, wrong_every: int, silent_every: int = 0) -> FakeEngine:
    """Right on most questions, wrong on every `wrong_every`-th id, silent on others."""
    answers = {q.question: q.answer for q in embedded.test}
    ids = {q.question: q.question_id for q in embedded.test}

    def respond(prompt: str) -> str:
        text = question_of(prompt)
        qid, answer = ids[text], answers[text]
        if silent_every and qid % silent_every == 0:
            return "not sure about this one at all."
        if qid % wrong_every == 0:
            answer = "J" if answer != "J" else "A"
        return f"Reasoning... the answer is ({answer})."

    return FakeEngine(respond)


def make_run(tmp_path: Path, name: str, engine: FakeEngine, **spec: Any) -> Path:
    model = write_fake_model(tmp_path / "fake.gguf")
    out = tmp_path / f"{name}.jsonl"
    sample = SampleSpec(**{"per_category": 6, **spec})
    run(
        reference_request(model, out=out, sample=sample),
        echo=lambda _: None,
        engine_factory=engine,
        progress=False,
    )
    return out


def raw(path: Path) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["type"] == "result"]


def test_json_figures_recomputed_from_raw_records(tmp_path: Path, embedded: Dataset) -> None:
    out = make_run(tmp_path, "a", scripted(embedded, wrong_every=3, silent_every=7))
    result = CliRunner().invoke(main, ["report", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)["runs"][0]
    records = raw(out)
    correct = sum(r["correct"] for r in records)
    assert data["overall"]["n"] == len(records) == 84
    assert data["overall"]["correct"] == correct
    assert data["overall"]["accuracy"] == pytest.approx(correct / 84)
    assert (data["overall"]["ci_low"], data["overall"]["ci_high"]) == pytest.approx(
        wilson(correct, 84)
    )
    guessed = [r for r in records if r["pred"] is None]
    assert data["overall"]["guessed"] == len(guessed) > 0
    assert data["overall"]["official_correct"] == correct + sum(
        r["guess"] == r["answer"] for r in guessed
    )
    assert data["overall"]["levels"] == {"1": 84 - len(guessed), "2": 0, "3": 0, "0": len(guessed)}
    assert data["overall"]["chance"] == pytest.approx(sum(1 / r["n_options"] for r in records) / 84)
    for name, figures in data["categories"].items():
        mine = [r for r in records if r["category"] == name]
        k = sum(r["correct"] for r in mine)
        assert (figures["n"], figures["correct"]) == (len(mine), k)
        assert (figures["ci_low"], figures["ci_high"]) == pytest.approx(wilson(k, len(mine)))
    macro = sum(f["accuracy"] for f in data["categories"].values()) / 14
    assert data["macro_accuracy"] == pytest.approx(macro)
    assert data["cost"]["generated_tokens"] == sum(r["generated_tokens"] for r in records)
    assert data["complete"] is True and data["settings"]["shots"] == 5


def test_leak_questions_are_reported_apart(tmp_path: Path, embedded: Dataset) -> None:
    out = make_run(
        tmp_path,
        "chem",
        scripted(embedded, wrong_every=2),
        per_category=40,
        categories=("chemistry",),
    )
    report = load_report(out)
    leaking = {q.question_id for q in embedded.test if leaks_answer(q)}
    inside = [r for r in raw(out) if r["question_id"] in leaking]
    assert report.leak is not None and report.rest is not None
    assert report.leak.n == len(inside) > 0 and report.rest.n == 40 - len(inside)
    assert report.leak.correct == sum(r["correct"] for r in inside)


def test_table_markdown_csv_and_several_runs(tmp_path: Path, embedded: Dataset) -> None:
    a = make_run(tmp_path, "a", scripted(embedded, wrong_every=2))
    b = make_run(tmp_path, "b", scripted(embedded, wrong_every=5))
    table = CliRunner().invoke(main, ["report", str(a), str(b)]).output
    # each run's estimated full score first, then the table
    assert [line.split(":")[0] for line in table.splitlines()[:2]] == ["a", "b"]
    assert table.splitlines()[2].split() == ["a", "b"]
    assert (
        "pooled sample mean" in table
        and "chance level" in table
        and "whitespace-leak questions" in table
    )
    markdown = CliRunner().invoke(main, ["report", str(a), str(b), "--format", "markdown"]).output
    assert markdown.startswith("|  | a | b |\n|---|---|---|")
    rows = list(
        csv.DictReader(
            io.StringIO(CliRunner().invoke(main, ["report", str(a), "--format", "csv"]).output)
        )
    )
    assert len(rows) == 15 and rows[-1]["category"] == "overall"
    assert int(rows[-1]["correct"]) == sum(r["correct"] for r in raw(a))


def test_compare_detects_a_real_difference(tmp_path: Path, embedded: Dataset) -> None:
    a = make_run(tmp_path, "a", scripted(embedded, wrong_every=2), per_category=20)
    b = make_run(tmp_path, "b", scripted(embedded, wrong_every=11), per_category=20)
    result = CliRunner().invoke(main, ["compare", str(a), str(b), "--json"])
    data = json.loads(result.output)
    ra, rb = raw(a), raw(b)
    by_id = {r["question_id"]: r["correct"] for r in ra}
    only_b = sum(r["correct"] and not by_id[r["question_id"]] for r in rb)
    only_a = sum(by_id[r["question_id"]] and not r["correct"] for r in rb)
    assert (data["overall"]["only_a"], data["overall"]["only_b"]) == (only_a, only_b)
    assert data["overall"]["difference"] == pytest.approx((only_b - only_a) / 280)
    assert data["overall"]["p_value"] < 0.001
    assert data["sentence"].startswith("b is better than a by ")
    text = CliRunner().invoke(main, ["compare", str(a), str(b)]).output
    assert f"on {only_a + only_b} questions one was right and the other wrong" in text
    per_category = {}
    for name in {r["category"] for r in rb}:
        mine = [r for r in rb if r["category"] == name]
        per_category[name] = sum(r["correct"] - by_id[r["question_id"]] for r in mine) / len(mine)
    expected = sorted(per_category.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:3]
    assert [(d["category"], d["difference"]) for d in data["largest_differences"]] == [
        (name, pytest.approx(diff)) for name, diff in expected
    ]
    assert "Largest differences (B - A, points): " + expected[0][0] in text


def test_compare_says_when_there_is_no_evidence(tmp_path: Path, embedded: Dataset) -> None:
    a = make_run(tmp_path, "a", scripted(embedded, wrong_every=2), per_category=2)
    b = make_run(tmp_path, "b", scripted(embedded, wrong_every=3), per_category=2)
    text = CliRunner().invoke(main, ["compare", str(a), str(b)]).output
    assert "Verdict: no detectable difference at this sample size" in text
    assert "questions per category would be needed to detect 2 points" in text


def test_compare_refuses_other_datasets(tmp_path: Path, embedded: Dataset) -> None:
    a = make_run(tmp_path, "a", scripted(embedded, wrong_every=2), per_category=1)
    lines = a.read_text().splitlines()
    header = json.loads(lines[0])
    header["identity"]["dataset_sha256"] = "0" * 64
    b = tmp_path / "b.jsonl"
    b.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    result = CliRunner().invoke(main, ["compare", str(a), str(b)])
    assert result.exit_code == 1 and "were run on different datasets" in result.output


def test_incomplete_and_damaged_files_still_report(tmp_path: Path, embedded: Dataset) -> None:
    out = make_run(tmp_path, "a", scripted(embedded, wrong_every=2), per_category=2)
    lines = out.read_text().splitlines()
    out.write_text(
        "\n".join([lines[0], lines[1], "garbage {", *lines[2:10]]) + "\n" + lines[10][:30]
    )
    result = CliRunner().invoke(main, ["report", str(out), "--format", "json"])
    assert result.exit_code == 0
    assert "line 3 is not a result record" in result.output
    assert "incomplete run, 9 of 28 questions" in result.output
    assert "the last line is incomplete" in result.output


def test_empty_and_foreign_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = CliRunner().invoke(main, ["report", str(empty)])
    assert result.exit_code == 1 and "is empty" in result.output
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"a": 1}\n{"b": 2}\n')
    result = CliRunner().invoke(main, ["report", str(foreign)])
    assert (
        result.exit_code == 1
        and "holds no result records" in result.output
        and "line 1" in result.output
    )


def test_html_escapes_hostile_text(tmp_path: Path, embedded: Dataset) -> None:
    engine = FakeEngine(
        lambda p: "<script>alert('x')</script><img src=x onerror=alert(1)> the answer is (B)"
    )
    out = make_run(tmp_path, "a", engine, per_category=1)
    html = render_html([load_report(out)])
    assert "<script>alert" not in html and "<img src=x" not in html
    assert html.count("<script>") == 1  # only the report's own script
    block = re.search(r'<script type="application/octet-stream" id="responses-0">([^<]*)<', html)
    assert block and unpack_responses(block.group(1))[0].startswith("<script>alert('x')")
    assert "innerHTML" not in html  # the script shows responses through textContent only
    assert 'id="chart"' in html and 'id="questions"' in html
    assert html.count('class="bar"') == 15 and html.count('class="chance"') == 15


def test_a_report_without_results_shows_no_figure(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    """Issue 13, case 6."""
    out = finished_run(model, tmp_path / "r.jsonl", engine)
    header = lines(out)[0]
    out.write_text(json.dumps(header) + "\n")
    data = json.loads(invoke("report", str(out), "--format", "json").stdout)["runs"][0]
    assert data["overall"]["n"] == 0
    for key in ("accuracy", "ci_low", "ci_high", "official_accuracy", "chance", "above_chance"):
        assert data["overall"][key] is None, key
    assert data["macro_accuracy"] is None
    from mmlupro_local.results.figures import NO_FIGURE

    table = invoke("report", str(out)).output
    for row in ("pooled sample mean", "macro average", "chance level", "above chance"):
        line = next(x for x in table.splitlines() if x.startswith(row))
        assert line.split()[-1] == NO_FIGURE and "0.0%" not in line, line


def test_compare_at_tiny_n_says_there_are_too_few(
    model: Path, tmp_path: Path, embedded: Dataset
) -> None:
    """Issue 13, case 7."""
    paths = []
    for right in (False, True):
        out = tmp_path / f"{right}.jsonl"
        run(reference_request(model, out=out, sample=SampleSpec(per_category=4, categories=("law",))),
            echo=print, engine_factory=_answering(embedded, right), progress=False)  # fmt: skip
        paths.append(str(out))
    text = invoke("compare", *paths).output
    assert "100.0 to 100.0" not in text
    assert "too few questions to tell: the runs disagree on 4 of 4" in text
    figures = json.loads(invoke("compare", *paths, "--json").output)["overall"]
    assert figures["difference"] == 1.0 and 0.2 < figures["ci_low"] < 0.5


def _answering(dataset: Dataset, right: bool) -> FakeEngine:
    answers = {q.question: q.answer for q in dataset.test}

    def respond(prompt: str) -> str:
        answer = answers[question_of(prompt)]
        letter = answer if right else ("B" if answer == "A" else "A")
        return f"The answer is ({letter})."

    return FakeEngine(respond)


def test_compare_says_what_it_did_not_pair_and_when_a_file_is_compared_with_itself(
    tmp_path: Path, embedded: Dataset
) -> None:
    """Issue 26, case 22."""
    a = make_run(tmp_path, "a", scripted(embedded, wrong_every=2), per_category=2)
    b = make_run(tmp_path, "b", scripted(embedded, wrong_every=2), per_category=3)
    text = CliRunner().invoke(main, ["compare", str(a), str(b)]).output
    assert "Not compared: 0 of A's and 14 of B's questions" in text
    itself = CliRunner().invoke(main, ["compare", str(a), str(a)]).output
    assert "A and B are the same file" in itself


def test_html_holds_each_response_once_and_flips_point_at_both_runs_own(tmp_path: Path) -> None:
    """Issue 26, case 24: responses are packed per run (unpacked when opened), and a flip
    names where its two responses are instead of writing them out again."""
    a = make_run(tmp_path, "a", FakeEngine(lambda p: f"run A says {len(p) % 7} the answer is (A)"))
    b = make_run(tmp_path, "b", FakeEngine(lambda p: "run B: the answer is (B) </script>"))
    reports = [load_report(a), load_report(b)]
    page = render_html(reports, compare(*reports))
    packed = re.findall(r'<script type="application/octet-stream" id="responses-\d">([^<]*)<', page)
    runs = [unpack_responses(p) for p in packed]
    assert runs == [[r.response for r in report.records] for report in reports]
    assert "run A says" not in page and "run B:" not in page  # not inline, not twice
    flips = re.findall(r'<tr data-flip><td>(\d+)</td>.*?data-index="(\d+) (\d+)"', page)
    assert len(flips) == len(reports[0].records) == 84
    for qid, ia, ib in flips:
        assert reports[0].records[int(ia)].question_id == int(qid)
        assert reports[1].records[int(ib)].question_id == int(qid)
    rows = json.loads(
        re.search(r'<script type="application/json" id="rows">(.*?)</script>', page).group(1)
    )
    assert rows["runs"] == ["a", "b"] and len(rows["rows"]) == 168
    assert script_json({"t": "</script><!--&"}) == '{"t":"\\u003c/script\\u003e\\u003c!--\\u0026"}'


def test_the_estimates_population_is_every_category_the_runs_sampled(
    model: Path, tmp_path: Path
) -> None:
    """Issue 32, case 6: a 14-category file topped up with `--categories biology` was
    reported as "from 3 of 717" (biology alone), the other answers ignored."""
    out = tmp_path / "r.jsonl"
    for sample in (SampleSpec(per_category=1), SampleSpec(per_category=3, categories=("biology",))):
        run(
            reference_request(model, out=out, sample=sample),
            echo=lambda _: None,
            engine_factory=FakeEngine(),
            progress=False,
        )
    report = load_report(out)
    assert report.score is not None and report.sizes is not None
    assert len(report.sizes) == 14 and sum(report.sizes.values()) == 12_032
    assert report.score.strict.questions == 16
    assert "estimated MMLU-Pro score" in headline(report) and "from 16 of 12,032" in headline(
        report
    )
    one = tmp_path / "one.jsonl"
    run(
        reference_request(model, out=one, sample=SampleSpec(per_category=2, categories=("law",))),
        echo=lambda _: None,
        engine_factory=FakeEngine(),
        progress=False,
    )
    said = headline(load_report(one))
    assert said.startswith("estimated MMLU-Pro score on law ") and "from 2 of 1,101" in said


def test_hand_edited_records_are_named_by_line_and_left_out(
    tmp_path: Path, embedded: Dataset
) -> None:
    """Issue 32, case 9: a renamed category, a question id not in the dataset and two
    different answers to one question were taken silently (the first answer won)."""
    out = make_run(tmp_path, "r", scripted(embedded, wrong_every=3), categories=("law", "math"))
    before = load_report(out)
    assert before.overall.n == 12 and not before.warnings
    lines = out.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    renamed, unknown, doubled = [i for i, r in enumerate(records) if r["type"] == "result"][:3]
    records[renamed]["category"] = "jurisprudence"
    records[unknown]["question_id"] = 99_999_999
    again = {**records[doubled], "pred": "J" if records[doubled]["pred"] != "J" else "A"}
    again["response"] += " No wait."
    out.write_text("".join(json.dumps(r) + "\n" for r in [*records, again]))
    report = load_report(out)
    said = "\n".join(report.warnings)
    assert (
        f"line {renamed + 1}: question {records[renamed]['question_id']} is in 'law', not 'jurisprudence'"
        in said
    )
    assert f"line {unknown + 1}: question 99999999 is not in mmlu-pro" in said
    assert (
        f"lines {doubled + 1}, {len(records) + 1} answer question {records[doubled]['question_id']} differently"
        in said
    )
    assert "2 results left out of the report and the estimate" in said
    assert report.overall.n == 9 and report.score is not None
    assert report.score.strict.questions == 9
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 0 and "from 9 of" in result.output
    assert f"line {unknown + 1}" in result.output
    resumed = FakeEngine()  # only the question whose id was edited away is asked again
    make_run(tmp_path, "r", resumed, categories=("law", "math"))
    assert len(resumed.calls) == 1


def test_the_headline_says_what_its_number_is_of(model: Path, tmp_path: Path) -> None:
    """Issue 32, case 11: a run cut short, a custom dataset and a budget below the
    official 2,048 were all headlined "MMLU-Pro score"."""
    cut = tmp_path / "cut.jsonl"
    run(
        reference_request(model, out=cut, sample=SampleSpec(per_category=1)),
        echo=lambda _: None,
        engine_factory=FakeEngine(sigint_at=3),
        progress=False,
    )
    said = headline(load_report(cut))
    assert said.startswith("estimated MMLU-Pro score on biology, business ")
    assert "; 12 sampled categories have no answers yet; cut short: 2 of 14 sampled" in said
    small = tmp_path / "small.jsonl"
    run(
        reference_request(model, out=small, sample=SampleSpec(per_category=1), max_tokens=512),
        echo=lambda _: None,
        engine_factory=FakeEngine(),
        progress=False,
    )
    said = headline(load_report(small))
    assert said.startswith("estimated MMLU-Pro score 24.2% ") and "from 14 of 12,032" in said
    assert said.endswith(
        "; at a 512-token budget, below the official 2,048 (answers it cuts off count as wrong)"
    )
    mini = Path(__file__).resolve().parents[2] / "sample_data" / "mmlu-pro-mini.jsonl"
    assert (
        CliRunner().invoke(main, ["dataset", "import", str(mini), "--name", "mini"]).exit_code == 0
    )
    custom = tmp_path / "custom.jsonl"
    run(
        reference_request(model, out=custom, sample=SampleSpec(per_category=1), dataset="mini"),
        echo=lambda _: None,
        engine_factory=FakeEngine(),
        progress=False,
    )
    said = headline(load_report(custom))
    assert said.startswith("estimated 'mini' score ") and "from 14 of 28 questions" in said
