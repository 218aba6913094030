"""What a user asked a run to do, checked once. A setting left to the run ("auto") is
None here; run.plan.settle decides it, once, into a RunPlan."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from mmlupro_local.config import PREFIX_CACHE_MAX_GB
from mmlupro_local.datasets.dataset import EMBEDDED_NAME
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.engine import CTX_STEP
from mmlupro_local.errors import MmluProError
from mmlupro_local.run.targets import TargetSpec
from mmlupro_local.task.methods import Method, MethodName, method_named
from mmlupro_local.task.prompt import PromptSettings
from mmlupro_local.task.settings import AnswerSettings
from mmlupro_local.task.wording import Wording

MAX_PARALLEL = 1024  # the most any kind takes (TargetSpec.max_parallel)
RESULTS_DIR = "mmlupro-results"


@dataclass(frozen=True)
class RunRequest:
    target: TargetSpec  # what is evaluated: a registered kind (run.targets)
    out: Path
    dataset: str = EMBEDDED_NAME
    sample: SampleSpec = field(default_factory=SampleSpec)
    prompt: PromptSettings = field(default_factory=PromptSettings)
    answer: AnswerSettings = field(default_factory=AnswerSettings)
    method: MethodName = "cot"
    max_tokens: int | None = None  # None: the official budget, plus any think budget
    # close think blocks after this many tokens (0: never); None: by the chat template
    think_budget: int | None = None
    ctx: int | None = None  # None: fit the longest prompt and the budget
    parallel: int | None = None  # questions in flight together; None: the target's rule
    # run --precision: extend the sample until the estimate's 95 % interval is within
    # this many points (run.precision), at most max_questions
    precision: float | None = None
    max_questions: int | None = None
    prefix_cache: bool = True
    prefix_cache_gb: float = PREFIX_CACHE_MAX_GB
    command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise RunRequestError("the generation budget must be at least 1 token")
        if self.ctx is not None and self.ctx < CTX_STEP:
            raise RunRequestError(f"the context must hold at least {CTX_STEP} tokens")
        bound = self.target.max_parallel
        if self.parallel is not None and not 1 <= self.parallel <= bound:
            raise RunRequestError(
                f"--parallel must be between 1 and {bound} for {self.target.kind} models"
            )
        refusal = self.answering.refusal(
            parallel=self.parallel,
            scores_choices=self.target.scores_choices,
            target=self.target.label,
        )
        if refusal:
            raise RunRequestError(refusal)
        if self.precision is not None and self.precision <= 0:
            raise RunRequestError("--precision must be more than 0 points")
        if (
            self.precision is not None
            and self.sample.per_category is None
            and self.sample.fraction is None
        ):
            raise RunRequestError(
                "--precision grows a sample: give --per-category or --fraction, not --full"
            )

    def worded(self, wording: Wording) -> RunRequest:
        """The same, its answers read in `wording` (a dataset's language): its stop word,
        answer phrase and extraction."""
        return replace(self, answer=replace(self.answer, wording=wording, stop=wording.stop))

    @property
    def answering(self) -> Method:
        """The method, as the class that knows how it answers."""
        return method_named(self.method)


class RunRequestError(MmluProError):
    """A run's settings contradict each other or are out of range."""


def default_out(
    stem: str,
    style: str,
    shots: int,
    seed: int,
    folder: Path = Path(RESULTS_DIR),
    method: MethodName = "cot",
) -> Path:
    """The results file a run writes when --out is not given, named after what it
    evaluates (TargetSpec.stem) and the settings that tell its files apart."""
    kind = method_named(method).file_infix
    return folder / f"{stem}.{kind}{style}.{shots}shot.seed{seed}.jsonl"
