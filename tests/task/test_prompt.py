from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmlupro_local.cli import main
from mmlupro_local.datasets.dataset import Dataset
from mmlupro_local.task.prompt import PromptError, PromptSettings, build_prompt, fit_prompt

GOLDEN = Path(__file__).parent / "golden"


def reference_prompt(q, validation, k=5):  # type: ignore[no-untyped-def]
    """REFERENCE.md's format, written out independently of mmlupro_local.task.prompt."""

    def block(row, answer):  # type: ignore[no-untyped-def]
        opts = [o for o in row.options if o != "N/A"]
        s = "Question:\n" + row.question + "\nOptions:\n"
        s += "".join("ABCDEFGHIJ"[i] + ". " + o + "\n" for i, o in enumerate(opts))
        if answer:
            return (
                s
                + row.cot_content.replace(
                    "A: Let's think step by step.", "Answer: Let's think step by step."
                )
                + "\n\n"
            )
        return s + "Answer: Let's think step by step."

    shots = [v for v in validation if v.category == q.category][:k]
    head = (
        f"The following are multiple choice questions (with answers) about {q.category}. Think step by step "
        'and then finish your answer with "the answer is (X)" where X is the correct letter choice.'
    )
    return head + "\n\n\n" + "\n" + "".join(block(s, True) for s in shots) + block(q, False)


def test_every_test_question_matches_the_reference(embedded: Dataset) -> None:
    settings = PromptSettings()
    for q in embedded.test:
        built = build_prompt(q, embedded.validation, settings)
        assert built.text == reference_prompt(q, embedded.validation), q.question_id
        assert built.shots == 5
        assert (
            built.text[: built.prefix_chars]
            == reference_prompt(q, embedded.validation)[: built.prefix_chars]
        )
        assert built.text[built.prefix_chars :].startswith("Question:\n" + q.question)


def test_prefix_is_shared_within_a_category(embedded: Dataset) -> None:
    law = [q for q in embedded.test if q.category == "law"][:3]
    built = [build_prompt(q, embedded.validation, PromptSettings()) for q in law]
    assert len({b.text[: b.prefix_chars] for b in built}) == 1


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if not path.exists():
        path.write_text(text, encoding="utf-8")
        pytest.fail(f"wrote the missing golden file {path}: review it, commit it, rerun")
    assert text == path.read_text(encoding="utf-8")


def test_zero_shots_golden(embedded: Dataset) -> None:
    q = embedded.test[0]
    built = build_prompt(q, embedded.validation, PromptSettings(shots=0))
    assert built.shots == 0
    golden("completion_q70_0shot.txt", built.text)


def test_strip_options_golden(embedded: Dataset) -> None:
    q = next(q for q in embedded.test if q.question_id == 3544)  # a whitespace-leak question
    plain = build_prompt(q, embedded.validation, PromptSettings(shots=0)).text
    stripped = build_prompt(
        q, embedded.validation, PromptSettings(shots=0, strip_options=True)
    ).text
    assert plain != stripped
    assert all(
        line == line.rstrip()
        for line in stripped.splitlines()
        if line[:2] in {f"{c}." for c in "ABCDEFGHIJ"}
    )
    golden("completion_q3544_0shot_strip.txt", stripped)


def test_chat_golden_with_smollm2_template(smollm2: Path, embedded: Dataset) -> None:
    from mmlupro_local.engine.chat import chat_renderer
    from mmlupro_local.model.gguf import read_gguf

    render = chat_renderer(read_gguf(smollm2))
    q = embedded.test[0]
    built = build_prompt(
        q, embedded.validation, PromptSettings(style="chat", shots=2), render_chat=render
    )
    golden("chat_smollm2_q70_2shot.txt", built.text)
    assert built.text.endswith("<|im_start|>assistant\n")
    assert built.text[: built.prefix_chars].endswith("<|im_end|>\n<|im_start|>user\n")
    assert built.text[built.prefix_chars :].startswith("Question: " + q.question)
    other = build_prompt(
        embedded.test[1],
        embedded.validation,
        PromptSettings(style="chat", shots=2),
        render_chat=render,
    )
    assert other.text[: other.prefix_chars] == built.text[: built.prefix_chars]


def test_chat_needs_a_template(embedded: Dataset) -> None:
    with pytest.raises(PromptError, match="chat template"):
        build_prompt(embedded.test[0], embedded.validation, PromptSettings(style="chat"))


def test_template_with_question_before_prefix_is_refused(embedded: Dataset) -> None:
    def render(messages: list[dict[str, str]]) -> str:
        return messages[-1]["content"][:5] + "".join(m["content"] for m in messages)

    with pytest.raises(PromptError, match="cannot share a prefix"):
        build_prompt(
            embedded.test[0], embedded.validation, PromptSettings(style="chat"), render_chat=render
        )


def test_fit_rule_drops_shots_one_at_a_time(embedded: Dataset) -> None:
    q = embedded.test[0]
    lengths = {
        k: len(build_prompt(q, embedded.validation, PromptSettings(), shots=k).text)
        for k in range(6)
    }
    # a limit between the 3-shot and 4-shot lengths keeps 3 shots (official: length < limit)
    built = fit_prompt(q, embedded.validation, PromptSettings(), count_tokens=len, limit=lengths[4])
    assert built.shots == 3
    built = fit_prompt(
        q, embedded.validation, PromptSettings(), count_tokens=len, limit=lengths[5] + 1
    )
    assert built.shots == 5
    with pytest.raises(PromptError, match=r"does not fit even with 0 shots.*Raise --ctx"):
        fit_prompt(q, embedded.validation, PromptSettings(), count_tokens=len, limit=lengths[0])


def test_fit_rule_with_the_real_tokenizer(smollm2: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "prompt",
            "70",
            "--model",
            str(smollm2),
            "--ctx",
            "2560",
            "--max-tokens",
            "1536",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert 0 < row["shots"] < 5


def test_prompt_command_prints_the_official_prompt(embedded: Dataset) -> None:
    result = CliRunner().invoke(main, ["prompt", "70", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert row["question_id"] == 70
    assert row["prompt"] == reference_prompt(embedded.test[0], embedded.validation)
    plain = CliRunner().invoke(main, ["prompt", "70"])
    assert plain.output == reference_prompt(embedded.test[0], embedded.validation) + "\n"


def test_prompt_command_errors() -> None:
    result = CliRunner().invoke(main, ["prompt", "5"])
    assert result.exit_code == 1 and "no test question with id 5" in result.output
    result = CliRunner().invoke(main, ["prompt", "70", "--ctx", "4096"])
    assert result.exit_code == 1 and "--ctx needs --model" in result.output
    result = CliRunner().invoke(main, ["prompt", "70", "--shots", "6"])
    assert result.exit_code == 2
