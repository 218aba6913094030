"""Issue 26, the server engine's leaks and hangs, each the way a user meets it, against a
fake vLLM on 127.0.0.1: credentials never recorded or printed, an API key a header cannot
carry, a stream of keep-alive comments, a stop that cancels retries, a bad port."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from credentials import BAD_KEYS, PASSWORD
from fakes import interrupt_when
from fakeserver import FakeServer, serve_fake
from mmlupro_local.cli import main
from mmlupro_local.engine.server import ServerSettings, redact_command
from vllmfake import FakeVllm, serve

SAMPLE = ("--per-category", "1", "--categories", "law,history", "--no-progress")


def test_credentials_in_the_url_are_used_but_never_recorded_or_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26, case 1."""
    out = tmp_path / "r.jsonl"
    with serve(FakeVllm()) as fake:
        secret = f"http://alice:{PASSWORD}@127.0.0.1:{fake.port}/v1"
        args = ["run", "--server", secret, *SAMPLE, "--out", str(out)]
        monkeypatch.setattr(sys, "argv", ["mmlupro-local", *args])  # what the run records
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert PASSWORD not in out.read_text() and PASSWORD not in result.output
    assert "***@127.0.0.1" in out.read_text()  # the command, as recorded
    assert redact_command(["run", "--server", "https://u:p@h/v1", "x.gguf"]) == (
        "run",
        "--server",
        "https://***@h/v1",
        "x.gguf",
    )
    query = CliRunner().invoke(
        main, ["run", "--server", f"http://h:1/v1?api_key={PASSWORD}", *SAMPLE]
    )
    assert query.exit_code == 1 and "has a query string" in query.output
    assert PASSWORD not in query.output and "api_key=***" in query.output


def test_credentials_in_a_config_files_server_url_are_not_recorded_or_printed(
    tmp_path: Path,
) -> None:
    """Issue 26, case 1, from a config file; the session's audit also greps the report."""
    out = tmp_path / "r.jsonl"
    with serve(FakeVllm()) as fake:
        config = tmp_path / "run.yaml"
        config.write_text(f"server: http://alice:{PASSWORD}@127.0.0.1:{fake.port}/v1\n")
        result = CliRunner().invoke(
            main, ["run", "--config", str(config), *SAMPLE, "--out", str(out)]
        )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in out.read_text() + result.output
    report = CliRunner().invoke(main, ["report", str(out), "--html", str(tmp_path / "r.html")])
    assert report.exit_code == 0 and PASSWORD not in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("key", [*BAD_KEYS, "two words"])
def test_an_api_key_a_header_cannot_carry_is_refused_once_and_never_shown(
    tmp_path: Path, key: str
) -> None:
    """Issue 26, case 2."""
    with serve(FakeVllm()) as fake:
        result = CliRunner().invoke(main, ["run", "--server", f"http://127.0.0.1:{fake.port}/v1",
                                           *SAMPLE, "--out", str(tmp_path / "r.jsonl")],
                                    env={"MMLUPRO_API_KEY": key})  # fmt: skip
    assert result.exit_code == 1 and "MMLUPRO_API_KEY holds a character" in result.output
    assert key.split()[0] not in result.output and "Traceback" not in result.output
    assert fake.asked == 0  # refused before any request


def test_a_stream_of_keep_alive_comments_times_out(tmp_path: Path) -> None:
    """Issue 26, case 3: bytes keep arriving, but no answer."""
    with serve(FakeVllm(pings=40)) as fake:
        began = time.monotonic()
        result = CliRunner().invoke(main, ["run", "--server", f"http://127.0.0.1:{fake.port}/v1",
                                           *SAMPLE, "--out", str(tmp_path / "r.jsonl"),
                                           "--request-timeout", "0.5", "--retries", "0"])  # fmt: skip
    assert result.exit_code == 1 and "only keep-alive comments" in result.output
    assert time.monotonic() - began < 3.5  # 40 pings would take 4 s


def test_a_stop_cancels_the_requests_in_flight_and_their_retries(tmp_path: Path) -> None:
    """Issue 26, case 5: the first Ctrl-C ends the run as a stop, not as a server error."""
    out = tmp_path / "r.jsonl"
    with serve(FakeVllm(pings=100)) as fake:  # every answer would take 10 s
        interrupt_when(lambda: fake.asked >= 2)
        began = time.monotonic()
        result = CliRunner().invoke(main, ["run", "--server", f"http://127.0.0.1:{fake.port}/v1",
                                           *SAMPLE, "--out", str(out), "--parallel", "2"])  # fmt: skip
    assert result.exit_code == 130, result.output
    assert time.monotonic() - began < 5 and fake.asked == 2  # no retry after the stop
    assert "Interrupted" in result.output


def test_a_port_out_of_range_is_a_clear_error() -> None:
    """Issue 26, case 7."""
    result = CliRunner().invoke(main, ["run", "--server", "http://127.0.0.1:99999/v1", *SAMPLE])
    assert result.exit_code == 1 and "is not a valid URL (Port out of range" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(Exception, match="not a valid URL"):
        ServerSettings(url="http://h:70000/v1")


def test_another_model_behind_the_same_id_does_not_resume_the_file(tmp_path: Path) -> None:
    """Issue 26, case 6: llama-server --alias, vLLM --served-model-name, a tag pulled again."""
    out = tmp_path / "r.jsonl"
    with serve_fake(FakeServer()) as fake:
        first = CliRunner().invoke(main, ["run", "--server", fake.url, *SAMPLE, "--out", str(out)])
        assert first.exit_code == 0, first.output
        fake.model_path = "/models/another-q8.gguf"  # restarted with another file, same id
        again = CliRunner().invoke(main, ["run", "--server", fake.url, "--per-category", "2",
                                          "--categories", "law,history", "--no-progress",
                                          "--out", str(out)])  # fmt: skip
    assert again.exit_code == 1 and "cannot be resumed" in again.output
    assert 'engine.served.model_path: "/models/fake-q4.gguf" in the file' in again.output


def test_an_answer_beyond_the_budget_is_cut_and_said(tmp_path: Path) -> None:
    """Issue 26, case 4: a 5.7 MB answer to --max-tokens 32 was saved whole."""
    out = tmp_path / "r.jsonl"
    fake = FakeVllm(ignore_budget=True)
    fake.answer = lambda prompt: ["x" * 100_000] * 3  # type: ignore[method-assign]
    with serve(fake):
        result = CliRunner().invoke(main, ["run", "--server", f"http://127.0.0.1:{fake.port}/v1",
                                           *SAMPLE, "--out", str(out), "--max-tokens", "32"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    answers = [r for r in rows if r["type"] == "result"]
    assert all(r["stop_reason"] == "length" and len(r["response"]) == 32 * 32 for r in answers)
    assert out.stat().st_size < 20_000
    assert "sent more than the --max-tokens budget in 2 answers" in result.output


def test_a_think_budget_with_a_server_names_the_servers_own_flag() -> None:
    """Issue 26, case 28."""
    result = CliRunner().invoke(
        main, ["run", "--server", "http://127.0.0.1:9/v1", *SAMPLE, "--think-budget", "100"]
    )
    assert result.exit_code == 2 and "llama-server --reasoning-budget N" in result.output
