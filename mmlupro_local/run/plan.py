"""A run's settings decided once: `settle` turns what was asked (a RunRequest, where
"auto" is None), the opened target and the file being resumed into a frozen RunPlan
whose every value is concrete. The runner, the identity and the engine read the plan."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mmlupro_local.datasets.dataset import Dataset
from mmlupro_local.engine import CTX_STEP
from mmlupro_local.results.records import Identity, PromptIdentity
from mmlupro_local.run.request import RunRequest
from mmlupro_local.run.targets import Mode, Target
from mmlupro_local.task.settings import AnswerSettings
from mmlupro_local.task.wording import OFFICIAL


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
    thinks: bool = False  # the chat template opens think blocks (and --thinking is not off)

    @property
    def budget_floor(self) -> int:
        """A context no run of this plan can be smaller than: the budget and a short prompt."""
        return self.budget + CTX_STEP

    def identity(self, target: Target, dataset: Dataset) -> Identity:
        """The settings that change results: a results file resumes only under the same."""
        request, answer = self.request, self.answer
        template = target.template_file
        extraction, generation = request.answering.identity(answer, self.budget)
        return Identity(
            method=request.method,
            model_sha256=target.key,
            dataset_sha256=dataset.sha256,
            prompt=PromptIdentity(
                style=request.prompt.style,
                shots=request.prompt.shots,
                strip_options=request.prompt.strip_options,
                chat_template=_file_sha256(template) if template else "",
                wording="" if answer.wording == OFFICIAL else answer.wording.name,
                target_delimiter=request.answering.target_delimiter(request.prompt.style),
                thinking=request.prompt.thinking or "",
            ),
            extraction=extraction,
            generation=generation,
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
    thinks = request.prompt.style == "chat" and target.template_thinks
    answer, budget, notes = request.answering.settle(
        request.answer,
        think_budget=request.think_budget,
        max_tokens=request.max_tokens,
        thinks=thinks,
    )
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
        thinks=thinks and request.answering.generates,
    )
