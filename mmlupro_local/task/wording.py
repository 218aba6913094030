"""A benchmark's wording as one record: what the prompt says, where an answer starts and
how it is phrased. MMLU-Pro's official English is one `Wording`; each MMLU-ProX language
is a row of data (task/data/mmlu_prox.json, written from lm-evaluation-harness's own
`tasks/mmlu_prox/lang_libs.py` and task YAML files by scripts/prox_golden.py), so a
language is added by adding a row, not code.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from mmlupro_local.errors import MmluProError

PROX_DATA = "mmlu_prox.json"
PROX_PREFIX = "mmlu-prox-"


class WordingError(MmluProError):
    """A language this release has no wording for."""


@dataclass(frozen=True)
class Wording:
    name: str  # "mmlu-pro" (the official English), "mmlu-prox-ko"...
    language: str  # ISO 639-1
    header: str  # the first line; {subject} and {ans_suffix} filled per category
    header_gap: str  # what separates the header from the first exemplar
    question_label: str
    options_label: str
    question_end: str  # ends a prompt: the chain of thought starts after it
    exemplar_lead: str  # how an exemplar's cot_content starts (replaced by question_end)
    answer_phrase: str  # "the answer is ({})"
    answer_regex: str  # extraction level 1, the phrase with its letter as group 1
    answer_label: str  # extraction level 2: the label the letter follows ("Answer:")
    stop: tuple[str, ...]  # where a generation ends: the model starts a next question
    # categories in their own words (absent: the category's own name)
    subjects: tuple[tuple[str, str], ...] = ()
    drops_padding: bool = True  # "N/A" options left out, as the official script does

    def subject(self, category: str) -> str:
        return dict(self.subjects).get(category.replace(" ", "_"), category)

    def heading(self, category: str) -> str:
        suffix = self.answer_phrase.format("X")
        return self.header.format(subject=self.subject(category), ans_suffix=suffix)

    @property
    def forced_answer(self) -> str:
        """What closes a think block cut by the budget: the tag, then the answer phrase up
        to its letter, so the next token is the letter."""
        return "\n</think>\n\n" + self.answer_phrase.split("{}")[0]

    @property
    def longest_answer(self) -> int:
        """Characters an answer phrase with its letter can take (the stop watcher's window)."""
        return len(self.answer_phrase.format("X")) + 2


OFFICIAL = Wording(
    name="mmlu-pro",
    language="en",
    header=(
        "The following are multiple choice questions (with answers) about {subject}. "
        'Think step by step and then finish your answer with "the answer is (X)" '
        "where X is the correct letter choice."
    ),
    header_gap="\n\n\n\n",
    question_label="Question:",
    options_label="Options:",
    question_end="Answer: Let's think step by step.",
    exemplar_lead="A: Let's think step by step.",
    answer_phrase="The answer is ({})",
    answer_regex=r"answer is \(?([A-J])\)?",
    answer_label="nswer:",
    stop=("Question:",),
)


@functools.cache
def _prox_table() -> Mapping[str, Mapping[str, object]]:
    path = resources.files("mmlupro_local") / "task" / "data" / PROX_DATA
    table: Mapping[str, Mapping[str, object]] = json.loads(path.read_text(encoding="utf-8"))[
        "languages"
    ]
    return table


def prox_languages() -> tuple[str, ...]:
    return tuple(sorted(_prox_table()))


@functools.cache
def prox_wording(language: str) -> Wording:
    """MMLU-ProX in `language`, as lm-evaluation-harness's `mmlu_prox_<language>` task."""
    row = _prox_table().get(language)
    if row is None:
        raise WordingError(
            f"no MMLU-ProX wording for language {language!r}; known: {', '.join(prox_languages())}"
        )
    strings = [str(s) for s in row["strings"]]  # type: ignore[attr-defined]
    question_label, options_label, question_end, header, lead, phrase = strings
    return Wording(
        name=PROX_PREFIX + language,
        language=language,
        header=header,
        header_gap="\n",  # the harness's description ends in "\n"; nothing is put between
        question_label=question_label,
        options_label=options_label,
        question_end=question_end,
        exemplar_lead=lead,
        answer_phrase=phrase,
        answer_regex=str(row["answer_regex"]),
        answer_label=split_label(question_end)[0].rstrip(),
        stop=tuple(str(s) for s in row["until"]),  # type: ignore[attr-defined]
        subjects=tuple(dict(row["subjects"]).items()),  # type: ignore[call-overload]
        drops_padding=False,  # the harness shows every option that is not null
    )


def split_label(text: str) -> tuple[str, str]:
    """("Answer: ", "Let's think step by step.") from "Answer: Let's think step by step.":
    the label up to its colon with the space after it, and the rest."""
    label, colon, rest = re.split(r"([:\uff1a])", text, maxsplit=1)  # ASCII or full-width
    thought = rest.lstrip()
    return label + colon + rest[: len(rest) - len(thought)], thought


def wording_for(language: str | None) -> Wording:
    """The wording of a dataset: the official English unless it carries a language."""
    return OFFICIAL if language is None else prox_wording(language)
