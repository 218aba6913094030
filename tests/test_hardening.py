"""Issue 13: each defect a hostile sweep found, as a test that failed before its fix.
The number in each test's name is the issue's."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import mmlupro_local.engine.prefix_cache as prefix_cache_module
from fakes import FakeEngine, question_of, write_fake_model
from hubserver import run_cli
from mmlupro_local.cli import main
from mmlupro_local.cli.app import CliState
from mmlupro_local.datasets.dataset import Dataset, build_dataset, dataset_dir, write_dataset
from mmlupro_local.datasets.library import import_paths
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.engine import Generation
from mmlupro_local.engine.prefix_cache import PrefixCache, cache_key
from mmlupro_local.errors import DatasetError
from mmlupro_local.model.memory import estimate
from mmlupro_local.results.store import read_results
from mmlupro_local.runner import EngineFactory, RunConfig, run

LAW2 = ["--per-category", "2", "--categories", "law", "--no-progress"]


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


def invoke(*args: str, engine: EngineFactory | None = None) -> Result:
    """The CLI in this process; `run` gets `engine` through the CLI's public seam."""
    return CliRunner().invoke(main, list(args), obj=CliState(engine_factory=engine))


def invoke_with(engine: EngineFactory, *args: str) -> Result:
    return invoke(*args, engine=engine)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def finished_run(model: Path, out: Path, engine: FakeEngine) -> Path:
    result = invoke_with(engine, "run", str(model), *LAW2, "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


# -- data loss and leaks -----------------------------------------------------------------


@pytest.mark.parametrize("content", [b'{"a": 1}\n', b"notes without a newline", b'{"a": 1}'])
def test_01_a_foreign_one_line_file_is_refused_not_emptied(
    model: Path, tmp_path: Path, engine: FakeEngine, content: bytes
) -> None:
    out = tmp_path / "x.json"
    out.write_bytes(content)
    result = invoke_with(engine, "run", str(model), *LAW2, "--out", str(out))
    assert result.exit_code == 1
    assert "holds no run record" in result.output and "choose another --out" in result.output
    assert out.read_bytes() == content and engine.calls == []


def test_01_a_torn_line_after_a_run_record_is_still_cut(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    run(RunConfig(model=model, out=out, sample=SampleSpec(per_category=1, categories=("law",))),
        echo=print, engine_factory=FakeEngine(), progress=False)  # fmt: skip
    whole = out.read_bytes()
    out.write_bytes(whole + b'{"type": "res')
    said: list[str] = []
    run(RunConfig(model=model, out=out, sample=SampleSpec(per_category=1, categories=("law",))),
        echo=said.append, engine_factory=FakeEngine(), progress=False)  # fmt: skip
    assert out.read_bytes() == whole


def test_02_export_writes_through_symlinks_and_devices_with_umask_permissions(
    tmp_path: Path,
) -> None:
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    result = invoke("dataset", "export", "--out", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text().count("\n") == 12102
    fresh = tmp_path / "fresh.jsonl"
    old_mask = os.umask(0o022)
    try:
        assert invoke("dataset", "export", "--out", str(fresh)).exit_code == 0
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
    os.chmod(target, 0o640)
    assert invoke("dataset", "export", "--out", str(link)).exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # a replaced file keeps its mode
    # a device is written to, never replaced: /dev/full is full, /dev/null takes it all
    full = invoke("dataset", "export", "--out", "/dev/full")
    assert full.exit_code == 1 and "No space left on device" in full.output
    assert "wrote" not in full.output
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    assert invoke("dataset", "export", "--out", "/dev/null").exit_code == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_02_html_reports_get_the_umasks_permissions(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    out = finished_run(model, tmp_path / "r.jsonl", engine)
    html = tmp_path / "r.html"
    old_mask = os.umask(0o022)
    try:
        assert invoke("report", str(out), "--html", str(html)).exit_code == 0
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(html.stat().st_mode) == 0o644


REAL_FDOPEN = os.fdopen


class _FullDisk:
    """A file object whose writes fail as on a full disk, after writing some bytes."""

    def __init__(self, fd: int, mode: str) -> None:
        self.handle = REAL_FDOPEN(fd, mode)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def write(self, data: bytes) -> int:
        self.handle.write(data[:100])
        self.handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_03_a_failed_cache_save_leaves_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = PrefixCache(tmp_path, 10_000)
    monkeypatch.setattr(prefix_cache_module.os, "fdopen", _FullDisk)
    assert cache.save(cache_key("a"), b"x" * 1000) is False
    assert list(tmp_path.iterdir()) == []  # no .kv.XXXX left behind
    assert cache.saved == 0 and cache.not_saved == ["No space left on device"]


def test_03_stray_temp_files_are_counted_and_cleared(tmp_path: Path, user_cache: Path) -> None:
    directory = user_cache / "prefix-kv"
    directory.mkdir(parents=True)
    stray = directory / ".kv.abc123"
    stray.write_bytes(b"\0" * 3 * 2**20)
    info = invoke("cache", "info")
    assert "stray:     1 partial files from interrupted saves, 3.0 MiB" in info.output
    cleared = invoke("cache", "clear")
    assert "deleted 0 entries and 1 partial files" in cleared.output and not stray.exists()
    # one a killed process left an hour ago goes with the next save's eviction
    cache = PrefixCache(directory, 10_000)
    stray.write_bytes(b"\0")
    old = time.time() - 2 * 3600
    os.utime(stray, (old, old))
    assert cache.save(cache_key("b"), b"y")
    assert not stray.exists()


def test_03_the_cache_leaves_the_disk_space_results_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmlupro_local.engine.prefix_cache import RESERVE_BYTES

    cache = PrefixCache(tmp_path, 2**30)
    monkeypatch.setattr(
        prefix_cache_module.shutil,
        "disk_usage",
        lambda path: type("U", (), {"free": RESERVE_BYTES + 500})(),
    )
    assert cache.save(cache_key("a"), b"x" * 1000) is False
    assert "the cache keeps 1 GiB for results" in cache.not_saved[0]
    assert not any(tmp_path.iterdir())


def test_03_the_run_reports_a_failed_save_truthfully(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class SavingEngine(FakeEngine):
        def generate_many(self, jobs, **kwargs):  # type: ignore[no-untyped-def]
            self.prefix_cache.misses += 1
            self.prefix_cache.save(cache_key("p"), b"state")
            yield from super().generate_many(jobs, **kwargs)

    monkeypatch.setattr(prefix_cache_module.os, "fdopen", _FullDisk)
    said: list[str] = []
    run(RunConfig(model=model, out=tmp_path / "r.jsonl",
                  sample=SampleSpec(per_category=1, categories=("law",))),
        echo=said.append, engine_factory=SavingEngine(), progress=False)  # fmt: skip
    summary = [s for s in said if s.startswith("prefix cache")]
    assert summary == [
        "prefix cache: 0 loaded, 1 decoded, 0 saved, 1 not saved (No space left on device)"
    ]


# -- silently wrong ------------------------------------------------------------------------


def test_04_threads_are_part_of_the_identity(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    out = tmp_path / "r.jsonl"
    first = invoke_with(
        engine, "run", str(model), *LAW2, "--threads", "2", "--out", str(out), "--per-category", "1"
    )
    assert first.exit_code == 0, first.output
    assert lines(out)[0]["identity"]["engine"]["threads"] == 2
    again = invoke_with(engine, "run", str(model), *LAW2, "--threads", "1", "--out", str(out))
    assert again.exit_code == 1 and "engine.threads: 2 in the file, 1 now" in again.output


def test_04_files_from_before_threads_were_recorded_still_resume(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    out = tmp_path / "r.jsonl"
    assert (
        invoke_with(
            engine, "run", str(model), *LAW2, "--per-category", "1", "--out", str(out)
        ).exit_code
        == 0
    )
    records = lines(out)
    del records[0]["identity"]["engine"]["threads"]
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    again = invoke_with(engine, "run", str(model), *LAW2, "--threads", "1", "--out", str(out))
    assert again.exit_code == 0, again.output
    assert [r["type"] for r in lines(out)] == ["run", "result", "run", "result"]


def test_05_duplicate_ids_are_refused_at_import(embedded: Dataset, tmp_path: Path) -> None:
    rows = [q.as_row() for q in (*embedded.test[:3], embedded.test[0], *embedded.validation)]
    path = tmp_path / "dupes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match=r"1 question ids appear more than once \(test 70\)"):
        import_paths([path], name="dupes")
    assert not dataset_dir("dupes").exists()


def test_05_run_refuses_a_dataset_that_fails_verify(
    model: Path, tmp_path: Path, embedded: Dataset, engine: FakeEngine
) -> None:
    validation = [
        q for q in embedded.validation if q.question_id != embedded.validation[0].question_id
    ]
    broken = build_dataset([*embedded.test, *validation], name="broken", source="test")
    write_dataset(broken, dataset_dir("broken"))
    result = invoke_with(
        engine, "run", str(model), *LAW2, "--dataset", "broken", "--out", str(tmp_path / "r.jsonl")
    )
    assert result.exit_code == 1, result.output
    assert (
        "dataset 'broken' fails its checks" in result.output
        and "4 validation exemplars" in result.output
    )
    assert engine.calls == [] and not (tmp_path / "r.jsonl").exists()


def test_06_a_report_without_results_shows_no_figure(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
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
    for row in ("overall (micro)", "macro average", "chance level", "above chance"):
        line = next(x for x in table.splitlines() if x.startswith(row))
        assert line.split()[-1] == NO_FIGURE and "0.0%" not in line, line


def _answering(dataset: Dataset, right: bool) -> FakeEngine:
    answers = {q.question: q.answer for q in dataset.test}

    def respond(prompt: str) -> str:
        answer = answers[question_of(prompt)]
        letter = answer if right else ("B" if answer == "A" else "A")
        return f"The answer is ({letter})."

    return FakeEngine(respond)


def test_07_compare_at_tiny_n_says_there_are_too_few(
    model: Path, tmp_path: Path, embedded: Dataset
) -> None:
    paths = []
    for right in (False, True):
        out = tmp_path / f"{right}.jsonl"
        run(RunConfig(model=model, out=out, sample=SampleSpec(per_category=4, categories=("law",))),
            echo=print, engine_factory=_answering(embedded, right), progress=False)  # fmt: skip
        paths.append(str(out))
    text = invoke("compare", *paths).output
    assert "100.0 to 100.0" not in text
    assert "too few questions to tell: the runs disagree on 4 of 4" in text
    figures = json.loads(invoke("compare", *paths, "--json").output)["overall"]
    assert figures["difference"] == 1.0 and 0.2 < figures["ci_low"] < 0.5


def test_08_samples_that_mean_everything_are_refused(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    out = str(tmp_path / "r.jsonl")
    huge = invoke_with(engine, "run", str(model), "--per-category", "100000", "--out", out)
    assert huge.exit_code == 1
    assert (
        "--per-category 100,000 is more than any category holds (the largest, math, has 1,351)"
        in huge.output
    )
    for empty in (",", "", " , "):
        result = invoke_with(
            engine, "run", str(model), "--per-category", "1", "--categories", empty, "--out", out
        )
        assert result.exit_code == 2 and "names no category" in result.output, empty
    assert engine.calls == [] and not Path(out).exists()
    some = invoke_with(engine, "run", str(model), "--per-category", "400", "--categories", "history,law",
                  "--max-tokens", "8", "--out", out, "--no-progress")  # fmt: skip
    assert some.exit_code == 0, some.output
    assert "1 categories hold fewer and are taken whole: history (381)" in some.output


def test_09_and_11_malformed_records_are_skipped_with_their_line(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    out = finished_run(model, tmp_path / "r.jsonl", engine)
    header, first, second = lines(out)
    bad = [{**first, "correct": "yes"}, {**second, "question_id": str(second["question_id"])},
           {k: v for k, v in second.items() if k != "category"}]  # fmt: skip
    out.write_text("".join(json.dumps(r) + "\n" for r in [header, *bad]))
    log = read_results(out)
    assert log.results == {}
    assert [w.split(" (")[0] for w in log.warnings] == [
        f"{out} line 2 is a malformed result",
        f"{out} line 3 is a malformed result",
        f"{out} line 4 is a malformed result",
    ]
    assert "('correct' is \"yes\")" in log.warnings[0] and "no 'category'" in log.warnings[2]
    for args in (["report", str(out)], ["compare", str(out), str(out)],
                 ["report", str(out), "--html", str(tmp_path / "r.html")]):  # fmt: skip
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert "line 4 is a malformed result (no 'category'); skipped" in result.output


# -- tracebacks and confusing messages -------------------------------------------------------


def test_10_a_config_that_is_not_utf8(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_bytes(b"per-category: 1\nmodel: caf\xe9.gguf\n")
    result = invoke("run", "--config", str(cfg))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"{cfg} is not UTF-8 text (byte 26); save it as UTF-8 YAML" in result.output


def test_12_config_keys_may_be_flag_names_and_errors_name_the_key(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    cfg = tmp_path / "run.yaml"
    out = tmp_path / "r.jsonl"
    cfg.write_text(f"model: {model}\nper-category: 1\ncategories: law\ndataset: mmlu-pro\n"
                   f"extract: last\nout: {out}\nprogress: false\n")  # fmt: skip
    result = invoke_with(engine, "run", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert lines(out)[0]["identity"]["extraction"]["mode"] == "last"
    cfg.write_text("per-category: 1\nmax-tokens: lots\n")
    result = invoke_with(engine, "run", "--config", str(cfg))
    assert (
        result.exit_code == 1
        and f"{cfg}: max-tokens: 'lots' is not a valid integer" in result.output
    )
    assert "--max-tokens" not in result.output
    cfg.write_text(f"model: {model}\nper-category: 1\nparallel: several\nout: {out}\n")
    result = invoke_with(engine, "run", "--config", str(cfg))
    assert result.exit_code == 2 and f"{cfg}: parallel" in result.output
    assert "--parallel" not in result.output


def test_13_model_info_counts_the_context_as_run_does(smollm2: Path) -> None:
    result = invoke("model", "info", str(smollm2), "--ctx", "4096", "--parallel", "4", "--json")
    facts = json.loads(result.output)
    from mmlupro_local.model.gguf import read_gguf

    assert facts["memory_needed"]["kv_cache"] == estimate(read_gguf(smollm2), 4096).kv_cache
    default = json.loads(invoke("model", "info", str(smollm2), "--parallel", "4", "--json").output)
    assert default["ctx_estimated"] and default["ctx"] == 2048 + 4 * (512 + 2048)


def test_15_sigterm_is_treated_like_ctrl_c(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopping = FakeEngine(sigint_at=2, signum=signal.SIGTERM)
    out = tmp_path / "r.jsonl"
    result = invoke_with(stopping, "run", str(model), *LAW2, "--out", str(out))
    assert result.exit_code == 143, result.output
    assert "Stopped by SIGTERM: 1 of 2 questions are saved" in result.output
    assert "Resume with:" in result.output
    assert [r["type"] for r in lines(out)] == ["run", "result"]


@pytest.mark.parametrize(("signum", "code", "said"), [(signal.SIGINT, 130, "Interrupted"),
                                                       (signal.SIGTERM, 143, "Stopped by SIGTERM")])  # fmt: skip
def test_15_a_signal_while_loading_says_how_to_resume(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int, code: int, said: str
) -> None:
    def loading(path: Path, settings: object) -> FakeEngine:
        os.kill(os.getpid(), signum)
        time.sleep(1)
        raise AssertionError("the signal did not interrupt loading")

    out = tmp_path / "r.jsonl"
    # Python keeps SIGINT ignored when its shell started it in the background (as a
    # script's `cmd &` does): give the test Ctrl-C's usual handler
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = invoke_with(loading, "run", str(model), *LAW2, "--out", str(out))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == code, result.output
    assert (
        f"{said}: before any question was answered; no results were written. Resume with:"
        in result.output
    )
    assert "Aborted" not in result.output
    assert not out.exists()  # no 0-byte file either (16)


def test_16_refused_runs_leave_no_empty_file(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(path: Path, settings: object) -> FakeEngine:
        raise DatasetError("the model would not load")

    out = tmp_path / "deeper" / "r.jsonl"
    result = invoke_with(failing, "run", str(model), *LAW2, "--out", str(out))
    assert result.exit_code == 1 and not out.exists()


def test_16_out_paths_that_cannot_be_files(model: Path, tmp_path: Path, engine: FakeEngine) -> None:
    empty = invoke_with(engine, "run", str(model), *LAW2, "--out", "")
    assert empty.exit_code == 2 and "Invalid value for --out: is empty" in empty.output
    folder = invoke_with(engine, "run", str(model), *LAW2, "--out", f"{tmp_path}/results/")
    assert folder.exit_code == 2 and "is a directory; give a file path such as" in folder.output
    assert not (tmp_path / "results").exists()
    blocker = tmp_path / "passwd"
    blocker.write_text("root\n")
    under = invoke_with(engine, "run", str(model), *LAW2, "--out", f"{blocker}/x")
    assert under.exit_code == 1 and f"{blocker} is a file, not a directory" in under.output


def test_16_a_finished_read_only_file_is_shown(
    model: Path, tmp_path: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
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


def test_16_resume_messages_name_what_to_do(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    out = finished_run(model, tmp_path / "r.jsonl", engine)
    other = write_fake_model(tmp_path / "other.gguf", data_bytes=128)
    mismatch = invoke_with(engine, "run", str(other), *LAW2, "--out", str(out))
    assert mismatch.exit_code == 1 and f"the file's model was {model.resolve()}" in mismatch.output
    records = out.read_text().splitlines()
    out.write_text("\n".join([records[0], "garbage", *records[1:]]) + "\n")
    garbage = invoke_with(engine, "run", str(model), *LAW2, "--out", str(out))
    assert garbage.exit_code == 1 and f"sed -i '2d' {out}" in garbage.output


def test_17_hub_references_with_one_slash_and_no_network(tmp_path: Path) -> None:
    result = invoke("run", "hf:/owner/repo/x.gguf", "--per-category", "1")
    assert result.exit_code == 1
    assert "did you mean hf://owner/repo/x.gguf?" in result.output
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    began = time.monotonic()
    done = run_cli("model", "fetch", "hf://owner/repo/x.gguf",
                   env={"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")})  # fmt: skip
    assert time.monotonic() - began < 10
    assert done.returncode == 1 and "Retry" not in done.stderr
    assert f"the hub cannot be reached (127.0.0.1:{port}: Connection refused" in done.stderr


def test_18_prompt_refuses_contexts_that_leave_no_room(smollm2: Path) -> None:
    small = invoke("prompt", "70", "--ctx", "300", "--model", str(smollm2))
    assert small.exit_code == 2 and "--ctx 300 leaves no room for a prompt" in small.output
    assert "-1748" not in small.output
    assert invoke("prompt", "70", "--ctx", "-5", "--model", str(smollm2)).exit_code == 2
    assert invoke("prompt", "70", "--max-tokens", "-1").exit_code == 2


def test_19_the_progress_bar_shows_generation_speed_as_generation_speed() -> None:
    from mmlupro_local.runner import Speed

    speed = Speed()
    # 40 prompt tokens read in 0.5 s, then 20 tokens generated in 0.5 s of decoding,
    # the question taking 2 s in all
    speed.add(Generation("x", 100, 40, 20, 2.0, 1.0, "eos", prompt_seconds=0.5))
    text = str(speed)
    assert "gen 40.0 tok/s" in text and "prompt 80 tok/s" in text
