"""Fast by default: the rule behind --parallel auto / --lookup auto, --reference, and a
resumed file keeping the mode it recorded (scripted engine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import mmlupro_local.run.targets.gguf as gguf_target
from fakes import FakeEngine
from mmlupro_local.cli import main
from mmlupro_local.cli.options import CliState
from mmlupro_local.engine.mode import auto_mode

MiB = 2**20


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("backend", "cores", "size", "expected"),
    [
        ("cpu", 2, 98 * MiB, (8, 16)),  # measured here (README, "Exact in every mode")
        ("cpu", 2, 468 * MiB, (4, 0)),  # likewise: lookup's rows cost a 0.5B model time
        ("cpu", 1, 98 * MiB, (2, 0)),
        ("cpu", 8, 1024 * MiB, (4, 0)),
        ("cpu", 8, 4096 * MiB, (2, 0)),
        ("cpu", 8, 20000 * MiB, (1, 0)),
        ("metal", 8, 20000 * MiB, (8, 16)),
        ("gpu", 4, 4096 * MiB, (8, 16)),
    ],
)
def test_the_rule(backend: Any, cores: int, size: int, expected: tuple[int, int]) -> None:
    mode = auto_mode(backend, cores, size)
    assert (mode.parallel, mode.lookup) == expected
    assert mode.reason.startswith(
        f"auto: {backend.upper() if backend == 'cpu' else backend}, {cores} core"
    )


def invoke(engine: FakeEngine, *args: str) -> Any:
    return CliRunner().invoke(main, list(args), obj=CliState(engine_factory=engine))


def test_defaults_are_chosen_printed_and_recorded(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gguf_target, "physical_cores", lambda: 2)
    out = tmp_path / "r.jsonl"
    engine = FakeEngine()
    result = invoke(engine, "run", str(model), "--per-category", "4", "--categories", "law",
                    "--out", str(out), "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "engine mode: --parallel 8 --lookup 16 (auto: CPU, 2 cores, model 0 MiB)" in result.output
    )
    header = lines(out)[0]
    assert header["identity"]["engine"]["parallel"] == 8 == engine.parallel
    assert header["identity"]["engine"]["lookup"] == 16 == engine.settings.lookup
    assert header["identity"]["engine"]["threads"] == 2
    assert header["engine"]["mode_chosen"] == "auto: CPU, 2 cores, model 0 MiB"


def test_reference_is_one_question_at_a_time_without_lookup(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    engine = FakeEngine()
    result = invoke(engine, "run", str(model), "--per-category", "4", "--categories", "law",
                    "--reference", "--out", str(out), "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    engine_identity = lines(out)[0]["identity"]["engine"]
    assert engine_identity["parallel"] == 1 and "lookup" not in engine_identity
    assert "engine mode" not in result.output and engine.parallel == 1
    for flag in (["--parallel", "2"], ["--lookup", "4"]):
        result = invoke(engine, "run", str(model), "--per-category", "1", "--reference", *flag)
        assert result.exit_code == 2 and f"leave out {flag[0]}" in result.output


def test_a_file_keeps_its_mode_when_the_rules_inputs_change(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "r.jsonl"
    command = ["run", str(model), "--per-category", "4", "--categories", "law", "--out", str(out),
               "--no-progress"]  # fmt: skip
    monkeypatch.setattr(gguf_target, "physical_cores", lambda: 2)
    result = invoke(FakeEngine(sigint_at=3), *command)
    assert result.exit_code == 130, result.output
    first = lines(out)[0]["identity"]
    assert first["engine"]["parallel"] == 8 and first["engine"]["threads"] == 2
    monkeypatch.setattr(gguf_target, "physical_cores", lambda: 1)  # another machine
    engine = FakeEngine()
    result = invoke(engine, *command)
    assert result.exit_code == 0, result.output
    assert (
        f"engine mode: --parallel 8 --lookup 16 --threads 2, as recorded in {out}, which "
        "this run resumes (the rule would choose --parallel 2 --lookup 0 here now: auto: "
        "CPU, 1 core"
    ) in result.output
    runs = [r for r in lines(out) if r["type"] == "run"]
    assert [r["identity"] for r in runs] == [first, first] and engine.parallel == 8
    assert (engine.settings.lookup, engine.settings.threads) == (16, 2)
    assert len([r for r in lines(out) if r["type"] == "result"]) == 4
    # on a fresh file the same command follows the rule
    fresh = tmp_path / "fresh.jsonl"
    result = invoke(FakeEngine(), *command[:-3], "--out", str(fresh), "--no-progress")
    assert lines(fresh)[0]["identity"]["engine"]["parallel"] == 2


def test_several_models_share_the_mode_of_the_largest(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gguf_target, "physical_cores", lambda: 2)
    big = tmp_path / "big.gguf"
    with big.open("wb") as handle:  # a sparse file: 600 MiB to the rule, nothing on disk
        handle.write(model.read_bytes())
        handle.truncate(600 * MiB)
    small = model
    result = invoke(FakeEngine(), "run", str(small), str(big), "--per-category", "8",
                    "--categories", "law", "--out-dir", str(tmp_path / "o"), "--no-progress",
                    "--no-memory-check")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.count("engine mode: --parallel 4 --lookup 0") == 2
