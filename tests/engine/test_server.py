"""The server engine against a scripted OpenAI-compatible server on 127.0.0.1: every
request's fields, the client-side stop and early stop, and each scripted fault."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from credentials import API_KEY
from fakeserver import FakeServer, serve_fake
from mmlupro_local.cli import main
from mmlupro_local.engine.server import ServerSettings
from mmlupro_local.results.records import (
    ExtractionIdentity,
    GenerationIdentity,
    Identity,
    PromptIdentity,
    ServerEngineIdentity,
)

SAMPLE = ("--per-category", "1", "--categories", "law,history", "--no-progress")


def run(fake: FakeServer, out: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(
        main, ["run", "--server", fake.url, *SAMPLE, "--out", str(out), *args], env=env or {}
    )


def results(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in rows if r["type"] == "result"]


def test_every_sampling_field_is_sent_and_the_stop_is_applied_by_the_client(tmp_path: Path) -> None:
    with serve_fake(FakeServer(honour_stop=False)) as fake:
        result = run(fake, tmp_path / "r.jsonl", "--no-early-stop", "--max-tokens", "40")
    assert result.exit_code == 0, result.output
    bodies = fake.completions()
    assert len(bodies) == 2
    for body in bodies:
        assert body["temperature"] == 0.0 and body["top_p"] == 1.0 and body["seed"] == 0
        assert body["max_tokens"] == 40 and body["stop"] == ["Question:"] and body["stream"]
        assert body["model"] == "fake-model" and body["prompt"].endswith(
            "Answer: Let's think step by step."
        )
    for record in results(tmp_path / "r.jsonl"):
        # the server sent the stop string and went on; the response ends before it
        assert record["response"] == "Let me think. The answer is (A).\n\n"
        assert record["stop_reason"] == "stop" and record["pred"] == "A"
        assert record["prompt_tokens"] > 100


def test_the_stream_is_closed_once_the_answer_has_appeared(tmp_path: Path) -> None:
    long = "The answer is (B). " + "padding " * 400
    with serve_fake(FakeServer(answer=lambda p: long, chunk_delay=0.002)) as fake:
        result = run(fake, tmp_path / "r.jsonl", "--max-tokens", "1000")
    assert result.exit_code == 0, result.output
    assert [r["stop_reason"] for r in results(tmp_path / "r.jsonl")] == ["early", "early"]
    assert max(fake.chunks_sent) < 100  # of about 400: the client hung up


def test_a_prompt_the_server_cut_is_an_error_for_that_question(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with serve_fake(FakeServer(cut_tokens=50)) as fake:
        result = run(fake, out)
        assert result.exit_code == 1
        assert "the server read" in result.output and "it cut the prompt" in result.output
        assert "OLLAMA_CONTEXT_LENGTH" in result.output
        assert "2 questions have no answer" in result.output
        assert results(out) == []
        fake.cut_tokens = 0  # the user raised the context: the same command completes
        assert run(fake, out).exit_code == 0
    assert len(results(out)) == 2


def test_a_cut_prompt_is_caught_from_usage_when_the_server_sends_no_timings(
    tmp_path: Path,
) -> None:
    long = "The answer is (B). " + "padding " * 50
    with serve_fake(FakeServer(answer=lambda p: long, cut_tokens=1, timings=False)) as fake:
        result = run(fake, tmp_path / "r.jsonl")
    assert result.exit_code == 1 and "it cut the prompt" in result.output
    # the stream was read on to its usage although the answer had come
    assert min(fake.chunks_sent) > 50


def test_a_server_that_cannot_count_is_probed_for_cut_prompts(tmp_path: Path) -> None:
    with serve_fake(FakeServer(tokenize=False, keep_tokens=500)) as fake:
        result = run(fake, tmp_path / "r.jsonl")
    assert "the server cannot count tokens" in result.output
    assert "quietly cuts prompts longer than about 500 tokens" in result.output
    assert result.exit_code == 1 and "where it cuts prompts" in result.output
    assert "2 questions have no answer" in result.output
    with serve_fake(FakeServer(tokenize=False)) as fake:
        result = run(fake, tmp_path / "s.jsonl")
    assert result.exit_code == 0 and "quietly cuts" not in result.output
    assert len(results(tmp_path / "s.jsonl")) == 2


def test_reasoning_content_is_kept_and_never_searched_for_the_answer(tmp_path: Path) -> None:
    fake = FakeServer(
        reasoning="Hmm, maybe the answer is (C). Question: no.",
        answer=lambda p: "So the answer is (D).",
    )
    with serve_fake(fake):
        result = run(fake, tmp_path / "r.jsonl", "--style", "chat")
    assert result.exit_code == 0, result.output
    assert all("messages" in body for body in fake.completions())
    for record in results(tmp_path / "r.jsonl"):
        assert record["pred"] == "D" and record["response"] == "So the answer is (D)."
        assert record["reasoning"] == "Hmm, maybe the answer is (C). Question: no. "
        assert record["thinking_chars"] == len(record["reasoning"])


def test_a_5xx_is_retried(tmp_path: Path) -> None:
    with serve_fake(FakeServer(failures=[500, 503])) as fake:
        result = run(fake, tmp_path / "r.jsonl", "--parallel", "1")
    assert result.exit_code == 0, result.output
    assert len(fake.completions()) == 4 and len(results(tmp_path / "r.jsonl")) == 2


def test_answers_in_flight_when_a_request_fails_for_good_are_saved(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with serve_fake(FakeServer(failures=[500], chunk_delay=0.01)) as fake:
        result = run(fake, out, "--retries", "0", "--parallel", "2")
    assert result.exit_code == 1 and "answered 500: scripted failure" in result.output
    assert "1 of 2 questions are saved" in result.output and len(results(out)) == 1


def test_a_hung_request_times_out_and_the_run_stops_with_a_resume_hint(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with serve_fake(FakeServer(hangs=10, hang_seconds=5)) as fake:
        result = run(fake, out, "--request-timeout", "0.3", "--retries", "1", "--parallel", "1")
    assert result.exit_code == 1
    assert "sent nothing for 0.3 s" in result.output and "(after 2 attempts)" in result.output
    assert "0 of 2 questions are saved" in result.output and "Resume with" in result.output
    assert "raise --request-timeout" in result.output
    assert results(out) == []


def test_a_malformed_stream_is_retried_then_reported(tmp_path: Path) -> None:
    with serve_fake(FakeServer(malformed=1)) as fake:
        assert run(fake, tmp_path / "a.jsonl", "--parallel", "1").exit_code == 0
    with serve_fake(FakeServer(malformed=99)) as fake:
        result = run(fake, tmp_path / "b.jsonl", "--retries", "1")
    assert result.exit_code == 1 and "malformed event" in result.output


def test_a_401_says_where_the_key_goes_and_the_key_is_never_recorded(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with serve_fake(FakeServer(api_key=API_KEY)) as fake:
        refused = run(fake, out, env={"MMLUPRO_API_KEY": "", "OPENAI_API_KEY": ""})
        assert refused.exit_code == 1
        assert "401: Invalid API Key" in refused.output and "MMLUPRO_API_KEY" in refused.output
        assert not out.exists()
        result = run(fake, out, env={"MMLUPRO_API_KEY": API_KEY})
    assert result.exit_code == 0, result.output
    assert API_KEY not in out.read_text()


def test_the_server_must_be_reachable_and_serve_the_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["run", "--server", "http://127.0.0.1:9/v1", *SAMPLE, "--retries", "0"]
    )
    assert result.exit_code == 1 and "cannot connect to http://127.0.0.1:9" in result.output
    assert "is the server running? Check --server" in result.output
    with serve_fake(FakeServer(models=("a", "b"))) as fake:
        several = run(fake, tmp_path / "r.jsonl")
        wrong = run(fake, tmp_path / "r.jsonl", "--server-model", "c")
    assert "serves 2 models: a, b; choose one with --server-model" in several.output
    assert "does not serve 'c'; it serves: a, b" in wrong.output


def test_in_process_flags_are_refused_with_a_server(tmp_path: Path) -> None:
    with serve_fake() as fake:
        result = run(fake, tmp_path / "r.jsonl", "--threads", "2")
    assert result.exit_code == 2 and "--threads applies to the in-process engine" in result.output


def test_parallel_auto_uses_the_servers_slots_and_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with serve_fake(FakeServer(slots=3)) as fake:
        result = run(fake, out, "--parallel", "auto")
    assert result.exit_code == 0, result.output
    assert "--parallel auto: 3 requests in flight (the server's slots)" in result.output
    header = json.loads(out.read_text().splitlines()[0])
    assert header["identity"]["engine"] == {
        "kind": "server",
        "url": fake.url[:-3],
        "model": "fake-model",
        "parallel": 3,
        "served": {"model_path": "/models/fake-q4.gguf"},
    }
    assert header["engine"]["slots"] == 3 and header["engine"]["version"] == "fake-1"


def test_a_file_resumes_only_against_the_same_server_and_model(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with serve_fake(FakeServer(models=("a", "b"))) as fake:
        assert run(fake, out, "--server-model", "a").exit_code == 0
        again = run(fake, out, "--server-model", "a")
        other = run(fake, out, "--server-model", "b")
    assert again.exit_code == 0 and "all 2 questions were already" in again.output
    assert other.exit_code == 1 and 'engine.model: "a" in the file, "b" now' in other.output


def test_prompts_drop_exemplars_to_fit_the_servers_context(tmp_path: Path) -> None:
    with serve_fake(FakeServer(n_ctx=1200)) as fake:
        result = run(fake, tmp_path / "r.jsonl", "--max-tokens", "100")
    assert result.exit_code == 0, result.output
    assert "dropped exemplars to fit the server's context (1200 tokens)" in result.output
    for body, record in zip(fake.completions(), results(tmp_path / "r.jsonl"), strict=True):
        assert record["shots"] < 5 and len(body["prompt"].split()) < 1100


@pytest.mark.parametrize("url", ["ftp://host/v1", "localhost:8080"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    result = CliRunner().invoke(main, ["run", "--server", url, *SAMPLE])
    assert result.exit_code == 1 and "is not an http(s) URL" in result.output


def test_the_recorded_url_keeps_no_credentials() -> None:
    settings = ServerSettings("http://user:pw@gpu.example:8000/v1/")
    assert settings.root == "http://gpu.example:8000" and settings.credentials == ("user", "pw")
    assert ServerSettings("https://[::1]/api/v1").root == "https://[::1]/api"


def test_a_server_identity_reads_back_as_written() -> None:
    ident = Identity(
        model_sha256="",
        dataset_sha256="d",
        prompt=PromptIdentity(style="completion", shots=5, strip_options=False),
        extraction=ExtractionIdentity(mode="first", strip_thinking=True),
        generation=GenerationIdentity(
            decoding="greedy", max_tokens=2048, stop="Question:", early_stop=True
        ),
        engine=ServerEngineIdentity(url="http://h:1", model="m", parallel=4),
        seed=0,
    )
    assert Identity.from_json(json.loads(json.dumps(ident.to_json()))) == ident
    assert ident.to_json()["engine"] == {
        "kind": "server",
        "url": "http://h:1",
        "model": "m",
        "parallel": 4,
    }


def test_ctrl_c_stops_after_the_answer_in_hand_and_the_rerun_completes(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    slow = "Thinking it over " * 20 + "so the answer is (A)."
    six = ("--per-category", "3", "--categories", "law,history", "--no-progress")

    def interrupt_once_answered() -> None:  # Ctrl-C once the first answer is saved
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if out.exists() and '"type": "result"' in out.read_text():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    with serve_fake(FakeServer(answer=lambda p: slow, chunk_delay=0.01)) as fake:
        watcher = threading.Thread(target=interrupt_once_answered, daemon=True)
        watcher.start()
        result = CliRunner().invoke(
            main, ["run", "--server", fake.url, *six, "--out", str(out), "--parallel", "2"]
        )
        watcher.join(5)
        saved = len(results(out))
        assert result.exit_code == 130, result.output
        assert f"Interrupted: {saved} of 6 questions are saved" in result.output and 0 < saved < 6
        again = CliRunner().invoke(
            main, ["run", "--server", fake.url, *six, "--out", str(out), "--parallel", "2"]
        )
    assert again.exit_code == 0, again.output
    ids = [r["question_id"] for r in results(out)]
    assert len(ids) == 6 and len(set(ids)) == 6


def test_bench_times_the_same_questions_through_a_server_at_each_concurrency() -> None:
    with serve_fake() as fake:
        result = CliRunner().invoke(
            main, ["bench", "--server", fake.url, "--concurrency", "1,auto", "--per-category", "1"]
        )
    assert result.exit_code == 0, result.output
    root = fake.url[: -len("/v1")]
    assert f"{root} --parallel 1 " in result.output and f"{root} --parallel auto " in result.output
    assert result.output.count("14/14") == 2  # the same 14 questions, the same scripted answers
    assert len(fake.completions()) == 28
    assert "client CPU ms/q" in result.output  # issue 25: who is the limit, per concurrency


def test_answers_only_in_the_reasoning_field_are_said(tmp_path: Path) -> None:
    """Issue 26, case 27: every question was scored as a guess, 0 %, without a word."""
    fake = FakeServer(reasoning="Thinking... the answer is (C).", answer=lambda p: "")
    with serve_fake(fake):
        result = run(fake, tmp_path / "r.jsonl", "--style", "chat")
    assert result.exit_code == 0, result.output
    assert "2 of 2 answers came only in the server's reasoning field" in result.output
