"""The runner, results store and run command with a scripted fake engine."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fakes import FakeEngine, question_of, reference_request, write_fake_model
from mmlupro_local.cli import main
from mmlupro_local.cli.options import CliState
from mmlupro_local.datasets.dataset import Dataset, load_dataset
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.results.store import ResultsWriter, StoreError, read_results
from mmlupro_local.run.plan import settle
from mmlupro_local.run.request import RunRequest
from mmlupro_local.run.runner import run


def config(model: Path, out: Path, **changes: Any) -> RunRequest:
    sample = SampleSpec(per_category=1, categories=("law", "history"))
    return reference_request(model, out, **{"sample": sample, **changes})


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_a_header_then_one_record_per_question(
    model: Path, tmp_path: Path, embedded: Dataset
) -> None:
    out = tmp_path / "r.jsonl"
    engine = FakeEngine()
    outcome = run(config(model, out), echo=lambda _: None, engine_factory=engine, progress=False)
    records = lines(out)
    assert [r["type"] for r in records] == ["run", "result", "result"]
    header = records[0]
    assert header["identity"]["dataset_sha256"] == embedded.sha256
    assert header["model"]["name"] == "fake.gguf" and len(header["model"]["sha256"]) == 64
    assert header["engine"] == {"engine": "fake", "n_ctx": engine.n_ctx}
    assert header["sample"]["size"] == 2 and header["identity"]["generation"]["max_tokens"] == 2048
    for record in records[1:]:
        assert record["pred"] == "A" and record["level"] == 1
        assert record["correct"] == (record["answer"] == "A")
        assert (
            record["stop_reason"] == "early"
            and record["response"] == "Let's see. The answer is (A)."
        )
        assert {"question_id", "category", "answer", "guess", "prompt_tokens", "seconds"} <= set(
            record
        )
    assert outcome.written == 2 and not outcome.interrupted
    # default context: longest prompt + budget, rounded up to a multiple of 256
    assert (
        engine.n_ctx % 256 == 0
        and engine.n_ctx >= max(map(engine.count_tokens, engine.calls)) + 2048
    )
    assert engine.closed


def test_questions_run_grouped_by_category(model: Path, tmp_path: Path, embedded: Dataset) -> None:
    engine = FakeEngine()
    run(
        config(model, tmp_path / "r.jsonl", sample=SampleSpec(per_category=3)),
        echo=print,
        engine_factory=engine,
        progress=False,
    )
    by_text = {q.question: q.category for q in embedded.test}
    order = [by_text[question_of(p)] for p in engine.calls]
    assert order == sorted(order)


def test_unextractable_answer_gets_a_seeded_guess(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    run(
        config(model, out),
        echo=print,
        engine_factory=FakeEngine(lambda p: "no idea"),
        progress=False,
    )
    for record in lines(out)[1:]:
        assert record["pred"] is None and record["level"] == 0 and record["correct"] is False
        assert record["guess"] in "ABCDEFGHIJ"
        assert record["guess_correct"] == (record["guess"] == record["answer"])
    again = tmp_path / "again.jsonl"
    run(
        config(model, again),
        echo=print,
        engine_factory=FakeEngine(lambda p: "no idea"),
        progress=False,
    )
    assert [r["guess"] for r in lines(again)[1:]] == [r["guess"] for r in lines(out)[1:]]


def test_resume_skips_done_and_extends_a_smaller_run(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    run(config(model, out), echo=print, engine_factory=FakeEngine(), progress=False)
    again = FakeEngine()
    outcome = run(config(model, out), echo=print, engine_factory=again, progress=False)
    assert again.calls == [] and outcome.written == 0 and outcome.already_done == 2
    bigger = FakeEngine()
    outcome = run(
        config(model, out, sample=SampleSpec(per_category=3, categories=("law", "history"))),
        echo=print,
        engine_factory=bigger,
        progress=False,
    )
    assert len(bigger.calls) == 4 and outcome.already_done == 2 and len(outcome.records) == 6
    records = lines(out)
    ids = [r["question_id"] for r in records if r["type"] == "result"]
    assert len(ids) == len(set(ids)) == 6
    assert [r["resumed"] for r in records if r["type"] == "run"] == [False, True]


def test_resume_refuses_other_settings(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    run(config(model, out), echo=print, engine_factory=FakeEngine(), progress=False)
    changed = config(
        model,
        out,
        max_tokens=512,
        sample=SampleSpec(seed=3, per_category=1, categories=("law", "history")),
    )
    with pytest.raises(StoreError) as error:
        run(changed, echo=print, engine_factory=FakeEngine(), progress=False)
    message = str(error.value)
    assert "generation.max_tokens: 2048 in the file, 512 now" in message
    assert "seed: 0 in the file, 3 now" in message
    other_model = write_fake_model(tmp_path / "other.gguf", data_bytes=128)
    with pytest.raises(StoreError, match="model_sha256"):
        run(config(other_model, out), echo=print, engine_factory=FakeEngine(), progress=False)


def test_torn_last_line_is_cut_on_resume(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    run(config(model, out), echo=print, engine_factory=FakeEngine(), progress=False)
    complete = out.read_bytes()
    last_start = complete.rstrip(b"\n").rfind(b"\n") + 1
    out.write_bytes(complete[: last_start + 40])  # the last record torn mid-line
    log = read_results(out)
    assert len(log.results) == 1 and "incomplete" in log.warnings[0]
    engine = FakeEngine()
    run(config(model, out), echo=print, engine_factory=engine, progress=False)
    assert len(engine.calls) == 1
    records = lines(out)  # every line parses again
    assert len([r for r in records if r["type"] == "result"]) == 2


def test_garbage_in_the_middle_is_named(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    run(config(model, out), echo=print, engine_factory=FakeEngine(), progress=False)
    text = out.read_text().splitlines()
    text.insert(2, "not json at all")
    out.write_text("\n".join(text) + "\n")
    with pytest.raises(StoreError, match=r"line 3 is not a result record"):
        run(config(model, out), echo=print, engine_factory=FakeEngine(), progress=False)


def test_second_writer_is_refused(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    cfg = config(model, out)
    target = cfg.target.open(cfg, FakeEngine())
    ident = settle(cfg, target, None).identity(target, load_dataset())
    with (
        ResultsWriter(out, ident),
        pytest.raises(StoreError, match="another mmlupro-local run is writing"),
    ):
        run(cfg, echo=print, engine_factory=FakeEngine(), progress=False)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (errno.ENOSPC, r"No space left on device \(free some disk space\)"),
        (errno.EROFS, r"Read-only file system \(the file system is read-only: remount"),
    ],
)
def test_a_failed_write_keeps_the_file_valid_and_resumable(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, message: str
) -> None:
    out = tmp_path / "r.jsonl"
    real_write = os.write
    writes = {"n": 0}

    def failing_write(fd: int, data: bytes) -> int:
        writes["n"] += 1
        if writes["n"] == 3:  # header, first result, then the write fails mid-record
            real_write(fd, bytes(data)[:10])
            raise OSError(code, os.strerror(code))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(StoreError, match=message + r".*The file is intact with 1 results"):
        run(config(model, out), echo=print, engine_factory=FakeEngine(), progress=False)
    monkeypatch.setattr(os, "write", real_write)
    assert [r["type"] for r in lines(out)] == ["run", "result"]
    engine = FakeEngine()
    run(config(model, out), echo=print, engine_factory=engine, progress=False)
    assert len(engine.calls) == 1 and len(lines(out)) == 4


def test_a_read_only_place_for_results_is_refused_before_loading(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def read_only_open(path: str, flags: int, *args: int) -> int:
        if str(path).endswith("r.jsonl") and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only_open)
    engine = FakeEngine()
    with pytest.raises(
        StoreError, match=r"cannot open .*r\.jsonl for writing: Read-only file system \(the file"
    ):
        run(config(model, tmp_path / "r.jsonl"), echo=print, engine_factory=engine, progress=False)
    assert engine.calls == []


def test_ctrl_c_finishes_the_record_and_exits_130(model: Path, tmp_path: Path) -> None:
    engine = FakeEngine(sigint_at=2)
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(model),
            "--per-category",
            "2",
            "--categories",
            "law",
            "--out",
            str(out),
            "--no-progress",
        ],
        obj=CliState(engine_factory=engine),
    )
    assert result.exit_code == 130, result.output
    assert "Interrupted: 1 of 2 questions are saved" in result.output
    assert "Resume with:" in result.output
    assert [r["type"] for r in lines(out)] == ["run", "result"]
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(model),
            "--per-category",
            "2",
            "--categories",
            "law",
            "--out",
            str(out),
            "--no-progress",
        ],
        obj=CliState(engine_factory=FakeEngine()),
    )
    assert result.exit_code == 0, result.output
    assert len([r for r in lines(out) if r["type"] == "result"]) == 2


def test_yaml_config_and_flags_win(model: Path, tmp_path: Path) -> None:
    engine = CliState(engine_factory=FakeEngine())
    out = tmp_path / "r.jsonl"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"model: {model}\nper-category: 2\ncategories: [law, history]\nmax_tokens: 300\nout: {out}\nprogress: false\n"
    )
    result = CliRunner().invoke(
        main, ["run", "--config", str(cfg), "--max-tokens", "100"], obj=engine
    )
    assert result.exit_code == 0, result.output
    header = lines(out)[0]
    assert header["identity"]["generation"]["max_tokens"] == 100
    assert header["sample"]["per_category"] == 2 and header["sample"]["categories"] == [
        "law",
        "history",
    ]
    cfg.write_text("per_categroy: 2\n")
    result = CliRunner().invoke(main, ["run", "--config", str(cfg)])
    assert result.exit_code == 1 and "unknown option(s) per_categroy" in result.output


def test_usage_errors(model: Path) -> None:
    result = CliRunner().invoke(main, ["run", str(model)])
    assert (
        result.exit_code == 2
        and "choose exactly one of --per-category N, --fraction F or --full" in result.output
    )
    result = CliRunner().invoke(main, ["run", "--per-category", "1"])
    assert result.exit_code == 2 and "give MODEL" in result.output


def test_ctx_rounding_and_fit_warnings(model: Path, tmp_path: Path) -> None:
    engine = FakeEngine()
    messages: list[str] = []
    outcome = run(
        config(model, tmp_path / "r.jsonl", ctx=2600),
        echo=messages.append,
        engine_factory=engine,
        progress=False,
    )
    assert engine.n_ctx == 2816
    assert any("rounded up to 2816" in m for m in messages)
    # 2816 - 2048 leaves 768 tokens: every prompt lost exemplars, and each fits
    assert all(r.shots < 5 for r in outcome.records)
    assert all(engine.count_tokens(p) < 768 for p in engine.calls)
    assert any("2 prompts dropped exemplars" in m for m in messages)


def test_a_question_reaching_past_the_training_context_warns(model: Path, tmp_path: Path) -> None:
    engine = FakeEngine()
    outcome = run(
        config(model, tmp_path / "r.jsonl", max_tokens=4000),
        echo=lambda _: None,
        engine_factory=engine,
        progress=False,
    )
    reach = max(engine.count_tokens(p) for p in engine.calls) + 4000
    warning = f"a question can reach position {reach} (its prompt and the --max-tokens 4000 budget), beyond the 4096 tokens"
    assert any(warning in w for w in outcome.warnings)
    assert lines(tmp_path / "r.jsonl")[0]["warnings"] == outcome.warnings


def test_parallel_questions_within_the_training_context_are_no_warning(
    model: Path, tmp_path: Path
) -> None:
    engine = FakeEngine()
    outcome = run(
        config(model, tmp_path / "r.jsonl", parallel=8, max_tokens=512),
        echo=lambda _: None,
        engine_factory=engine,
        progress=False,
    )
    # each of the eight has a KV stream of what one question reaches, within the 4096 trained
    assert engine.parallel == 8 and engine.n_ctx < 4096
    assert not any("trained on" in w for w in outcome.warnings)


def test_under_the_exact_rule_a_file_resumes_in_any_mode(model: Path, tmp_path: Path) -> None:
    """Issue 31: the identity records the shape rule; under the exact CPU rule --parallel
    and --lookup change no answer, so a file resumes whatever they are, each session's
    run record saying what it used. Without flash attention (not shown exact) they must
    match."""
    out = tmp_path / "r.jsonl"
    small = SampleSpec(per_category=1, categories=("law", "history"))
    both = SampleSpec(per_category=2, categories=("law", "history"))
    run(
        config(model, out, sample=small, parallel=2, lookup=4),
        echo=lambda _: None,
        engine_factory=FakeEngine(),
        progress=False,
    )
    outcome = run(
        config(model, out, sample=both, parallel=3),
        echo=lambda _: None,
        engine_factory=FakeEngine(),
        progress=False,
    )
    assert outcome.already_done == 2 and len(outcome.records) == 4
    first, again = [r["identity"]["engine"] for r in lines(out) if r["type"] == "run"]
    assert first["shapes"] == again["shapes"] == "cpu-streams-2" and "batch" not in first
    assert (first["parallel"], first["lookup"], again["parallel"]) == (2, 4, 3)
    loose = tmp_path / "loose.jsonl"
    run(
        config(model, loose, sample=small, flash_attn=False),
        echo=lambda _: None,
        engine_factory=FakeEngine(),
        progress=False,
    )
    with pytest.raises(StoreError, match=r"engine\.parallel: 1 in the file, 3 now"):
        run(
            config(model, loose, sample=both, parallel=3, flash_attn=False),
            echo=lambda _: None,
            engine_factory=FakeEngine(),
            progress=False,
        )
