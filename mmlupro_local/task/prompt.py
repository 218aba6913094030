"""The official MMLU-Pro 5-shot chain-of-thought prompt, and its chat form.

Completion style is TIGER-Lab's evaluate_from_local.py to the byte: header, three blank
lines, the first k validation exemplars of the question's category, then the question
ending in "Answer: Let's think step by step.". In another wording (task.wording: an
MMLU-ProX language) it is lm-evaluation-harness's `mmlu_prox` rendering to the byte: the
same blocks in that language's words. Chat style is the popular OpenAI-API runner's
multi-turn form, rendered through the model's own chat template.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from mmlupro_local.datasets.questions import LETTERS, Question
from mmlupro_local.engine.chat import Thinking
from mmlupro_local.errors import MmluProError
from mmlupro_local.task.wording import OFFICIAL, Wording, split_label

Style = Literal["completion", "chat"]
STYLES: tuple[Style, ...] = get_args(Style)
MAX_SHOTS = 5

Message = dict[str, str]
ChatRenderer = Callable[[list[Message]], str]
TokenCounter = Callable[[str], int]


class PromptError(MmluProError):
    """The prompt cannot be built as asked (no template, context too small...)."""


@dataclass(frozen=True)
class PromptSettings:
    style: Style = "completion"
    shots: int = MAX_SHOTS
    strip_options: bool = False
    # chat style: the template's thinking switch or effort (None: the template's default)
    thinking: Thinking | None = None

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise PromptError(f"style must be one of {', '.join(STYLES)}, not {self.style!r}")
        if self.thinking is not None and self.style != "chat":
            raise PromptError(
                f"--thinking {self.thinking} is a chat template's setting: add --style chat"
            )
        if not 0 <= self.shots <= MAX_SHOTS:
            raise PromptError(f"shots must be between 0 and {MAX_SHOTS}, not {self.shots}")


@dataclass(frozen=True)
class Prompt:
    question_id: int
    text: str
    shots: int  # exemplars actually used (fewer than asked when the context forced it)
    prefix_chars: int  # text[:prefix_chars] is shared by every question of the category
    messages: tuple[Message, ...] = ()  # chat style: what the template rendered into text
    choices: tuple[str, ...] = ()  # --method logprob: the continuations scored after text


def exemplars(validation: Sequence[Question], category: str, k: int) -> list[Question]:
    """The first k validation rows of the category, in question-id (file) order."""
    rows = sorted((q for q in validation if q.category == category), key=lambda q: q.question_id)
    return rows[:k]


def _options(question: Question, strip: bool, wording: Wording) -> list[str]:
    options = question.choices if wording.drops_padding else question.options
    return [o.strip() for o in options] if strip else list(options)


def _completion_block(
    question: Question, wording: Wording, *, strip: bool, with_answer: bool
) -> str:
    text = f"{wording.question_label}\n{question.question}\n{wording.options_label}\n"
    for letter, option in zip(LETTERS, _options(question, strip, wording), strict=False):
        text += f"{letter}. {option}\n"
    if with_answer:
        # the official script replaces every occurrence, not only the leading one
        cot = question.cot_content.replace(wording.exemplar_lead, wording.question_end)
        return text + cot + "\n\n"
    return text + wording.question_end


def completion_prefix(
    category: str,
    shots: Sequence[Question],
    *,
    strip: bool = False,
    wording: Wording = OFFICIAL,
) -> str:
    text = wording.heading(category) + wording.header_gap
    blocks = (_completion_block(s, wording, strip=strip, with_answer=True) for s in shots)
    return text + "".join(blocks)


def completion_prompt(
    question: Question,
    shots: Sequence[Question],
    *,
    strip: bool = False,
    wording: Wording = OFFICIAL,
) -> str:
    prefix = _shared_prefix(question.category, tuple(shots), strip, wording)
    return prefix + _completion_block(question, wording, strip=strip, with_answer=False)


@functools.lru_cache(maxsize=64)
def _shared_prefix(
    category: str, shots: tuple[Question, ...], strip: bool, wording: Wording
) -> str:
    """A category's prefix, rendered once (a full run builds 12,032 prompts on 14)."""
    return completion_prefix(category, shots, strip=strip, wording=wording)


def _chat_user(question: Question, strip: bool, wording: Wording) -> str:
    text = f"{wording.question_label} {question.question}\n{wording.options_label} "
    for letter, option in zip(LETTERS, _options(question, strip, wording), strict=False):
        text += f"{letter}. {option}\n"
    return text.strip()


def _chat_answer(shot: Question, wording: Wording) -> str:
    """The exemplar's chain of thought after the answer label ("Answer: Let's think...")."""
    answer_tag, thought = split_label(wording.question_end)
    lead_tag = split_label(wording.exemplar_lead)[0]
    cot = shot.cot_content or thought
    cot = cot[len(lead_tag) :] if cot.startswith(lead_tag) else cot
    return answer_tag + cot.strip()


def chat_messages(
    question: Question,
    shots: Sequence[Question],
    *,
    strip: bool = False,
    wording: Wording = OFFICIAL,
) -> list[Message]:
    messages = [{"role": "system", "content": wording.heading(question.category)}]
    for shot in shots:
        messages.append({"role": "user", "content": _chat_user(shot, strip, wording)})
        messages.append({"role": "assistant", "content": _chat_answer(shot, wording)})
    messages.append({"role": "user", "content": _chat_user(question, strip, wording)})
    return messages


_SENTINEL = "\x00MMLUPRO-QUESTION\x00"


def build_prompt(
    question: Question,
    validation: Sequence[Question],
    settings: PromptSettings,
    *,
    shots: int | None = None,
    render_chat: ChatRenderer | None = None,
    wording: Wording = OFFICIAL,
) -> Prompt:
    k = settings.shots if shots is None else shots
    examples = exemplars(validation, question.category, k)
    strip = settings.strip_options
    if settings.style == "completion":
        text = completion_prompt(question, examples, strip=strip, wording=wording)
        prefix = len(completion_prefix(question.category, examples, strip=strip, wording=wording))
        return Prompt(question.question_id, text, len(examples), prefix)
    if render_chat is None:
        raise PromptError("chat style needs the model's chat template (give --model)")
    messages = chat_messages(question, examples, strip=strip, wording=wording)
    text, marker = render_split(messages, render_chat)
    return Prompt(question.question_id, text, len(examples), marker, tuple(messages))


def render_split(messages: list[Message], render_chat: ChatRenderer) -> tuple[str, int]:
    """The rendered text, and where the last message (the question) starts in it: what
    comes before is shared by every question given the same earlier messages."""
    text = render_chat(messages)
    placeholder = render_chat([*messages[:-1], {"role": "user", "content": _SENTINEL}])
    marker = placeholder.find(_SENTINEL)
    if marker < 0 or text[:marker] != placeholder[:marker]:
        raise PromptError(
            "the chat template puts question-dependent text before the question; "
            "it cannot share a prefix across questions"
        )
    return text, marker


def fit_prompt(
    question: Question,
    validation: Sequence[Question],
    settings: PromptSettings,
    *,
    count_tokens: TokenCounter,
    limit: int,
    render_chat: ChatRenderer | None = None,
    wording: Wording = OFFICIAL,
) -> Prompt:
    """Drop exemplars one at a time until the prompt is shorter than `limit` tokens
    (context minus generation budget), as the official script does."""
    for k in range(settings.shots, -1, -1):
        prompt = build_prompt(
            question, validation, settings, shots=k, render_chat=render_chat, wording=wording
        )
        needed = count_tokens(prompt.text)
        if needed < limit:
            return prompt
    raise PromptError(
        f"question {question.question_id} does not fit even with 0 shots: its prompt is "
        f"{needed} tokens and only {limit} are left after the generation budget. "
        "Raise --ctx or lower --max-tokens."
    )
