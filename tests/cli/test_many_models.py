"""Several models in one command, and what `compare` says about what changed: with a
scripted engine per model file."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fakes import FakeEngine, write_fake_model
from mmlupro_local.cli import main
from mmlupro_local.cli.options import CliState
from mmlupro_local.engine import Engine, EngineSettings

LAW3 = ["--per-category", "3", "--categories", "law,history", "--no-progress"]


def engines(letters: dict[str, str]) -> Any:
    """A factory giving each model file (by stem) an engine that always answers its letter."""

    def factory(model: Path, settings: EngineSettings) -> Engine:
        letter = letters[model.stem]
        return FakeEngine(lambda prompt: f"So the answer is ({letter}).")

    return factory


def invoke(letters: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), obj=CliState(engine_factory=engines(letters)))


def records(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in rows if r["type"] == "result"]


def models(tmp_path: Path) -> tuple[Path, Path]:
    return (
        write_fake_model(tmp_path / "q8.gguf", data_bytes=64),
        write_fake_model(tmp_path / "q4.gguf", data_bytes=128),
    )


def test_several_models_run_one_after_another_with_one_report(tmp_path: Path) -> None:
    q8, q4 = models(tmp_path)
    out = tmp_path / "results"
    result = invoke({"q8": "A", "q4": "B"}, "run", str(q8), str(q4), *LAW3, "--out-dir", str(out))
    assert result.exit_code == 0, result.output
    files = [out / f"{m}.completion.5shot.seed0.jsonl" for m in ("q8", "q4")]
    a, b = (records(f) for f in files)
    assert [r["question_id"] for r in a] == [r["question_id"] for r in b] and len(a) == 6
    assert (
        "== all 2 models (reference: q8)" in result.output and "== q4 against q8" in result.output
    )
    # the comparison against a recount of the records
    right_a = sum(r["correct"] for r in a)
    right_b = sum(r["correct"] for r in b)
    flips = sum(x["pred"] != y["pred"] for x, y in zip(a, b, strict=True))
    assert "Same letter: 0.0% (0 of 6)" in result.output and f"{flips} flipped" in result.output
    only_a = sum(x["correct"] and not y["correct"] for x, y in zip(a, b, strict=True))
    assert (
        f"on {only_a + sum(y['correct'] and not x['correct'] for x, y in zip(a, b, strict=True))} questions one was right and the other wrong"
        in result.output
    )
    assert f"{right_a}" in result.output and f"{right_b}" in result.output
    again = invoke({"q8": "A", "q4": "B"}, "run", str(q8), str(q4), *LAW3, "--out-dir", str(out))
    assert again.exit_code == 0 and again.output.count("questions were already in") == 2


def test_a_config_may_list_the_models_and_out_names_one_file(tmp_path: Path) -> None:
    q8, q4 = models(tmp_path)
    config = tmp_path / "run.yaml"
    config.write_text(
        f"models: [{q8}, {q4}]\nper-category: 1\ncategories: law\nout-dir: {tmp_path / 'r'}\n"
    )
    result = invoke({"q8": "A", "q4": "A"}, "run", "--config", str(config), "--no-progress")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "r").glob("*.jsonl"))) == 2
    refused = invoke({}, "run", str(q8), str(q4), *LAW3, "--out", str(tmp_path / "x.jsonl"))
    assert refused.exit_code == 2 and "--out names one file and 2 models" in refused.output


def test_compare_lists_flips_and_sets_a_difference_against_the_noise_floor(tmp_path: Path) -> None:
    q8, q4 = models(tmp_path)
    letters = {"q8": "A", "q4": "B"}
    paths = {name: tmp_path / f"{name}.jsonl" for name in ("a", "b", "a8")}
    for model, name in ((q8, "a"), (q4, "b")):
        run = invoke(letters, "run", str(model), *LAW3, "--reference", "--out", str(paths[name]))
        assert run.exit_code == 0
    noisy = invoke(letters, "run", str(q8), *LAW3, "--threads", "1", "--out", str(paths["a8"]))
    assert noisy.exit_code == 0
    result = CliRunner().invoke(
        main, ["compare", str(paths["a"]), str(paths["b"]), "--flips", "--noise", str(paths["a8"])]
    )
    assert result.exit_code == 0, result.output
    a = records(paths["a"])
    for r in a:  # every question flipped from A to B
        assert (
            f"{r['question_id']:>6} {r['category']:<18} {r['answer']:>6}    A    B" in result.output
        )
    assert "A's own model changes 0.0% between --parallel 1 --threads" in result.output
    data = json.loads(CliRunner().invoke(main, ["compare", str(paths["a"]), str(paths["b"]),
                                                "--json", "--noise", str(paths["a8"])]).output)  # fmt: skip
    assert data["agreement"] == {
        "n": 6,
        "same": 0,
        "rate": 0.0,
        "ci_low": 0.0,
        "ci_high": data["agreement"]["ci_high"],
    }
    z2 = 1.959964**2  # Wilson's upper bound for 0 of n is z^2 / (n + z^2)
    assert abs(data["agreement"]["ci_high"] - z2 / (6 + z2)) < 1e-6
    assert len(data["flips"]) == 6 and data["within_noise_floor"] is False
    assert data["noise_floor"]["agreement"]["same"] == 6
    same_mode = CliRunner().invoke(
        main, ["compare", str(paths["a"]), str(paths["b"]), "--noise", str(paths["a"])]
    )
    assert same_mode.exit_code == 1 and "noise floor is zero" in same_mode.output
    other_model = CliRunner().invoke(
        main, ["compare", str(paths["a"]), str(paths["b"]), "--noise", str(paths["b"])]
    )
    assert other_model.exit_code == 1 and "is not a run of" in other_model.output
    html = tmp_path / "r.html"
    assert (
        CliRunner()
        .invoke(main, ["report", str(paths["a"]), str(paths["b"]), "--html", str(html)])
        .exit_code
        == 0
    )
    assert "Flipped predictions (6)" in html.read_text()


def test_a_difference_no_larger_than_the_noise_floor_is_called_so(tmp_path: Path) -> None:
    q8, q4 = models(tmp_path)
    # the same letters: B changes nothing, the noise floor is 0 flips: within it
    letters = {"q8": "A", "q4": "A"}
    paths = [tmp_path / f"{n}.jsonl" for n in ("a", "b", "a8")]
    invoke(letters, "run", str(q8), *LAW3, "--out", str(paths[0]))
    invoke(letters, "run", str(q4), *LAW3, "--out", str(paths[1]))
    invoke(letters, "run", str(q8), *LAW3, "--threads", "1", "--out", str(paths[2]))
    result = CliRunner().invoke(main, ["compare", *map(str, paths[:2]), "--noise", str(paths[2])])
    assert "a difference smaller than the noise floor" in result.output


def test_a_wrong_second_model_is_named_before_the_first_runs(tmp_path: Path) -> None:
    """Issue 26, case 15."""
    good = write_fake_model(tmp_path / "good.gguf")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf at all")
    engine = FakeEngine()
    result = CliRunner().invoke(main, ["run", str(good), str(broken), "--per-category", "1",
                                       "--categories", "law", "--no-progress", "--out-dir",
                                       str(tmp_path / "o")], obj=CliState(engine_factory=engine))  # fmt: skip
    assert result.exit_code == 1 and "broken.gguf" in result.output
    assert engine.calls == [] and not (tmp_path / "o").exists()


def test_a_read_only_out_dir_with_several_models_advises_out_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26, case 20: the advice was --out, which is refused with several models."""
    a, b = (
        write_fake_model(tmp_path / "a.gguf"),
        write_fake_model(tmp_path / "b.gguf", data_bytes=128),
    )
    folder = tmp_path / "ro"
    real_open = os.open

    def denied(path: str, flags: int, *args: int) -> int:  # as a read-only folder answers
        if str(path).startswith(str(folder)) and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", denied)
    result = CliRunner().invoke(main, ["run", str(a), str(b), "--per-category", "1",
                                       "--categories", "law", "--no-progress", "--out-dir",
                                       str(folder)], obj=CliState(engine_factory=FakeEngine()))  # fmt: skip
    assert result.exit_code == 1 and "--out-dir" in result.output, result.output
