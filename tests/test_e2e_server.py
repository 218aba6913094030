"""End to end through a real llama-server on 127.0.0.1 (built from the llama.cpp vendored
in the same llama-cpp-python release), serving SmolLM2-135M: the client is the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from credentials import API_KEY
from llamaserver import LlamaServer, llama_server

pytestmark = pytest.mark.e2e
# one question in each of four categories; budget 64 (about 30 s each way here)
SAMPLE = ["--per-category", "1", "--categories", "history,law,biology,economics",
          "--max-tokens", "64", "--no-progress"]  # fmt: skip


ENV = {**os.environ, "MMLUPRO_API_KEY": API_KEY}  # every llama-server here wants it


def cli(
    *args: str, timeout: float = 600, env: dict[str, str] = ENV
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmlupro_local", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


Answers = dict[int, dict[str, Any]]


def start_cli(*args: str) -> subprocess.Popen[str]:
    """The CLI in the background, to be killed or to see its server killed."""
    return subprocess.Popen(
        [sys.executable, "-m", "mmlupro_local", *args],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )


def results(path: Path) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["type"] == "result"]


def wait_for_results(out: Path, count: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300
    while not out.exists() or len(results(out)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)


def server_and_local(url: str, model: Path, folder: Path, *args: str) -> tuple[Answers, Answers]:
    """The same run through the server and in-process: each one's records by question."""
    # one question at a time unless asked: a batch of two takes another floating-point path
    # on the server as in-process, and whether two requests meet in one depends on timing
    one = [] if "--parallel" in args else ["--parallel", "1"]
    served = cli("run", "--server", url, *args, *one, "--out", str(folder / "server.jsonl"))
    assert served.returncode == 0, served.stderr
    # in-process without lookup (the mode these pins were taken in)
    local = cli(
        "run", str(model), *args, *one, "--lookup", "0", "--out", str(folder / "local.jsonl")
    )
    assert local.returncode == 0, local.stderr
    a = {r["question_id"]: r for r in results(folder / "server.jsonl")}
    b = {r["question_id"]: r for r in results(folder / "local.jsonl")}
    assert sorted(a) == sorted(b)
    return a, b


@pytest.fixture(scope="module")
def server(smollm2: Path) -> Iterator[LlamaServer]:
    with llama_server(smollm2, slots=2) as running:
        yield running


def test_a_run_through_the_server_agrees_with_the_in_process_engine(
    server: LlamaServer, smollm2: Path, tmp_path: Path
) -> None:
    # one request at a time: a batch of two on the server takes another floating-point
    # path (measured: question 7220 flips from A to unanswered at --parallel 2)
    a, b = server_and_local(server.url, smollm2, tmp_path, *SAMPLE, "--parallel", "1")
    assert len(a) == 4
    same = sum(a[q]["pred"] == b[q]["pred"] for q in a)
    same_text = sum(a[q]["response"] == b[q]["response"] for q in a)
    # pinned: SmolLM2-135M, these 4 questions. llama-server decodes a lone slot one row at
    # a time and reads prompts 512 rows at a time; the in-process engine reads them 256 at
    # a time and generates in calls of two rows (engine/shapes.py), other kernels, and
    # this tiny model's greedy path follows their rounding (4 and 4 before canonical
    # shapes; 2 and 0 while prompts were read 48 rows at a time)
    assert (same, same_text) == (4, 3)
    for q in a:  # the server's own count of each prompt, as the in-process tokenizer's
        assert a[q]["prompt_tokens"] == b[q]["prompt_tokens"] and a[q]["shots"] == b[q]["shots"]
    header = json.loads((tmp_path / "server.jsonl").read_text().splitlines()[0])
    assert header["engine"]["kind"] == "llama-server" and header["engine"]["slots"] == 2
    assert header["engine"]["n_ctx"] == 4096 and header["identity"]["engine"]["parallel"] == 1
    report = cli("compare", str(tmp_path / "local.jsonl"), str(tmp_path / "server.jsonl"))
    assert report.returncode == 0, report.stderr
    keyless = cli("run", "--server", server.url, *SAMPLE, "--out", str(tmp_path / "keyless.jsonl"),
                  timeout=120, env={**ENV, "MMLUPRO_API_KEY": ""})  # fmt: skip
    assert keyless.returncode == 1 and "MMLUPRO_API_KEY" in keyless.stderr  # the key is used


def test_a_client_killed_with_sigkill_resumes_to_one_record_per_question(
    server: LlamaServer, tmp_path: Path
) -> None:
    out = tmp_path / "r.jsonl"
    args = ["run", "--server", server.url, *SAMPLE, "--out", str(out), "--parallel", "2"]
    proc = start_cli(*args)
    wait_for_results(out, 1, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert 1 <= len(results(out)) < 4
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    ids = [r["question_id"] for r in results(out)]
    assert len(ids) == 4 and len(set(ids)) == 4


def test_a_server_killed_mid_run_stops_it_cleanly_and_the_rerun_completes(
    smollm2: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.jsonl"
    with llama_server(smollm2, slots=1) as dying:
        args = ["run", "--server", dying.url, *SAMPLE, "--out", str(out), "--retries", "1"]
        proc = start_cli(*args)
        wait_for_results(out, 1, proc)
        dying.kill()
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 1, stderr
        saved = len(results(out))
        assert f"{saved} of 4 questions are saved in {out}" in stderr
        assert "Resume with:" in stderr and "(after 2 attempts)" in stderr
        assert saved < 4
        dying.start()  # back on the same port
        again = cli(*args)
    assert again.returncode == 0, again.stderr
    ids = [r["question_id"] for r in results(out)]
    assert len(ids) == 4 and len(set(ids)) == 4


def test_chat_style_through_the_servers_template_matches_the_gguf_template(
    server: LlamaServer, smollm2: Path, tmp_path: Path
) -> None:
    """The server renders the official chat messages with its template; in-process, the
    GGUF's template renders them: the same model gives the same prompts, and here the
    same answers (the responses follow each side's kernels: see the test above)."""
    chat = [*SAMPLE[:2], "--categories", "history,law", *SAMPLE[4:], "--style", "chat"]
    a, b = server_and_local(server.url, smollm2, tmp_path, *chat)
    assert len(a) == 2
    for q in a:
        assert a[q]["prompt_tokens"] == b[q]["prompt_tokens"]
        assert a[q]["pred"] == b[q]["pred"]
    header = json.loads((tmp_path / "server.jsonl").read_text().splitlines()[0])
    assert header["model"]["chat_template"] == "the server's"


def test_two_llama_servers_share_one_run_and_answer_as_one_does(
    server: LlamaServer, smollm2: Path, tmp_path: Path
) -> None:
    """Issue 25: the questions go to two llama-server processes by category; one at a time
    on each, every answer is what a single server gives one at a time."""
    with llama_server(smollm2, slots=1) as a, llama_server(smollm2, slots=1) as b:
        pair = tmp_path / "pair.jsonl"
        done = cli("run", "--server", a.url, "--server", b.url, *SAMPLE, "--parallel", "1",
                   "--out", str(pair))  # fmt: skip
        assert done.returncode == 0, done.stderr
        single = tmp_path / "single.jsonl"
        alone = cli("run", "--server", a.url, *SAMPLE, "--parallel", "1", "--out", str(single))
        assert alone.returncode == 0, alone.stderr
    shared = {r["question_id"]: r for r in results(pair)}
    one = {r["question_id"]: r for r in results(single)}
    assert sorted(shared) == sorted(one) and len(shared) == 4
    assert all(shared[q]["response"] == one[q]["response"] for q in one)
    header = json.loads(pair.read_text().splitlines()[0])
    assert [s["url"] for s in header["engine"]["servers"]] == [a.url[:-3], b.url[:-3]]
    counts = done.stderr.split("answers per server: ")[1].splitlines()[0]
    assert counts == f"{a.url[:-3]} 2, {b.url[:-3]} 2"  # two categories each
