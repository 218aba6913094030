"""The leaderboard's letter-choice prompt (--method logprob), byte for byte, against
lm-evaluation-harness's own rendering (scripts/letter_golden.py)."""

from __future__ import annotations

import gzip
import json
import string
from pathlib import Path
from typing import Any

import pytest

from mmlupro_local.datasets.dataset import Dataset
from mmlupro_local.task.letter_prompt import build_letter_prompt, letter_messages
from mmlupro_local.task.prompt import PromptSettings


def harness_block(question: str, options: list[str]) -> str:
    """lm-evaluation-harness leaderboard/mmlu_pro/utils.py doc_to_text, restated."""
    text = f"{question}\n"
    for i, option in enumerate(options):
        text += f"{string.ascii_uppercase[i]}. {option}\n"
    return text + "Answer:"


def test_completion_prompt_is_the_first_five_validation_rows_then_the_question(
    embedded: Dataset,
) -> None:
    question = next(q for q in embedded.test if q.category == "law")
    prompt = build_letter_prompt(question, embedded.validation, PromptSettings())
    shots = embedded.validation[:5]
    assert {s.category for s in shots} == {"math"}  # first_n: not the question's category
    expected = "".join(
        harness_block(s.question, list(s.options)) + " " + s.answer + "\n\n" for s in shots
    ) + harness_block(question.question, list(question.options))
    assert prompt.text == expected
    assert prompt.text[: prompt.prefix_chars].endswith("Answer: " + shots[-1].answer + "\n\n")
    letters = "ABCDEFGHIJ"[: len(question.options)]
    assert prompt.choices == tuple(" " + x for x in letters) and prompt.shots == 5


def test_every_question_shares_one_prefix_and_choices_follow_the_options(
    embedded: Dataset,
) -> None:
    nine = next(q for q in embedded.test if len(q.choices) == 9)
    other = next(q for q in embedded.test if q.category != nine.category)
    a = build_letter_prompt(nine, embedded.validation, PromptSettings())
    b = build_letter_prompt(other, embedded.validation, PromptSettings())
    assert a.text[: a.prefix_chars] == b.text[: b.prefix_chars]
    assert a.choices == tuple(" " + x for x in "ABCDEFGHI")
    zero = build_letter_prompt(nine, embedded.validation, PromptSettings(shots=0))
    assert zero.text == harness_block(nine.question, list(nine.choices)) and zero.prefix_chars == 0


def test_chat_form_is_multiturn_with_the_letter_as_the_assistant_turn(embedded: Dataset) -> None:
    question = embedded.test[0]
    messages = letter_messages(question, embedded.validation[:2])
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"] == embedded.validation[0].answer
    assert messages[-1]["content"] == harness_block(question.question, list(question.choices))

    def render(msgs: list[dict[str, str]]) -> str:
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in msgs) + "<assistant>"

    prompt = build_letter_prompt(
        question, embedded.validation, PromptSettings(style="chat", shots=2), render_chat=render
    )
    assert prompt.text == render(messages)
    assert prompt.text[prompt.prefix_chars :].startswith(question.question)


def _render(messages: list[dict[str, str]]) -> str:
    return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"


def _golden(test_data: Path) -> list[dict[str, Any]]:
    with gzip.open(test_data / "letter-prompts.json.gz", "rt", encoding="utf-8") as f:
        return list(json.load(f)["rows"])


@pytest.mark.parametrize("index", range(6))
def test_the_harness_renders_the_same_prompt_and_scores_the_same_continuations(
    embedded: Dataset, test_data: Path, index: int
) -> None:
    """lm-eval 0.4.13's leaderboard_mmlu_pro: "Answer: A" in the shots and " A" scored
    (its default target_delimiter) in completion form; bare letters after a chat
    template. The releases before wrote "Answer:A", which Qwen's vocabulary reads as
    one token ":A", leaving no token to score."""
    row = _golden(test_data)[index]
    question = next(q for q in embedded.test if q.question_id == row["question_id"])
    prompt = build_letter_prompt(question, embedded.validation, PromptSettings())
    assert prompt.text == row["completion"]
    assert list(prompt.choices) == row["completion_choices"]
    assert letter_messages(question, embedded.validation[:5]) == row["chat_messages"]
    chat = build_letter_prompt(
        question,
        embedded.validation,
        PromptSettings(style="chat"),
        render_chat=_render,
    )
    assert list(chat.choices) == row["chat_choices"]
