"""The Open LLM Leaderboard v2's MMLU-Pro: 5-shot letter choice, scored by log-probability.

As lm-evaluation-harness defines it in `lm_eval/tasks/leaderboard/mmlu_pro/` (task
version 0.1), read to the byte:
- shots: the first k rows of the validation split in file order, whatever the
  question's category (`fewshot_config.sampler: first_n`, `num_fewshot: 5`), so every
  question shares one prefix;
- a block (`doc_to_text`): the question, a newline, "A. option" and a newline per
  option, then "Answer:"; a shot is followed by its answer letter directly
  (`target_delimiter: ""`), shots are joined and followed by a blank line (the
  harness's default `fewshot_delimiter` "\\n\\n"); no description before them;
- choices (`doc_to_choice`): the letters A.. for as many options as the question has;
  each is scored as the continuation of the prompt, with no space before it;
- metric `acc`: the choice whose tokens have the highest summed log-probability (no
  length normalisation; the harness's argmax takes the first of equal scores).
Chat style is the harness's `--apply_chat_template --fewshot_as_multiturn`: each shot a
user turn and an assistant turn holding its letter, then the question as a user turn.
"""

from __future__ import annotations

from collections.abc import Sequence

from mmlupro_local.datasets.questions import LETTERS, Question
from mmlupro_local.task.prompt import (
    ChatRenderer,
    Message,
    Prompt,
    PromptError,
    PromptSettings,
    render_split,
)
from mmlupro_local.task.wording import OFFICIAL, Wording

SHOT_DELIMITER = "\n\n"


def letter_shots(validation: Sequence[Question], k: int) -> list[Question]:
    """The first k validation rows in file order (the sampler `first_n`)."""
    return list(validation[:k])


def letter_block(question: Question, *, strip: bool = False, wording: Wording = OFFICIAL) -> str:
    options = [o.strip() for o in question.choices] if strip else list(question.choices)
    text = question.question + "\n"
    for letter, option in zip(LETTERS, options, strict=False):
        text += f"{letter}. {option}\n"
    # "Answer:" in the official English; another wording's own answer label
    return text + ("Answer:" if wording == OFFICIAL else wording.answer_label)


def letter_choices(question: Question) -> tuple[str, ...]:
    return tuple(LETTERS[: len(question.choices)])


def letter_messages(
    question: Question,
    shots: Sequence[Question],
    *,
    strip: bool = False,
    wording: Wording = OFFICIAL,
) -> list[Message]:
    messages: list[Message] = []
    for shot in shots:
        content = letter_block(shot, strip=strip, wording=wording)
        messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": shot.answer})
    content = letter_block(question, strip=strip, wording=wording)
    messages.append({"role": "user", "content": content})
    return messages


def build_letter_prompt(
    question: Question,
    validation: Sequence[Question],
    settings: PromptSettings,
    *,
    render_chat: ChatRenderer | None = None,
    wording: Wording = OFFICIAL,
) -> Prompt:
    shots = letter_shots(validation, settings.shots)
    strip = settings.strip_options
    choices = letter_choices(question)
    if settings.style == "completion":
        blocks = (letter_block(s, strip=strip, wording=wording) for s in shots)
        prefix = "".join(b + s.answer + SHOT_DELIMITER for b, s in zip(blocks, shots, strict=True))
        text = prefix + letter_block(question, strip=strip, wording=wording)
        return Prompt(question.question_id, text, len(shots), len(prefix), choices=choices)
    if render_chat is None:
        raise PromptError("chat style needs the model's chat template (give --model)")
    messages = letter_messages(question, shots, strip=strip, wording=wording)
    text, marker = render_split(messages, render_chat)
    return Prompt(question.question_id, text, len(shots), marker, tuple(messages), choices)
