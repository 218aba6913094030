"""A run's settings decided once: `settle` turns what was asked (a RunRequest, where
"auto" is None), the opened target and the file being resumed into a frozen RunPlan
whose every value is concrete. The runner, the identity and the engine read the plan."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from mmlupro_local.datasets.dataset import Dataset
from mmlupro_local.engine import CTX_STEP
from mmlupro_local.results.records import (
    ExtractionIdentity,
    GenerationIdentity,
    Identity,
    PromptIdentity,
)
from mmlupro_local.run.request import RunRequest
from mmlupro_local.run.targets import Mode, Target
from mmlupro_local.task.settings import MAX_TOKENS, THINK_BUDGET, AnswerSettings


@dataclass(frozen=True)
class RunPlan:
    request: RunRequest  # what was asked: out, dataset, sample, prompt, method, ctx...
    answer: AnswerSettings  # with its think budget decided
    budget: int  # tokens a question may generate; 0 when choices are scored
    parallel: int  # questions in flight together
    lookup: int  # most prompt-lookup guesses checked per step; 0: off
    threads: int  # CPU threads of an in-process engine; 0 where none runs
    mode_reason: str = ""  # how the mode was chosen, recorded ("": as given)
    notes: tuple[str, ...] = ()  # what settling found worth a warning
    lines: tuple[str, ...] = ()  # what the run says about its choices

    @property
    def budget_floor(self) -> int:
        """A context no run of this plan can be smaller than: the budget and a short prompt."""
        return self.budget + CTX_STEP

    def identity(self, target: Target, dataset: Dataset) -> Identity:
        """The settings that change results: a results file resumes only under the same."""
        request, answer = self.request, self.answer
        template = target.template_file
        scored = request.method == "logprob"  # nothing generated: no budget, stop or extraction
        return Identity(
            method=request.method,
            model_sha256=target.key,
            dataset_sha256=dataset.sha256,
            prompt=PromptIdentity(
                style=request.prompt.style,
                shots=request.prompt.shots,
                strip_options=request.prompt.strip_options,
                chat_template=_file_sha256(template) if template else "",
            ),
            extraction=ExtractionIdentity(
                mode="" if scored else answer.extract_mode,
                strip_thinking=not scored and answer.strip_thinking,
            ),
            generation=GenerationIdentity(
                decoding="none: each choice scored" if scored else "greedy",
                max_tokens=self.budget,
                stop="" if scored else answer.stop,
                early_stop=not scored and answer.early_stop,
                think_budget=answer.think_budget,
            ),
            engine=target.engine_identity(self),
            seed=request.sample.seed,
        )


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def settle(request: RunRequest, target: Target, recorded: Identity | None) -> RunPlan:
    """Decide what the request left open: the engine mode (the target's rule, or what
    `recorded`, the identity of the file resumed, says), then the think budget (the
    target's chat template) and with it the generation budget."""
    mode: Mode = target.mode(request, recorded)
    answer, notes = _think_budget(request, target.template_thinks)
    if request.method == "logprob":
        budget = 0
    elif request.max_tokens is not None:
        budget = request.max_tokens
    else:  # the official budget on top of thinking, so thinking never eats the answer's share
        budget = MAX_TOKENS + answer.think_budget
    notes += _budget_notes(request, answer, budget)
    return RunPlan(
        request=request,
        answer=answer,
        budget=budget,
        parallel=mode.parallel,
        lookup=mode.lookup,
        threads=mode.threads,
        mode_reason=mode.reason,
        notes=tuple(notes),
        lines=(mode.line,) if mode.line else (),
    )


def _think_budget(request: RunRequest, template_thinks: bool) -> tuple[AnswerSettings, list[str]]:
    """A think budget left to the template: THINK_BUDGET for one that thinks."""
    thinks = request.method == "cot" and request.prompt.style == "chat" and template_thinks
    if request.method == "logprob":
        return replace(request.answer, think_budget=0), []
    if request.think_budget is not None:
        return replace(request.answer, think_budget=request.think_budget), []
    if not thinks:
        return replace(request.answer, think_budget=0), []
    raised = (
        f" and the budget raised from {MAX_TOKENS} to {MAX_TOKENS + THINK_BUDGET} tokens "
        f"(--max-tokens), the official {MAX_TOKENS} left for the answer"
        if request.max_tokens is None
        else ""
    )
    note = (
        f"the chat template opens think blocks: each is closed after {THINK_BUDGET} "
        f"tokens (--think-budget){raised}"
    )
    return replace(request.answer, think_budget=THINK_BUDGET), [note]


def _budget_notes(request: RunRequest, answer: AnswerSettings, budget: int) -> list[str]:
    think = answer.think_budget
    if think and request.max_tokens is not None and request.max_tokens <= think:
        return [
            f"--max-tokens {request.max_tokens} is not above --think-budget {think}: "
            "a model that thinks that long never reaches its answer"
        ]
    return []
