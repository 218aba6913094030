"""Answer methods through the runner and the CLI with a scripted engine: the
leaderboard's letter choice (--method logprob) and think budgets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fakes import FakeEngine, reference_request
from mmlupro_local.cli import main
from mmlupro_local.cli.options import CliState
from mmlupro_local.datasets.dataset import load_dataset
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.results.compare import compare, noise_floor, render_comparison
from mmlupro_local.results.report import load_report, render
from mmlupro_local.results.store import StoreError
from mmlupro_local.run.request import RunRequestError
from mmlupro_local.run.runner import run
from mmlupro_local.task.methods import method_named
from mmlupro_local.task.prompt import PromptSettings
from mmlupro_local.task.settings import FORCED_ANSWER
from mmlupro_local.task.wording import OFFICIAL

SAMPLE = SampleSpec(per_category=1, categories=("law", "history"))
THINKING_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}"
)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def results(path: Path) -> list[dict[str, Any]]:
    return [r for r in lines(path) if r["type"] == "result"]


def cli(engine: FakeEngine, *args: str) -> Any:
    return CliRunner().invoke(main, list(args), obj=CliState(engine_factory=engine))


def test_logprob_records_every_letter_and_predicts_the_highest(model: Path, tmp_path: Path) -> None:
    engine = FakeEngine()  # scores the third letter highest
    out = tmp_path / "lp.jsonl"
    config = reference_request(model, out=out, sample=SAMPLE, method="logprob")
    run(config, echo=lambda _: None, engine_factory=engine, progress=False)
    header, *records = lines(out)
    assert header["identity"]["method"] == "logprob"
    assert header["identity"]["generation"]["max_tokens"] == 0
    assert header["identity"]["prompt"]["target_delimiter"] == " "  # "Answer: A"
    assert engine.parallel == 1 and len(records) == 2
    for record in records:
        scores = record["option_logprobs"]
        assert list(scores) == list("ABCDEFGHIJ"[: record["n_options"]])
        assert record["pred"] == "C" == max(scores, key=scores.__getitem__)
        assert record["response"] == "" and record["stop_reason"] == "scored"
        assert record["correct"] == (record["answer"] == "C")
    # the text scored is the letter prompt: no CoT header, ends in "Answer:"
    assert all(
        call.endswith("\nAnswer:") and "Think step by step" not in call for call in engine.calls
    )


def test_a_logprob_run_never_resumes_a_cot_file_nor_the_reverse(
    model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.jsonl"
    run(
        reference_request(model, out=out, sample=SAMPLE),
        echo=lambda _: None,
        engine_factory=FakeEngine(),
        progress=False,
    )
    with pytest.raises(StoreError, match='method: "cot" in the file, "logprob" now'):
        run(
            reference_request(model, out=out, sample=SAMPLE, method="logprob"),
            echo=lambda _: None,
            engine_factory=FakeEngine(),
            progress=False,
        )
    other = tmp_path / "lp.jsonl"
    run(
        reference_request(model, out=other, sample=SAMPLE, method="logprob"),
        echo=lambda _: None,
        engine_factory=FakeEngine(),
        progress=False,
    )
    with pytest.raises(StoreError, match='method: "logprob" in the file, "cot" now'):
        run(
            reference_request(model, out=other, sample=SAMPLE),
            echo=lambda _: None,
            engine_factory=FakeEngine(),
            progress=False,
        )


def test_a_logprob_file_of_the_releases_that_glued_the_letter_is_not_resumed(
    model: Path, tmp_path: Path
) -> None:
    """Before the harness's delimiter was followed, shots read "Answer:A" and "A" was
    scored: such a file (no target_delimiter) is refused, untouched."""
    out = tmp_path / "lp.jsonl"
    run(
        reference_request(model, out=out, sample=SAMPLE, method="logprob"),
        echo=lambda _: None,
        engine_factory=FakeEngine(),
        progress=False,
    )
    out.write_text(out.read_text().replace(', "target_delimiter": " "', ""))
    before = out.read_bytes()
    with pytest.raises(
        StoreError, match=re.escape('prompt.target_delimiter: "none" in the file, " " now')
    ):
        run(
            reference_request(model, out=out, sample=SAMPLE, method="logprob"),
            echo=lambda _: None,
            engine_factory=FakeEngine(),
            progress=False,
        )
    assert out.read_bytes() == before


def test_report_and_compare_name_the_method(model: Path, tmp_path: Path) -> None:
    cot, lp = tmp_path / "cot.jsonl", tmp_path / "lp.jsonl"
    for out, method in ((cot, "cot"), (lp, "logprob")):
        run(
            reference_request(model, out=out, sample=SAMPLE, method=method),  # type: ignore[arg-type]
            echo=lambda _: None,
            engine_factory=FakeEngine(),
            progress=False,
        )
    a, b = load_report(cot), load_report(lp)
    table = render([a, b], "table")
    assert any(line.split()[:3] == ["method", "cot", "logprob"] for line in table.splitlines())
    text = render_comparison(compare(a, b))
    assert "different methods (A --method cot, B --method logprob)" in text
    assert "different methods" not in render_comparison(compare(a, a))
    with pytest.raises(Exception, match="compares one method in two engine modes"):
        noise_floor(a, b)


def test_logprob_refuses_generation_flags_and_servers(model: Path, tmp_path: Path) -> None:
    base = ["run", str(model), "--per-category", "1", "--method", "logprob", "--no-progress"]
    for extra in (
        ["--max-tokens", "64"],
        ["--parallel", "4"],
        ["--lookup", "8"],
        ["--think-budget", "10"],
        ["--extract", "last"],
    ):
        result = cli(FakeEngine(), *base, *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert f"{extra[0]} is about generating answers" in result.output
    result = cli(FakeEngine(), "run", "--server", "http://127.0.0.1:9/v1", "--per-category", "1",
                 "--method", "logprob")  # fmt: skip
    assert result.exit_code == 2 and "--server is about generating answers" in result.output
    with pytest.raises(RunRequestError, match="in-process"):
        reference_request(model, out=tmp_path / "x.jsonl", method="logprob", parallel=2)


def test_logprob_gets_its_own_default_file(model: Path, tmp_path: Path) -> None:
    result = cli(FakeEngine(), "run", str(model), "--per-category", "1", "--categories", "law",
                 "--method", "logprob", "--out-dir", str(tmp_path), "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fake.logprob.completion.5shot.seed0.jsonl").exists()


def test_prompt_prints_the_scored_text(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["prompt", "70", "--method", "logprob", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["prompt"].endswith("\nAnswer:") and data["choices"][0] == " A"
    assert data["prompt"].count("\nAnswer:") == 6  # five shots, then the question


def never_closes(prompt: str) -> str:
    return "<think> " + " ".join(["hmm"] * 50)


def test_a_think_block_that_never_closes_is_cut_at_the_budget(model: Path, tmp_path: Path) -> None:
    engine = FakeEngine(never_closes, after_forced="B) so.")
    out = tmp_path / "r.jsonl"
    config = reference_request(model, out=out, sample=SAMPLE, think_budget=5)
    run(config, echo=lambda _: None, engine_factory=engine, progress=False)
    header, *records = lines(out)
    assert header["identity"]["generation"]["think_budget"] == 5
    assert header["identity"]["generation"]["max_tokens"] == 2048 + 5
    for record in records:
        assert record["think_cut"] is True and record["thinking_tokens"] == 5
        assert record["response"] == "<think> hmm hmm hmm hmm" + FORCED_ANSWER + "B)"
        assert record["pred"] == "B" and record["level"] == 1 and record["stop_reason"] == "early"
        # the opening tag, four words, the forced close, the letter
        assert record["generated_tokens"] == 7
    report = render([load_report(out)], "table")
    rows = {line[:35].strip(): line[35:].strip() for line in report.splitlines()}
    assert rows["thinking / answer tokens"] == "10/4"
    assert rows["think blocks cut by the budget"] == "2 (budget 5)"


def test_without_a_budget_the_block_runs_to_the_end(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    config = reference_request(model, out=out, sample=SAMPLE, max_tokens=20)
    run(config, echo=lambda _: None, engine_factory=FakeEngine(never_closes), progress=False)
    header, *records = lines(out)
    assert "think_budget" not in header["identity"]["generation"]
    for record in records:
        assert "think_cut" not in record and record["thinking_tokens"] == 20
        assert record["pred"] is None and record["stop_reason"] == "length"


def test_a_template_that_thinks_raises_the_default_budget(model: Path, tmp_path: Path) -> None:
    template = tmp_path / "thinks.jinja"
    template.write_text(THINKING_TEMPLATE)
    out = tmp_path / "r.jsonl"
    engine = FakeEngine(lambda prompt: "a b </think> The answer is (A).")
    result = cli(engine, "run", str(model), "--per-category", "1", "--categories", "law",
                 "--style", "chat", "--chat-template", str(template), "--out", str(out),
                 "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "the chat template opens think blocks: each is closed after 4096 tokens "
        "(--think-budget) and the budget raised from 2048 to 6144 tokens"
    ) in result.output
    header, record = lines(out)
    assert engine.calls[0].endswith("<|assistant|><think>\n")
    generation = header["identity"]["generation"]
    assert generation["think_budget"] == 4096 and generation["max_tokens"] == 6144
    assert header["identity"]["prompt"]["chat_template_sha256"]
    assert header["model"]["chat_template"] == str(template)
    assert record["thinking_tokens"] == 2 and record["pred"] == "A"
    # an explicit budget wins, and a --max-tokens no larger is warned about
    result = cli(engine, "run", str(model), "--per-category", "1", "--categories", "law",
                 "--style", "chat", "--chat-template", str(template), "--max-tokens", "100",
                 "--out", str(tmp_path / "s.jsonl"), "--no-progress")  # fmt: skip
    assert "--max-tokens 100 is not above --think-budget 4096" in result.output


def test_chat_template_errors(model: Path, tmp_path: Path) -> None:
    base = ["run", str(model), "--per-category", "1", "--no-progress"]
    result = cli(
        FakeEngine(), *base, "--chat-template", str(tmp_path / "none.jinja"), "--style", "chat"
    )
    assert result.exit_code == 2 and "none.jinja is not a file" in result.output
    result = cli(FakeEngine(), *base, "--chat-template", str(tmp_path))
    assert result.exit_code == 2
    empty = tmp_path / "empty.jinja"
    empty.write_text(" ")
    result = cli(FakeEngine(), *base, "--chat-template", str(empty), "--style", "chat",
                 "--out", str(tmp_path / "r.jsonl"))  # fmt: skip
    assert result.exit_code == 1 and "is empty; give a Jinja template file" in result.output
    assert PromptSettings().style == "completion"


def test_teacher_forcing_follows_each_method_s_own_answer(model: Path, tmp_path: Path) -> None:
    """divergence and quants force another model along the recorded answer: the chain
    of thought after the CoT prompt, or the chosen letter's continuation after the
    letter prompt (one position: the distribution the letter was chosen from)."""
    data = load_dataset()
    for method in ("cot", "logprob"):
        out = tmp_path / f"{method}.jsonl"
        run(
            reference_request(model, out=out, sample=SAMPLE, method=method),  # type: ignore[arg-type]
            echo=lambda _: None,
            engine_factory=FakeEngine(),
            progress=False,
        )
        record = load_report(out).records[0]
        question = next(q for q in data.test if q.question_id == record.question_id)
        prompt, answer = method_named(method).forced(  # type: ignore[arg-type]
            question, record, data.validation, PromptSettings(), wording=OFFICIAL, render=None
        )
        if method == "cot":
            assert answer == record.response and prompt.endswith(
                "Answer: Let's think step by step."
            )
        else:
            assert (answer, record.pred) == (" C", "C") and prompt.endswith("\nAnswer:")
