"""The leaderboard's letter-choice prompt (--method logprob), byte for byte."""

from __future__ import annotations

import string

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
        harness_block(s.question, list(s.choices)) + s.answer + "\n\n" for s in shots
    ) + harness_block(question.question, list(question.choices))
    assert prompt.text == expected
    assert prompt.text[: prompt.prefix_chars].endswith("Answer:" + shots[-1].answer + "\n\n")
    assert prompt.choices == tuple("ABCDEFGHIJ"[: len(question.choices)]) and prompt.shots == 5


def test_every_question_shares_one_prefix_and_choices_follow_the_options(
    embedded: Dataset,
) -> None:
    nine = next(q for q in embedded.test if len(q.choices) == 9)
    other = next(q for q in embedded.test if q.category != nine.category)
    a = build_letter_prompt(nine, embedded.validation, PromptSettings())
    b = build_letter_prompt(other, embedded.validation, PromptSettings())
    assert a.text[: a.prefix_chars] == b.text[: b.prefix_chars]
    assert a.choices == tuple("ABCDEFGHI")
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
