"""The Open LLM Leaderboard v2's MMLU-Pro: 5-shot letter choice, scored by log-probability.

As lm-evaluation-harness defines it in `lm_eval/tasks/leaderboard/mmlu_pro/` (task
version 0.1), read to the byte:
- shots: the first k rows of the validation split in file order, whatever the
  question's category (`fewshot_config.sampler: first_n`, `num_fewshot: 5`), so every
  question shares one prefix;
- a block (`doc_to_text`): the question, a newline, "A. option" and a newline per
  option, then "Answer:"; a shot is followed by a space and its answer letter (the
  harness's default `target_delimiter` " ": "Answer: A"), shots are joined and
  followed by a blank line (its default `fewshot_delimiter` "\\n\\n"); no description;
- the options as the dataset has them, the "N/A" padding kept (the official CoT script
  drops it, the harness does not);
- choices (`doc_to_choice`): the letters A.. for as many options as the row has;
  each is scored as the continuation " A" of the prompt (the delimiter before it);
- metric `acc`: the choice whose tokens have the highest summed log-probability (no
  length normalisation; the harness's argmax takes the first of equal scores).
Chat style is the harness's `--apply_chat_template --fewshot_as_multiturn`: each shot a
user turn and an assistant turn holding its letter, then the question as a user turn; the
choices are the bare letters there (no delimiter after a chat template).
Checked against the harness's own rendering: tests/data/letter-prompts.json
(scripts/letter_golden.py).
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


def target_delimiter(style: str) -> str:
    """What comes between "Answer:" and a letter: a space in the completion prompt (a
    letter glued to the colon would also be another token, ":A", in many vocabularies),
    nothing after a chat template."""
    return " " if style == "completion" else ""


def letter_shots(validation: Sequence[Question], k: int) -> list[Question]:
    """The first k validation rows in file order (the sampler `first_n`)."""
    return list(validation[:k])


def letter_block(question: Question, *, strip: bool = False, wording: Wording = OFFICIAL) -> str:
    # the dataset's options as they are: the harness keeps the "N/A" padding (a choice too)
    options = [o.strip() for o in question.options] if strip else list(question.options)
    text = question.question + "\n"
    for letter, option in zip(LETTERS, options, strict=False):
        text += f"{letter}. {option}\n"
    # "Answer:" in the official English; another wording's own answer label
    return text + ("Answer:" if wording == OFFICIAL else wording.answer_label)


def letter_choices(question: Question, delimiter: str = "") -> tuple[str, ...]:
    """The continuations scored: each letter after the delimiter."""
    return tuple(delimiter + letter for letter in LETTERS[: len(question.options)])


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
    delimiter = target_delimiter(settings.style)
    choices = letter_choices(question, delimiter)
    if settings.style == "completion":
        blocks = (letter_block(s, strip=strip, wording=wording) for s in shots)
        prefix = "".join(
            b + delimiter + s.answer + SHOT_DELIMITER for b, s in zip(blocks, shots, strict=True)
        )
        text = prefix + letter_block(question, strip=strip, wording=wording)
        return Prompt(question.question_id, text, len(shots), len(prefix), choices=choices)
    if render_chat is None:
        raise PromptError("chat style needs the model's chat template (give --model)")
    messages = letter_messages(question, shots, strip=strip, wording=wording)
    text, marker = render_split(messages, render_chat)
    return Prompt(question.question_id, text, len(shots), marker, tuple(messages), choices)
