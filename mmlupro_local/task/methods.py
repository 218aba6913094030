"""How a question is answered, one class per method: its prompts, what it asks the
engine, the record it makes, its part of the identity and its budget rule. The plan,
the runner and the CLI ask a `Method`; none of them asks which one it is.

- `ChainOfThought` ("cot"): the official generated chain of thought, extracted.
- `LetterChoice` ("logprob"): the Open LLM Leaderboard v2's letter choice, each letter
  scored by log-probability (task.letter_prompt); nothing is generated.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Literal, get_args

from mmlupro_local.datasets.questions import Question
from mmlupro_local.engine import Engine, Generation, Job, NewWatcher
from mmlupro_local.errors import MmluProError
from mmlupro_local.results.records import ExtractionIdentity, GenerationIdentity, ResultRecord
from mmlupro_local.task.fitting import prepare_letter_prompts, prepare_prompts
from mmlupro_local.task.letter_prompt import build_letter_prompt, target_delimiter
from mmlupro_local.task.prompt import ChatRenderer, Prompt, PromptSettings, build_prompt, fit_prompt
from mmlupro_local.task.scoring import result_record
from mmlupro_local.task.settings import MAX_TOKENS, THINK_BUDGET, AnswerSettings
from mmlupro_local.task.stopping import StopWatcher
from mmlupro_local.task.wording import Wording

MethodName = Literal["cot", "logprob"]
METHOD_NAMES: tuple[MethodName, ...] = get_args(MethodName)
Answers = Iterator[tuple[int, Generation]]
Counter = Callable[[str], int]


@dataclass(frozen=True, kw_only=True)
class Fitting:
    """What fitting prompts into a context needs to know, besides the questions."""

    budget: int
    ctx: int | None  # the context to fit (None: fit it to the prompts)
    asked_ctx: int | None  # --ctx as given
    render: ChatRenderer | None
    trained_ctx: int | None
    count: Counter
    warnings: list[str]  # appended to
    pad: bool
    ctx_name: str


class Method(ABC):
    name: ClassVar[MethodName]
    generates: ClassVar[bool]  # writes an answer (False: scores given continuations)
    # in-process and one question at a time, whatever the engine mode rule says
    one_at_a_time: ClassVar[str] = ""
    # what tells a default results file of this method apart ("": the official)
    file_infix: ClassVar[str] = ""

    def refusal(self, *, parallel: int | None, scores_choices: bool, target: str) -> str:
        """Why a run of these settings cannot use this method ("": it can)."""
        return ""

    def target_delimiter(self, style: str) -> str:
        """What stands between the prompt and a scored choice ("": none, or no choices)."""
        return ""

    @abstractmethod
    def settle(
        self,
        answer: AnswerSettings,
        *,
        think_budget: int | None,
        max_tokens: int | None,
        thinks: bool,
    ) -> tuple[AnswerSettings, int, list[str]]:
        """The answer settings with their think budget, the generation budget and what
        is worth a warning. `thinks`: a chat template that opens think blocks."""

    @abstractmethod
    def identity(
        self, answer: AnswerSettings, budget: int
    ) -> tuple[ExtractionIdentity, GenerationIdentity]:
        """Its part of the identity: how answers are read and generated."""

    @abstractmethod
    def build(
        self,
        question: Question,
        validation: Sequence[Question],
        settings: PromptSettings,
        *,
        wording: Wording,
        render: ChatRenderer | None,
        count: Counter | None = None,
        limit: int | None = None,
    ) -> Prompt:
        """One question's prompt (`prompt` prints it); with `count` and `limit`, fitted
        to `limit` tokens where the method can drop exemplars."""

    @abstractmethod
    def forced(
        self,
        question: Question,
        record: ResultRecord,
        validation: Sequence[Question],
        settings: PromptSettings,
        *,
        wording: Wording,
        render: ChatRenderer | None,
    ) -> tuple[str, str]:
        """The prompt a recorded answer followed and the text it answered with, for
        teacher forcing another model along it (`divergence`, `quants`)."""

    @abstractmethod
    def prepare(
        self,
        todo: list[Question],
        validation: Sequence[Question],
        settings: PromptSettings,
        wording: Wording,
        fitting: Fitting,
    ) -> tuple[dict[int, Prompt], int]:
        """Every prompt of a run and the context to open."""

    @abstractmethod
    def ask(
        self,
        engine: Engine,
        jobs: list[Job],
        *,
        budget: int,
        watchers: NewWatcher,
        should_stop: Callable[[], bool],
    ) -> Answers:
        """What the engine answers, job by job as each is done."""

    def record(
        self,
        question: Question,
        prompt: Prompt,
        generation: Generation,
        *,
        answer: AnswerSettings,
        seed: int,
        watcher: StopWatcher | None,
    ) -> ResultRecord:
        return result_record(
            question,
            prompt,
            generation,
            seed=seed,
            extract_mode=answer.extract_mode,
            strip_thinking=answer.strip_thinking,
            wording=answer.wording,
            thinking_tokens=watcher.thinking_tokens if watcher else 0,
            think_cut=watcher.think_cut if watcher else False,
        )


class ChainOfThought(Method):
    name = "cot"
    generates = True

    def settle(
        self,
        answer: AnswerSettings,
        *,
        think_budget: int | None,
        max_tokens: int | None,
        thinks: bool,
    ) -> tuple[AnswerSettings, int, list[str]]:
        notes: list[str] = []
        if think_budget is None:  # left to the template: THINK_BUDGET for one that thinks
            think_budget = THINK_BUDGET if thinks else 0
            if thinks:
                notes.append(_think_note(raised=max_tokens is None))
        # the official budget on top of thinking, so thinking never eats the answer's share
        budget = max_tokens if max_tokens is not None else MAX_TOKENS + think_budget
        if think_budget and max_tokens is not None and max_tokens <= think_budget:
            notes.append(
                f"--max-tokens {max_tokens} is not above --think-budget {think_budget}: "
                "a model that thinks that long never reaches its answer"
            )
        return replace(answer, think_budget=think_budget), budget, notes

    def identity(
        self, answer: AnswerSettings, budget: int
    ) -> tuple[ExtractionIdentity, GenerationIdentity]:
        return ExtractionIdentity(
            mode=answer.extract_mode, strip_thinking=answer.strip_thinking
        ), GenerationIdentity(
            decoding="greedy",
            max_tokens=budget,
            stop=answer.stop[0] if len(answer.stop) == 1 else answer.stop,
            early_stop=answer.early_stop,
            think_budget=answer.think_budget,
        )

    def build(
        self,
        question: Question,
        validation: Sequence[Question],
        settings: PromptSettings,
        *,
        wording: Wording,
        render: ChatRenderer | None,
        count: Counter | None = None,
        limit: int | None = None,
    ) -> Prompt:
        if count is not None and limit is not None:
            return fit_prompt(
                question,
                validation,
                settings,
                count_tokens=count,
                limit=limit,
                render_chat=render,
                wording=wording,
            )
        return build_prompt(question, validation, settings, render_chat=render, wording=wording)

    def forced(
        self,
        question: Question,
        record: ResultRecord,
        validation: Sequence[Question],
        settings: PromptSettings,
        *,
        wording: Wording,
        render: ChatRenderer | None,
    ) -> tuple[str, str]:
        # the exemplars the run kept (a prompt fitted to a small context drops some)
        prompt = build_prompt(
            question, validation, settings, shots=record.shots, render_chat=render, wording=wording
        )
        return prompt.text, record.response

    def prepare(
        self,
        todo: list[Question],
        validation: Sequence[Question],
        settings: PromptSettings,
        wording: Wording,
        fitting: Fitting,
    ) -> tuple[dict[int, Prompt], int]:
        return prepare_prompts(
            todo,
            validation,
            settings,
            max_tokens=fitting.budget,
            ctx=fitting.ctx,
            render=fitting.render,
            trained_ctx=fitting.trained_ctx,
            count_tokens=fitting.count,
            warnings=fitting.warnings,
            pad=fitting.pad,
            ctx_name=fitting.ctx_name,
            wording=wording,
        )

    def ask(
        self,
        engine: Engine,
        jobs: list[Job],
        *,
        budget: int,
        watchers: NewWatcher,
        should_stop: Callable[[], bool],
    ) -> Answers:
        return engine.generate_many(
            jobs, max_tokens=budget, new_watcher=watchers, should_stop=should_stop
        )


def _think_note(*, raised: bool) -> str:
    more = (
        f" and the budget raised from {MAX_TOKENS} to {MAX_TOKENS + THINK_BUDGET} tokens "
        f"(--max-tokens), the official {MAX_TOKENS} left for the answer"
        if raised
        else ""
    )
    return (
        f"the chat template opens think blocks: each is closed after {THINK_BUDGET} "
        f"tokens (--think-budget){more}"
    )


class LetterChoice(Method):
    name = "logprob"
    generates = False
    one_at_a_time = "--method logprob scores one question at a time"
    file_infix = "logprob."

    def refusal(self, *, parallel: int | None, scores_choices: bool, target: str) -> str:
        if (parallel or 1) != 1:
            return "--method logprob scores one question at a time, in-process"
        if not scores_choices:
            return f"--method logprob scores choices in-process, which {target} cannot"
        return ""

    def target_delimiter(self, style: str) -> str:
        return target_delimiter(style)

    def settle(
        self,
        answer: AnswerSettings,
        *,
        think_budget: int | None,
        max_tokens: int | None,
        thinks: bool,
    ) -> tuple[AnswerSettings, int, list[str]]:
        return replace(answer, think_budget=0), 0, []  # nothing generated, nothing thought

    def identity(
        self, answer: AnswerSettings, budget: int
    ) -> tuple[ExtractionIdentity, GenerationIdentity]:
        # nothing generated: no budget, stop or extraction
        return ExtractionIdentity(mode="", strip_thinking=False), GenerationIdentity(
            decoding="none: each choice scored",
            max_tokens=0,
            stop="",
            early_stop=False,
            think_budget=0,
        )

    def build(
        self,
        question: Question,
        validation: Sequence[Question],
        settings: PromptSettings,
        *,
        wording: Wording,
        render: ChatRenderer | None,
        count: Counter | None = None,
        limit: int | None = None,
    ) -> Prompt:
        # never cut: the harness would drop their start, which no longer is the method
        return build_letter_prompt(
            question, validation, settings, render_chat=render, wording=wording
        )

    def forced(
        self,
        question: Question,
        record: ResultRecord,
        validation: Sequence[Question],
        settings: PromptSettings,
        *,
        wording: Wording,
        render: ChatRenderer | None,
    ) -> tuple[str, str]:
        # the answer is the continuation chosen: one position, the letter's distribution
        prompt = self.build(question, validation, settings, wording=wording, render=render)
        chosen = next(c for c in prompt.choices if c.strip() == record.pred)
        return prompt.text, chosen

    def prepare(
        self,
        todo: list[Question],
        validation: Sequence[Question],
        settings: PromptSettings,
        wording: Wording,
        fitting: Fitting,
    ) -> tuple[dict[int, Prompt], int]:
        return prepare_letter_prompts(
            todo,
            validation,
            settings,
            ctx=fitting.asked_ctx,
            render=fitting.render,
            trained_ctx=fitting.trained_ctx,
            count_tokens=fitting.count,
            warnings=fitting.warnings,
            wording=wording,
        )

    def ask(
        self,
        engine: Engine,
        jobs: list[Job],
        *,
        budget: int,
        watchers: NewWatcher,
        should_stop: Callable[[], bool],
    ) -> Answers:
        return engine.score_many(jobs, should_stop=should_stop)


class MethodError(MmluProError):
    """A method this release does not have."""


METHODS: dict[str, Method] = {m.name: m for m in (ChainOfThought(), LetterChoice())}


def method_named(name: str) -> Method:
    found = METHODS.get(name)
    if found is None:
        raise MethodError(f"no method {name!r}; choose one of {', '.join(METHODS)}")
    return found
