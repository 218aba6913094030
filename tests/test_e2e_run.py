"""End to end: the real CLI, a real GGUF model (SmolLM2-135M) through llama-cpp-python."""

from __future__ import annotations

import html
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from browser import browser_or_skip, headless
from fakes import gguf_bytes
from mmlupro_local.datasets.dataset import load_dataset
from mmlupro_local.engine.mode import auto_mode
from mmlupro_local.engine.tokenizer import load_token_counter
from mmlupro_local.model.hardware import physical_cores
from mmlupro_local.results.records import COST_FIELDS
from mmlupro_local.task.prompt import PromptSettings, build_prompt

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SMALL = [
    "--per-category",
    "2",
    "--categories",
    "history,psychology",
    "--shots",
    "1",
    "--max-tokens",
    "48",
    "--no-progress",
    "--reference",
]


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmlupro_local", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def results(path: Path) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["type"] == "result"]


def start_cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mmlupro_local", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_once_saved(args: list[str], out: Path, saved: int) -> list[dict[str, Any]]:
    """Run the CLI, SIGKILL it once `out` holds `saved` results; the results then."""
    proc = start_cli(*args)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not out.exists() or len(results(out)) < saved):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return results(out)


@pytest.fixture(scope="module")
def first_run(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "a.jsonl"
    done = cli("run", str(smollm2), *SMALL, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "overall" in done.stdout
    return out


def test_results_file_is_valid(first_run: Path) -> None:
    records = [json.loads(line) for line in first_run.read_text().splitlines()]
    assert records[0]["type"] == "run"
    assert records[0]["model"]["quantization"] == "Q4_1"
    assert records[0]["engine"]["llama_cpp_python"] == "0.3.36"
    found = results(first_run)
    assert len(found) == 4 and len({r["question_id"] for r in found}) == 4
    for r in found:
        assert r["generated_tokens"] <= 48 and r["stop_reason"] in {
            "early",
            "stop",
            "eos",
            "length",
        }
        assert r["level"] in (0, 1, 2, 3) and (r["pred"] is None) == (r["level"] == 0)
        assert r["prompt_tokens"] > 0 and r["seconds"] > r["decode_seconds"] > 0


def test_second_question_of_a_category_decodes_only_its_suffix(
    smollm2: Path, first_run: Path
) -> None:
    data = load_dataset()
    count = load_token_counter(smollm2)
    by_id = {q.question_id: q for q in data.test}
    found = results(first_run)
    for first, second in zip(found[::2], found[1::2], strict=True):
        assert first["category"] == second["category"]
        assert first["decoded_prompt_tokens"] == first["prompt_tokens"]
        prompt = build_prompt(
            by_id[second["question_id"]], data.validation, PromptSettings(shots=1)
        )
        suffix = second["prompt_tokens"] - count(prompt.text[: prompt.prefix_chars])
        assert second["decoded_prompt_tokens"] <= suffix + 2
        assert second["decoded_prompt_tokens"] < second["prompt_tokens"] / 2


def test_rerun_reproduces_the_results(smollm2: Path, first_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.jsonl"
    assert cli("run", str(smollm2), *SMALL, "--out", str(out)).returncode == 0
    keys = ("question_id", "response", "pred", "level", "generated_tokens", "stop_reason")
    assert [{k: r[k] for k in keys} for r in results(out)] == [
        {k: r[k] for k in keys} for r in results(first_run)
    ]


def test_the_context_size_does_not_change_answers(
    smollm2: Path, first_run: Path, tmp_path: Path
) -> None:
    """Issue 13 #4: --ctx is not part of a run's identity (a resumed run opens the
    context its remaining questions need), which holds because llama.cpp attends over
    the used cells only, whatever the context's size."""
    out = tmp_path / "wide.jsonl"
    done = cli("run", str(smollm2), *SMALL, "--ctx", "8192", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text().splitlines()[0])["engine"]["n_ctx"] == 8192
    first = json.loads(first_run.read_text().splitlines()[0])["engine"]["n_ctx"]
    assert first < 8192
    keys = ("question_id", "response", "generated_tokens")
    assert [{k: r[k] for k in keys} for r in results(out)] == [
        {k: r[k] for k in keys} for r in results(first_run)
    ]


def test_early_stop_gives_the_same_predictions(smollm2: Path, tmp_path: Path) -> None:
    args = [
        "--per-category",
        "2",
        "--categories",
        "history,psychology",
        "--shots",
        "1",
        "--max-tokens",
        "96",
        "--no-progress",
        "--reference",
    ]
    early, full = tmp_path / "early.jsonl", tmp_path / "full.jsonl"
    assert cli("run", str(smollm2), *args, "--out", str(early)).returncode == 0
    assert cli("run", str(smollm2), *args, "--no-early-stop", "--out", str(full)).returncode == 0
    a, b = results(early), results(full)
    assert [r["pred"] for r in a] == [r["pred"] for r in b]
    assert sum(r["generated_tokens"] for r in a) <= sum(r["generated_tokens"] for r in b)
    for x, y in zip(a, b, strict=True):
        assert y["response"].startswith(x["response"])  # early stop only cuts the same text short


def test_sigkill_then_resume_gives_one_record_per_question(smollm2: Path, tmp_path: Path) -> None:
    out = tmp_path / "k.jsonl"
    args = ["run", str(smollm2), "--per-category", "3", "--categories", "history,psychology",
            "--shots", "1", "--max-tokens", "48", "--no-progress", "--out", str(out)]  # fmt: skip
    before = kill_once_saved(args, out, 2)
    assert 2 <= len(before) < 6
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    after = results(out)
    assert sorted(r["question_id"] for r in after) == sorted({r["question_id"] for r in after})
    assert len(after) == 6
    assert after[: len(before)] == before  # nothing that was complete was lost or changed


def test_chat_style_with_the_models_template(smollm2: Path, tmp_path: Path) -> None:
    out = tmp_path / "chat.jsonl"
    done = cli("run", str(smollm2), "--per-category", "1", "--categories", "history", "--style", "chat",
               "--shots", "1", "--max-tokens", "32", "--no-progress", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(results(out)) == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d, m: d / "missing.gguf", "no such file"),
        (
            lambda d, m: (d / "x.gguf").write_text("not a model") and d / "x.gguf",
            "is not a GGUF file",
        ),
        (
            lambda d, m: (d / "t.gguf").write_bytes(m.read_bytes()[:10_000_000]) and d / "t.gguf",
            "is truncated",
        ),
        (
            lambda d, m: (
                (d / "a.gguf").write_bytes(gguf_bytes({"general.architecture": "mamba9"}))
                and d / "a.gguf"
            ),
            "llama.cpp could not load a.gguf (architecture 'mamba9'): ",
        ),
        (lambda d, m: d, "is a directory"),
    ],
)
def test_bad_models_give_one_clear_line(smollm2: Path, tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    done = cli(
        "run",
        str(make(tmp_path, smollm2)),
        "--per-category",
        "1",
        "--out",
        str(tmp_path / "r.jsonl"),
    )
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


def test_html_report_renders_in_chromium(first_run: Path, tmp_path: Path) -> None:
    browser = browser_or_skip()
    page = tmp_path / "report.html"
    done = cli("report", str(first_run), "--html", str(page))
    assert done.returncode == 0, done.stderr
    flags = headless(browser, tmp_path / "profile")
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert dom.count('class="bar"') == 3 and dom.count('class="whisker"') == 3
    assert dom.count("<tr data-category=") == 4
    assert '<span id="shown">4</span>' in dom  # the table's script ran in the page
    # a link to one answer opens it, unpacked from the page's compressed responses
    record = results(first_run)[2]
    opened = subprocess.run(
        [*flags, "--virtual-time-budget=10000", "--dump-dom",
         f"{page.as_uri()}#open=0:{record['question_id']}"],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    shown = re.search(r'<pre class="filled">(.*?)</pre>', opened, re.S)
    assert shown and html.unescape(shown.group(1)) == record["response"]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000


def test_engine_equals_a_plain_create_completion_loop(smollm2: Path) -> None:
    """Decoding a whole prompt from an empty cache, the engine is llama.cpp itself:
    the same tokens as llama-cpp-python's own completion loop, greedy, same batches."""
    import llama_cpp

    from mmlupro_local.engine import EngineSettings
    from mmlupro_local.engine.llama import LlamaEngine
    from mmlupro_local.task.settings import AnswerSettings
    from mmlupro_local.task.stopping import StopWatcher

    data = load_dataset()
    questions = [q for q in data.test if q.category == "biology"][:2]
    prompts = [build_prompt(q, data.validation, PromptSettings(shots=2)).text for q in questions]
    settings = AnswerSettings(early_stop=False)
    # llama-cpp-python's own default is flash attention off
    with LlamaEngine(smollm2, EngineSettings(threads=2, flash_attn=False)) as engine:
        engine.open_context(2048)
        ours = []
        for prompt in prompts:
            engine.open_context(2048)  # a fresh cache: the whole prompt is decoded
            watcher = StopWatcher(settings)
            ours.append(engine.generate(prompt, 0, max_tokens=40, watcher=watcher).text)
    llm = llama_cpp.Llama(
        model_path=str(smollm2), n_ctx=2048, n_threads=2, n_batch=512, verbose=False
    )
    theirs = []
    for prompt in prompts:
        llm.reset()
        theirs.append(
            llm.create_completion(prompt, max_tokens=40, temperature=0.0, stop=["Question:"])[
                "choices"
            ][0]["text"]
        )
    assert ours == theirs


def test_warm_prefix_cache_gives_the_same_results(smollm2: Path, tmp_path: Path) -> None:
    args = [
        "--per-category",
        "2",
        "--categories",
        "law",
        "--shots",
        "2",
        "--max-tokens",
        "32",
        "--no-progress",
    ]
    cold, warm, off = tmp_path / "cold.jsonl", tmp_path / "warm.jsonl", tmp_path / "off.jsonl"
    first = cli("run", str(smollm2), *args, "--out", str(cold))
    assert "prefix cache: 0 loaded, 1 decoded, 1 saved\n" in first.stderr
    second = cli("run", str(smollm2), *args, "--out", str(warm))
    assert "prefix cache: 1 loaded, 0 decoded, 0 saved\n" in second.stderr
    assert cli("run", str(smollm2), *args, "--no-prefix-cache", "--out", str(off)).returncode == 0
    keys = ("question_id", "response", "pred", "generated_tokens")
    runs = [[{k: r[k] for k in keys} for r in results(p)] for p in (cold, warm, off)]
    assert runs[0] == runs[1] == runs[2]
    decoded = [sum(r["decoded_prompt_tokens"] for r in results(p)) for p in (cold, warm)]
    prefix = {r["prompt_tokens"] - r["decoded_prompt_tokens"] for r in results(warm)}
    assert len(prefix) == 1 and decoded[0] - decoded[1] == prefix.pop() > 400  # loaded, not decoded


def test_parallel_run_agrees_with_sequential_and_resumes_after_sigkill(
    smollm2: Path, tmp_path: Path
) -> None:
    args = [
        "--per-category",
        "4",
        "--categories",
        "history",
        "--shots",
        "1",
        "--max-tokens",
        "48",
        "--no-progress",
    ]
    seq, par = tmp_path / "seq.jsonl", tmp_path / "par.jsonl"
    assert (
        cli(
            "run", str(smollm2), *args, "--no-prefix-cache", "--reference", "--out", str(seq)
        ).returncode
        == 0
    )
    command = ["run", str(smollm2), *args, "--parallel", "4", "--lookup", "0", "--out", str(par)]
    before = kill_once_saved(command, par, 1)
    done = cli(*command)
    assert done.returncode == 0, done.stderr
    after = results(par)
    assert len(after) == 4 and len({r["question_id"] for r in after}) == 4
    assert after[: len(before)] == before
    header = json.loads(par.read_text().splitlines()[0])
    assert header["identity"]["engine"]["parallel"] == 4 and header["engine"]["flash_attn"] is True
    agree = sum(a["pred"] == b["pred"] for a, b in zip(sorted(results(seq), key=lambda r: r["question_id"]),
                                                      sorted(after, key=lambda r: r["question_id"]), strict=True))  # fmt: skip
    assert agree == 4  # what this model and seed give here; batching may flip one elsewhere


def _complete_lines(path: Path) -> list[bytes]:
    """The file's lines that end with a newline (a killed write may leave one torn)."""
    data = path.read_bytes() if path.exists() else b""
    return data.split(b"\n")[:-1]


def _report_figures(path: Path) -> dict[str, Any]:
    """What `report --format json` says about accuracy, without time and cost figures
    (a resumed run re-decodes prefixes and takes longer, by design)."""
    done = cli("report", str(path), "--format", "json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)["runs"][0]
    drop = ("seconds", "decoded_prompt_tokens")
    strip = lambda d: {k: v for k, v in d.items() if k not in drop}  # noqa: E731
    return {
        "overall": strip(run["overall"]),
        "macro": run["macro_accuracy"],
        "categories": {name: strip(c) for name, c in run["categories"].items()},
        "complete": run["complete"],
    }


def test_ten_random_sigkills_lose_nothing_and_change_nothing(smollm2: Path, tmp_path: Path) -> None:
    """Kill a real run at random moments (loading, decoding, writing), resume each time."""
    seed = int(os.environ.get("FAULT_SEED", time.time_ns() % 10_000))
    print(f"fault injection seed {seed} (rerun with FAULT_SEED={seed})")
    rng = random.Random(seed)
    base = ["run", str(smollm2), "--per-category", "2", "--categories",
            "law,history,biology,economics,philosophy,math", "--shots", "1",
            "--max-tokens", "32", "--no-progress", "--reference"]  # fmt: skip
    reference = tmp_path / "reference.jsonl"
    assert cli(*base, "--out", str(reference)).returncode == 0
    out = tmp_path / "killed.jsonl"
    kept: list[bytes] = []
    kills = 0
    while kills < 10:
        proc = start_cli(*base, "--out", str(out))
        try:
            proc.wait(timeout=rng.uniform(0.5, 6.0))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        now = _complete_lines(out)
        assert now[: len(kept)] == kept, f"kill {kills}: a complete record was lost or changed"
        kept = now
        if proc.returncode == 0:  # finished before the kill: start over for more kills
            out.unlink()
            kept = []
    assert cli(*base, "--out", str(out)).returncode == 0
    final = _complete_lines(out)
    assert final[: len(kept)] == kept
    records = [json.loads(line) for line in final]
    ids = [r["question_id"] for r in records if r["type"] == "result"]
    assert len(ids) == len(set(ids)) == 12
    assert _report_figures(out) == _report_figures(reference)
    by_id = {r["question_id"]: r["response"] for r in results(reference)}
    assert {r["question_id"]: r["response"] for r in results(out)} == by_id


def test_more_parallel_questions_than_a_streams_call_holds(smollm2: Path, tmp_path: Path) -> None:
    """34 questions at once: a step's call carries a row per stream, more than the 48
    rows a stream's own call may, and an output row each (llama.cpp once aborted on too
    few output rows); --batch is gone and says so."""
    out = tmp_path / "wide.jsonl"
    done = cli("run", str(smollm2), "--per-category", "34", "--categories", "law",
               "--shots", "0", "--max-tokens", "4", "--parallel", "34", "--lookup", "0",
               "--no-progress", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len({r["question_id"] for r in results(out)}) == len(results(out)) == 34
    gone = cli("run", str(smollm2), "--per-category", "1", "--batch", "32", "--out", str(out))
    assert gone.returncode == 2 and "--batch is gone" in gone.stderr


def test_ctx_is_what_each_parallel_question_may_reach(smollm2: Path, tmp_path: Path) -> None:
    """--ctx is one question's reach: four questions at once each get a KV stream of it,
    so a context that holds one question whole holds four (the shared cache of earlier
    releases ran out and shed questions)."""
    out = tmp_path / "full.jsonl"
    budget, n_ctx = 64, 2560
    done = cli("run", str(smollm2), "--per-category", "4", "--categories", "history",
               "--max-tokens", str(budget), "--parallel", "4", "--lookup", "0", "--ctx", str(n_ctx),
               "--no-prefix-cache", "--no-progress", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = results(out)
    assert len({r["question_id"] for r in records}) == len(records) == 4
    assert all(r["shots"] == 5 for r in records) and "dropped exemplars" not in done.stderr
    prefix = max(r["prompt_tokens"] - r["decoded_prompt_tokens"] for r in records)
    assert prefix > 1000  # questions after the first reused it
    assert prefix + sum(r["prompt_tokens"] - prefix + budget for r in records) > n_ctx


def test_lookup_decoding_confirms_guesses_and_reproduces(smollm2: Path, tmp_path: Path) -> None:
    """--lookup 16: question 1335 (law) makes SmolLM2 repeat itself, which guesses
    predict; reruns give the same responses, sequential and with --parallel 2, and so
    does --lookup 0, which resumes a file written with it."""
    base = ["run", str(smollm2), "--per-category", "2", "--categories", "law",
            "--max-tokens", "128", "--no-progress", "--lookup", "16"]  # fmt: skip
    runs = {}
    for name, extra in (
        ("a", ["--parallel", "1"]),
        ("b", ["--parallel", "1"]),
        ("p", ["--parallel", "2"]),
        ("q", ["--parallel", "2"]),
    ):
        out = tmp_path / f"{name}.jsonl"
        done = cli(*base, *extra, "--out", str(out))
        assert done.returncode == 0, done.stderr
        runs[name] = {r["question_id"]: r for r in results(out)}
    header = json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])
    assert header["identity"]["engine"]["lookup"] == 16
    looping = runs["a"][1335]
    assert looping["generated_tokens"] == 128
    assert looping["guessed_tokens"] == 99, looping["guessed_tokens"]
    for x, y in (("a", "b"), ("p", "q"), ("a", "p")):
        assert {k: r["response"] for k, r in runs[x].items()} == {
            k: r["response"] for k, r in runs[y].items()
        }
    # guesses change no answer: the same responses without them, and the file resumes
    plain = cli(*base[:-2], "--lookup", "0", "--out", str(tmp_path / "plain.jsonl"))
    assert plain.returncode == 0, plain.stderr
    assert {r["question_id"]: r["response"] for r in results(tmp_path / "plain.jsonl")} == {
        k: r["response"] for k, r in runs["a"].items()
    }
    resumed = cli(*base[:-2], "--lookup", "0", "--out", str(tmp_path / "a.jsonl"))
    assert resumed.returncode == 0, resumed.stderr


def test_the_default_command_reruns_byte_identically(smollm2: Path, tmp_path: Path) -> None:
    """Issue 18: the defaults (--parallel auto --lookup auto) batch questions and check
    guesses, yet the same command gives the same answers again, byte for byte. What may
    differ is cost: the clock, and the prompt tokens decoded (the second run loads the
    prefix from the cache the first one filled)."""
    # question 1335 (law) loops to the budget, where lookup guesses well
    args = ["run", str(smollm2), "--per-category", "2", "--categories", "history,law",
            "--max-tokens", "128", "--no-progress"]  # fmt: skip
    outs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    expected = auto_mode("cpu", physical_cores(), smollm2.stat().st_size)
    assert (expected.parallel, expected.lookup) == (8, 16)  # this machine: 2 cores
    for out in outs:
        done = cli(*args, "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert f"engine mode: {expected.flags} ({expected.reason})" in done.stderr

    def timeless(path: Path) -> list[str]:
        return [
            json.dumps({k: v for k, v in r.items() if k not in COST_FIELDS}) for r in results(path)
        ]

    assert timeless(outs[0]) == timeless(outs[1])
    header = json.loads(outs[0].read_text().splitlines()[0])
    assert header["identity"]["engine"]["parallel"] == 8 == expected.parallel
    assert header["identity"]["engine"]["lookup"] == 16
    assert header["engine"]["mode_chosen"].startswith("auto: CPU, ")
    assert sum(r["guessed_tokens"] for r in results(outs[0])) > 0  # lookup did work
