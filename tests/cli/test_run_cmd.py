"""`run`'s command line: output paths, refused runs, resume messages."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from fakes import (
    LAW2,
    FakeEngine,
    finished_run,
    invoke_with,
    write_fake_model,
)
from mmlupro_local.errors import DatasetError
from mmlupro_local.results.report import load_report
from mmlupro_local.run.saving import estimate_text


def test_refused_runs_leave_no_empty_file(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13, case 16."""

    def failing(path: Path, settings: object) -> FakeEngine:
        raise DatasetError("the model would not load")

    out = tmp_path / "deeper" / "r.jsonl"
    result = invoke_with(failing, "run", str(model), *LAW2, "--out", str(out))
    assert result.exit_code == 1 and not out.exists()


def test_out_paths_that_cannot_be_files(model: Path, tmp_path: Path, engine: FakeEngine) -> None:
    """Issue 13, case 16."""
    empty = invoke_with(engine, "run", str(model), *LAW2, "--out", "")
    assert empty.exit_code == 2 and "Invalid value for --out: is empty" in empty.output
    folder = invoke_with(engine, "run", str(model), *LAW2, "--out", f"{tmp_path}/results/")
    assert folder.exit_code == 2 and "is a directory; give a file path such as" in folder.output
    assert not (tmp_path / "results").exists()
    blocker = tmp_path / "passwd"
    blocker.write_text("root\n")
    under = invoke_with(engine, "run", str(model), *LAW2, "--out", f"{blocker}/x")
    assert under.exit_code == 1 and f"{blocker} is a file, not a directory" in under.output


def test_a_finished_read_only_file_is_shown(
    model: Path, tmp_path: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13, case 16."""
    out = finished_run(model, tmp_path / "r.jsonl", engine)
    real_open = os.open

    def denied(path: str, flags: int, *args: int) -> int:
        if str(path) == str(out) and flags & (os.O_WRONLY | os.O_RDWR) and not flags & os.O_EXCL:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", denied)
    shown = invoke_with(engine, "run", str(model), *LAW2, "--out", str(out))
    assert shown.exit_code == 0, shown.output
    assert "all 2 questions were already in" in shown.output and "law" in shown.output
    more = invoke_with(engine, "run", str(model), *LAW2, "--per-category", "3", "--out", str(out))
    assert (
        more.exit_code == 1
        and "Permission denied" in more.output
        and "1 of 3 questions" in more.output
    )


def test_resume_messages_name_what_to_do(model: Path, tmp_path: Path, engine: FakeEngine) -> None:
    """Issue 13, case 16."""
    out = finished_run(model, tmp_path / "r.jsonl", engine)
    other = write_fake_model(tmp_path / "other.gguf", data_bytes=128)
    mismatch = invoke_with(engine, "run", str(other), *LAW2, "--out", str(out))
    assert mismatch.exit_code == 1 and f"the file's model was {model.resolve()}" in mismatch.output
    records = out.read_text().splitlines()
    out.write_text("\n".join([records[0], "garbage", *records[1:]]) + "\n")
    garbage = invoke_with(engine, "run", str(model), *LAW2, "--out", str(out))
    assert garbage.exit_code == 1 and f"sed -i '2d' {out}" in garbage.output


def test_the_progress_bar_is_drawn_only_on_a_terminal(model: Path, tmp_path: Path) -> None:
    """Issue 26, case 26: a non-tty stderr (a log file) got a log full of bar frames."""
    out = tmp_path / "r.jsonl"
    quiet = invoke_with(FakeEngine(), "run", str(model), "--per-category", "2",
                        "--categories", "law", "--out", str(out))  # fmt: skip
    assert quiet.exit_code == 0 and "\r" not in quiet.output and "q/min" not in quiet.output
    shown = invoke_with(FakeEngine(), "run", str(model), "--per-category", "3",
                        "--categories", "law", "--out", str(out), "--progress")  # fmt: skip
    assert shown.exit_code == 0 and "\r" in shown.output


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--precision", "nan"),
        ("--precision", "inf"),
        ("--request-timeout", "nan"),
        ("--request-timeout", "inf"),
        ("--fraction", "nan"),
        ("--fraction", "-inf"),
    ],
)
def test_a_float_option_is_a_finite_number(
    model: Path, tmp_path: Path, engine: FakeEngine, option: str, value: str
) -> None:
    """Issue 32, case 3: NaN and infinity passed every bound, and --precision nan wrote a
    file no reader took; now the option is refused before anything runs."""
    out = tmp_path / "r.jsonl"
    extra = [] if option == "--fraction" else [*LAW2]
    result = invoke_with(engine, "run", str(model), *extra, option, value, "--out", str(out))
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}': '{value}' is not a finite number" in result.output
    assert not out.exists() and not engine.calls


def test_out_must_be_a_file_a_rerun_can_resume(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    """Issue 32, case 13: `--out -` wrote a file named '-', a pipe failed with "Illegal
    seek" and /dev/null with a misleading write error; each is refused up front."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for out, said in (
        ("-", "'-' is no file"),
        (str(fifo), "is not a regular file"),
        ("/dev/null", "is not a regular file"),
    ):
        result = invoke_with(engine, "run", str(model), *LAW2, "--out", out)
        assert result.exit_code == 2 and said in result.output, result.output
        assert "give a path such as results.jsonl" in result.output
    assert not engine.calls and not Path("-").exists()


def test_the_bars_last_estimate_is_the_headlines(model: Path, tmp_path: Path) -> None:
    """Issue 32, case 17: the bar's final estimate differed from the headline printed two
    lines later (the plain estimate over this sample, against the assisted one over the
    file)."""
    out = tmp_path / "r.jsonl"
    first = invoke_with(FakeEngine(), "run", str(model), "--per-category", "2", "--out", str(out))
    assert first.exit_code == 0, first.output
    shown = invoke_with(FakeEngine(), "run", str(model), "--per-category", "3", "--categories",
                        "law", "--out", str(out), "--progress")  # fmt: skip
    assert shown.exit_code == 0, shown.output
    score = load_report(out).score
    assert score is not None
    last = re.findall(r"est \d+\.\d%(?: \+/-\d+\.\d)?", shown.output)[-1]
    assert last == estimate_text(score.strict)
