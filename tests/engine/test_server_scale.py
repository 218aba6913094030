"""The server client at scale (issue 25), against a fake vLLM on 127.0.0.1: the default
concurrency for a server that does not say its limit, fewer requests in flight when it
answers 429 or 503 (and none lost), a stream that dies mid-answer, the client's own
budget, and prompts counted concurrently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from mmlupro_local.cli import main
from mmlupro_local.engine import Job
from mmlupro_local.engine.server import ServerSettings
from mmlupro_local.engine.server.engine import ServerEngine
from mmlupro_local.task.settings import AnswerSettings
from mmlupro_local.task.stopping import Watchers
from vllmfake import FakeVllm, serve, url

SAMPLE = ("--per-category", "3", "--categories", "law,history,math", "--no-progress")


def run(fake: FakeVllm, out: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["run", "--server", url(fake), *SAMPLE, "--out", str(out),
                                     "--retries", "1", *args])  # fmt: skip


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_parallel_auto_keeps_a_vllm_busy(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with serve(FakeVllm(token_seconds=0.005)) as fake:
        result = run(fake, out)
    assert result.exit_code == 0, result.output
    assert "--parallel auto: 256 requests in flight (the server does not say" in result.output
    header = records(out)[0]
    assert header["identity"]["engine"] == {"kind": "server", "url": url(fake)[:-3],
                                            "model": "fake/vllm-model", "parallel": 256}  # fmt: skip
    # the questions of all three categories were in flight together
    assert fake.peak_streams == 9
    assert [r["pred"] for r in records(out)[1:]] == ["A"] * 9


def test_too_eager_a_client_sends_fewer_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with serve(FakeVllm(max_streams=2, token_seconds=0.002)) as fake:
        result = run(fake, out, "--parallel", "8")
    assert result.exit_code == 0, result.output
    assert fake.refused > 0 and fake.peak_streams <= 2
    results = [r for r in records(out) if r["type"] == "result"]
    assert len(results) == len({r["question_id"] for r in results}) == 9
    assert "the server asked for fewer" in result.output


def test_a_stream_that_dies_mid_answer_is_asked_again(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with serve(FakeVllm(die_after=5, dying=2)) as fake:
        result = run(fake, out, "--parallel", "4")
    assert result.exit_code == 0, result.output
    assert fake.dying == 0  # both deaths happened, and were asked again
    assert [r["pred"] for r in records(out)[1:]] == ["A"] * 9


def test_the_client_keeps_the_budget_when_the_server_does_not() -> None:
    fake = FakeVllm(ignore_budget=True)
    fake.answer = lambda prompt: [" word"] * 500  # type: ignore[method-assign]
    with serve(fake):
        engine = ServerEngine(ServerSettings(url=url(fake)), seed=0, stop="Question:")
        try:
            engine.open_context(8192, 2)
            jobs = [Job("Question: x\nAnswer:", 0)]
            watchers = Watchers(AnswerSettings(), [j.text for j in jobs])
            # the fake would send 500 words; the request asks for 7, the client stops at 7
            ((_, generation),) = engine.generate_many(jobs, max_tokens=7, new_watcher=watchers)
        finally:
            engine.close()
    assert generation.stop_reason == "length" and generation.text == " word" * 7


def test_prompts_are_counted_concurrently(tmp_path: Path) -> None:
    with serve() as fake:
        engine = ServerEngine(ServerSettings(url=url(fake)), seed=0, stop="")
        try:
            texts = [f"text {i} " * (i + 1) for i in range(200)]
            assert engine.count_many(texts) == [len(t) // 4 + 1 for t in texts]
        finally:
            engine.close()
