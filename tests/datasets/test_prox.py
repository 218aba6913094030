"""MMLU-ProX: importing its rows, its prompts (byte-identical to lm-evaluation-harness's
own rendering of the same fixture rows, tests/data/mmlu-prox-prompts, written by
scripts/prox_golden.py), its extraction and stop words, a run and its report."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fakes import FakeEngine, invoke, invoke_with, lines, write_fake_model
from hubserver import HubRepo, hub_env, run_cli, serve
from mmlupro_local.datasets.dataset import load_dataset
from mmlupro_local.datasets.library import PROX_LANGUAGES
from mmlupro_local.results.report import load_report
from mmlupro_local.task.extract import extract_answer
from mmlupro_local.task.settings import AnswerSettings
from mmlupro_local.task.stopping import StopWatcher
from mmlupro_local.task.wording import prox_languages, prox_wording

DATA = Path(__file__).resolve().parent.parent / "data"
FIXTURE = DATA / "mmlu-prox"
GOLDEN = DATA / "mmlu-prox-prompts"
LANGUAGES = ("ko", "de", "ar")
KOREAN_LABEL = "질문\uff1a"  # Korean's question label ends in a full-width colon
# the harness's stop words for Korean (its task's generation_kwargs.until), in its order
KOREAN_STOP = ("</s>", "Q:", KOREAN_LABEL, "<|im_end|>")
GERMAN_STOP = ("</s>", "Q:", "Frage:", "<|im_end|>")


def golden(lang: str) -> dict[int, str]:
    text = gzip.decompress((GOLDEN / f"{lang}.jsonl.gz").read_bytes()).decode("utf-8")
    return {r["question_id"]: r["prompt"] for r in map(json.loads, text.splitlines())}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_imported_prompts_are_the_harness_s_to_the_byte(lang: str) -> None:
    result = invoke("dataset", "import", str(FIXTURE / lang), "--name", f"x-{lang}", "--lang", lang)
    assert result.exit_code == 0, result.output
    assert f"(language {lang})" in result.output
    expected = golden(lang)
    ids = [str(i) for i in sorted(expected)]
    shown = invoke("prompt", *ids, "--dataset", f"x-{lang}", "--json")
    assert shown.exit_code == 0, shown.output
    prompts = {r["question_id"]: r["prompt"] for r in map(json.loads, shown.output.splitlines())}
    assert len(prompts) == 28
    assert prompts == expected


def test_the_language_comes_from_the_folder_or_is_asked_for(tmp_path: Path) -> None:
    assert invoke("dataset", "import", str(FIXTURE / "de"), "--name", "de").exit_code == 0
    assert load_dataset("de").language == "de"
    elsewhere = tmp_path / "rows"
    elsewhere.mkdir()
    for split in ("test", "validation"):
        (elsewhere / f"{split}.jsonl").write_bytes((FIXTURE / "ko" / f"{split}.jsonl").read_bytes())
    refused = invoke("dataset", "import", str(elsewhere), "--name", "unsaid")
    assert refused.exit_code == 1
    assert "MMLU-ProX's (option_0 ... option_9)" in refused.output
    assert "give --lang" in refused.output
    wrong = invoke("dataset", "import", str(elsewhere), "--name", "x", "--lang", "kr")
    assert "unknown language 'kr'" in wrong.output


def test_every_language_of_the_harness_has_a_wording() -> None:
    assert prox_languages() == PROX_LANGUAGES
    assert len(PROX_LANGUAGES) == 29
    korean = prox_wording("ko")
    assert korean.stop == KOREAN_STOP
    assert korean.forced_answer == "\n</think>\n\n답은 ("
    assert korean.heading("computer science").startswith("다음은 컴퓨터 과학에 관한")


@pytest.mark.parametrize(
    ("lang", "text", "letter", "level"),
    [
        ("ko", "따라서 답은 (C)입니다. 하지만 the answer is (D)", "C", 1),
        ("ko", "모르겠다. the answer is (D)", "D", 1),  # the official English as fallback
        ("de", "Also gilt: Die Antwort ist (B).", "B", 1),
        ("de", "Antwort: G\nAnswer: H", "G", 2),
        ("ar", "الإجابة هي (J)", "J", 1),
        ("ar", "لا أعرف E", "E", 3),
    ],
)
def test_extraction_reads_the_language_then_the_official_patterns(
    lang: str, text: str, letter: str, level: int
) -> None:
    found = extract_answer(text, wording=prox_wording(lang))
    assert (found.letter, found.level) == (letter, level)


def test_an_early_stop_waits_for_the_language_s_own_phrase() -> None:
    """Stopping at an English phrase would lose a later phrase in the language, which
    extraction prefers: only the language's phrase ends a generation early."""
    watcher = StopWatcher(AnswerSettings(stop=GERMAN_STOP, wording=prox_wording("de")))
    assert watcher.feed("So the answer is (A). ") is None
    assert watcher.feed("Die Antwort ist (") is None
    assert watcher.feed("B)") == "early"
    assert StopWatcher(AnswerSettings(stop=GERMAN_STOP)).feed("x\nFrage: y") == "stop"


def test_a_generation_ends_at_the_first_of_the_harness_s_stop_words() -> None:
    """The harness ends a Korean generation at "Q:" as well as at its question label:
    what follows the first of them is never read, so an answer after it is not found."""
    watcher = StopWatcher(AnswerSettings(stop=KOREAN_STOP, wording=prox_wording("ko")))
    assert watcher.feed("생각해 보면 Q") is None
    assert watcher.feed(": 다음 질문\uff1a 답은 (C)입니다") == "stop"
    assert watcher.text == "생각해 보면 "
    inside = StopWatcher(AnswerSettings(stop=KOREAN_STOP), started_thinking=True)
    assert inside.feed("Q: 생각 </think> 그러니 Q: 끝") == "stop"
    assert inside.text == "Q: 생각 </think> 그러니 "


def test_a_run_in_korean_is_recorded_reported_and_resumed_as_korean(tmp_path: Path) -> None:
    assert invoke("dataset", "import", str(FIXTURE / "ko"), "--name", "ko").exit_code == 0
    model = write_fake_model(tmp_path / "m.gguf")
    out = tmp_path / "ko.jsonl"
    engine = FakeEngine(lambda prompt: f"생각해 보면... 답은 (B)입니다.\n{KOREAN_LABEL} 다음")
    args = ("run", str(model), "--dataset", "ko", "--per-category", "1", "--out", str(out))
    result = invoke_with(engine, *args, "--categories", "law,math")
    assert result.exit_code == 0, result.output
    assert all(p.endswith("답변: 한 단계씩 생각해 봅시다.") for p in engine.calls)
    header, *records = lines(out)
    identity = header["identity"]
    assert identity["prompt"]["wording"] == "mmlu-prox-ko"
    assert identity["generation"]["stop"] == list(KOREAN_STOP)
    assert header["dataset"]["language"] == "ko"
    assert [r["pred"] for r in records] == ["B", "B"]
    assert "estimated 'ko' score in Korean on law, math" in result.output, result.output
    assert load_report(out).settings["language"] == "ko"
    page = tmp_path / "ko.html"
    assert invoke("report", str(out), "--html", str(page)).exit_code == 0
    assert "<tr><th>language</th><td>ko</td></tr>" in page.read_text(encoding="utf-8")
    # the same rows under another language are another prompt: the file refuses it
    assert (
        invoke("dataset", "import", str(FIXTURE / "ko"), "--name", "ko", "--lang", "de").exit_code
        == 0
    )
    again = invoke_with(FakeEngine(), *args, "--categories", "law,math")
    assert again.exit_code != 0
    assert "wording" in again.output


def hub_repo(name: str, tmp_path: Path, languages: tuple[str, ...]) -> HubRepo:
    """A dataset repository with the fixture's languages as MMLU-ProX lays them out: a
    folder per language, a parquet file per split."""
    repo = HubRepo("datasets", name)
    files = {}
    for lang in languages:
        for split in ("test", "validation"):
            rows = [
                json.loads(x)
                for x in (FIXTURE / lang / f"{split}.jsonl").read_text("utf-8").splitlines()
            ]
            path = tmp_path / f"{lang}-{split}.parquet"
            pq.write_table(pa.Table.from_pylist(rows), path)
            files[f"{lang}/{split}-00000-of-00001.parquet"] = path
    repo.add("c" * 40, files, "main")
    return repo


def test_fetch_mmlu_prox_stores_each_language(tmp_path: Path) -> None:
    repo = hub_repo("li-lab/MMLU-ProX", tmp_path, ("ko", "de"))
    with serve(repo) as hub:
        env = hub_env(hub.url, tmp_path)
        result = run_cli("dataset", "fetch", "mmlu-prox", "--lang", "ko", "--lang", "de", env=env)
        assert result.returncode == 0, result.stderr
        assert "as 'mmlu-prox-ko': 28 test, 70 validation rows" in result.stdout
        assert "as 'mmlu-prox-de'" in result.stdout
        info = run_cli("prompt", "392", "--dataset", "mmlu-prox-de", "--json", env=env)
        unknown = run_cli("dataset", "fetch", "mmlu-prox", "--lang", "xx", env=env)
    assert json.loads(info.stdout)["prompt"] == golden("de")[392]
    assert unknown.returncode != 0 and "unknown language 'xx'" in unknown.stderr


def test_fetch_mmlu_prox_lite_is_stored_and_exported_under_its_own_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Lite subset (the harness's mmlu_prox_lite tasks) is its own dataset, named as
    its repository names it wherever results are pooled."""
    with serve(hub_repo("li-lab/MMLU-ProX-Lite", tmp_path, ("ar",))) as hub:
        env = hub_env(hub.url, tmp_path)
        result = run_cli("dataset", "fetch", "mmlu-prox-lite", "--lang", "ar", env=env)
        named = run_cli(
            "dataset", "fetch", "mmlu-prox-lite", "--lang", "ar", "--name", "x", env=env
        )
    assert result.returncode == 0, result.stderr
    assert "li-lab/MMLU-ProX-Lite (hub), ar" in result.stdout
    assert "as 'mmlu-prox-lite-ar': 28 test, 70 validation rows" in result.stdout
    assert "stored as mmlu-prox-lite-ar: leave out --name" in named.stderr
    model = write_fake_model(tmp_path / "m.gguf")
    out = tmp_path / "lite.jsonl"
    run = ("run", str(model), "--dataset", "mmlu-prox-lite-ar", "--per-category", "1")
    engine = FakeEngine(lambda prompt: "الإجابة هي (A)")
    monkeypatch.setenv("MMLUPRO_LOCAL_CACHE", env["MMLUPRO_LOCAL_CACHE"])  # where it is stored
    ran = invoke_with(engine, *run, "--categories", "math", "--out", str(out))
    assert ran.exit_code == 0, ran.output
    eee = invoke("report", str(out), "--format", "eee", "--eee-dir", str(tmp_path / "e"))
    assert eee.exit_code == 0, eee.output
    (aggregate,) = (tmp_path / "e").rglob("*.json")
    source = json.loads(aggregate.read_text("utf-8"))["evaluation_results"][0]["source_data"]
    assert source["hf_repo"] == "li-lab/MMLU-ProX-Lite"
    assert source["dataset_name"] == "MMLU-ProX-Lite (ar)"


def test_a_server_is_sent_the_language_s_stop_word(tmp_path: Path) -> None:
    """The stop goes to the server with each request: the dataset's, not the English one."""
    from fakeserver import FakeServer, serve_fake

    assert invoke("dataset", "import", str(FIXTURE / "de"), "--name", "de").exit_code == 0
    with serve_fake(FakeServer()) as fake:
        out = tmp_path / "de.jsonl"
        args = ("--dataset", "de", "--per-category", "1", "--categories", "law", "--out", str(out))
        result = invoke("run", "--server", fake.url, *args, "--no-progress")
    assert result.exit_code == 0, result.output
    bodies = fake.completions()
    assert [b["stop"] for b in bodies] == [list(GERMAN_STOP)]
    assert bodies[0]["prompt"].endswith("Antwort: Denken wir Schritt für Schritt nach.")


def test_languages_compare_side_by_side_on_the_questions_they_share(tmp_path: Path) -> None:
    """The same model in Korean and German: one report with both columns and their
    accuracy on the questions both answered; compare pairs them by question id."""
    model = write_fake_model(tmp_path / "m.gguf")
    korean_right = {"law", "math"}

    def respond(prompt: str) -> str:
        """Korean: right in law and math; German: always (A)."""
        if prompt.endswith("생각해 봅시다."):
            question = next(q for q in load_dataset("ko").test if q.question in prompt)
            letter = question.answer if question.category in korean_right else "J"
            return f"답은 ({letter})입니다"
        return "Die Antwort ist (A)."

    outs = {}
    for lang, per in (("ko", "2"), ("de", "1")):
        assert invoke("dataset", "import", str(FIXTURE / lang), "--name", lang).exit_code == 0
        outs[lang] = tmp_path / f"{lang}.jsonl"
        args = (
            "run",
            str(model),
            "--dataset",
            lang,
            "--per-category",
            per,
            "--out",
            str(outs[lang]),
        )
        assert (
            invoke_with(FakeEngine(respond), *args, "--categories", "law,math,history").exit_code
            == 0
        )
    shown = invoke("report", str(outs["ko"]), str(outs["de"]))
    assert shown.exit_code == 0, shown.output
    rows = {line.split("  ")[0]: line for line in shown.output.splitlines()}
    assert rows["language"].split()[1:] == ["ko", "de"]
    shared = rows["on the 3 questions all answered"].split()
    assert shared[6] == "66.7%"  # Korean: the law and math questions of the three
    compared = invoke("compare", str(outs["ko"]), str(outs["de"]))
    assert compared.exit_code == 0, compared.output
    assert "different languages (A ko, B de)" in compared.output
    assert "Not compared: 3 of A's and 0 of B's questions" in compared.output


def test_a_think_budget_closes_into_the_language_s_answer_phrase() -> None:
    settings = AnswerSettings(stop=GERMAN_STOP, think_budget=2, wording=prox_wording("de"))
    watcher = StopWatcher(settings, started_thinking=True)
    assert watcher.feed("hmm") is None and watcher.take_forced() == ""
    assert watcher.feed(" so") is None
    assert watcher.take_forced() == "\n</think>\n\nDie Antwort ist ("


def test_divergence_feeds_the_prompts_the_run_sent(tmp_path: Path) -> None:
    """Teacher forcing rebuilds each prompt: in the dataset's language, as the run sent it."""
    from mmlupro_local.datasets.sampling import SampleSpec
    from mmlupro_local.run.request import RunRequest
    from mmlupro_local.run.targets.gguf import GgufSpec
    from mmlupro_local.studies.divergence import reference_texts

    assert invoke("dataset", "import", str(FIXTURE / "ar"), "--name", "ar").exit_code == 0
    model = write_fake_model(tmp_path / "m.gguf")
    out = tmp_path / "ar.jsonl"
    engine = FakeEngine(lambda prompt: "الإجابة هي (A)")
    args = ("run", str(model), "--dataset", "ar", "--per-category", "1", "--categories", "law")
    assert invoke_with(engine, *args, "--out", str(out)).exit_code == 0
    request = RunRequest(
        target=GgufSpec(path=model),
        out=tmp_path / "unused.jsonl",
        dataset="ar",
        sample=SampleSpec(per_category=1, categories=("law",)),
    )
    (text,) = reference_texts(model, request, out, echo=lambda _: None, progress=False)
    assert [text.prompt] == engine.calls


def test_a_row_with_a_null_option_before_a_given_one_is_refused(tmp_path: Path) -> None:
    """The harness letters option_i as the i-th letter: compacting the options past a
    null would shift every later letter, so such a row is named rather than read."""
    rows = (FIXTURE / "de" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    broken = json.loads(rows[3])
    broken["option_2"] = None
    folder = tmp_path / "de"
    folder.mkdir()
    (folder / "test.jsonl").write_text("\n".join([*rows[:3], json.dumps(broken), *rows[4:]]) + "\n")
    (folder / "validation.jsonl").write_bytes((FIXTURE / "de" / "validation.jsonl").read_bytes())
    result = invoke("dataset", "import", str(folder), "--name", "gap")
    assert result.exit_code == 1
    assert "test.jsonl line 4: field 'option_2': null before a later option" in result.output
