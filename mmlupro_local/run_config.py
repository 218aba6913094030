"""What a run is asked to do: its settings, checked once, and the identity they give
its results file (the settings that change results, so a file resumes only under them)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from mmlupro_local.config import PREFIX_CACHE_MAX_GB
from mmlupro_local.datasets.dataset import EMBEDDED_NAME, Dataset
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.engine import EngineSettings
from mmlupro_local.engine.server import ServerSettings
from mmlupro_local.errors import MmluProError
from mmlupro_local.fitting import CTX_STEP
from mmlupro_local.model.hardware import Backend, EngineMode, auto_mode
from mmlupro_local.results.records import Identity
from mmlupro_local.task.prompt import PromptSettings
from mmlupro_local.task.settings import MAX_TOKENS, THINK_BUDGET, AnswerSettings, Method

MAX_PARALLEL = 64
AutoSetting = Literal["parallel", "lookup", "threads"]


@dataclass(frozen=True)
class RunConfig:
    model: Path | None  # a GGUF file; None with `server`
    out: Path
    server: ServerSettings | None = None  # evaluate the model a server serves instead
    model_source: str = ""  # the hub reference it was downloaded from, if any
    dataset: str = EMBEDDED_NAME
    sample: SampleSpec = field(default_factory=SampleSpec)
    prompt: PromptSettings = field(default_factory=PromptSettings)
    answer: AnswerSettings = field(default_factory=AnswerSettings)
    max_tokens: int | None = None  # None: the official budget, plus any think budget
    method: Method = "cot"
    chat_template: Path | None = None  # a Jinja file used instead of the model's template
    engine: EngineSettings = field(default_factory=lambda: EngineSettings(threads=1))
    ctx: int | None = None  # None: fit the longest prompt and the budget
    parallel: int = 1
    # settings the run decides (the rule, or the file it resumes): "parallel", "lookup",
    # "threads"; the values above are then placeholders
    auto: frozenset[AutoSetting] = frozenset()
    mode_reason: str = ""  # how parallel, lookup and threads were chosen (recorded)
    rule_bytes: int = 0  # the model size the rule reads (several models: the largest); 0: this one
    prefix_cache: bool = True
    memory_check: bool = True  # refuse a model and context larger than this machine's memory
    prefix_cache_gb: float = PREFIX_CACHE_MAX_GB
    command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise RunConfigError("the generation budget must be at least 1 token")
        if self.method == "logprob" and (
            self.server is not None or self.parallel != 1 or self.engine.lookup
        ):
            raise RunConfigError("--method logprob scores one question at a time, in-process")
        if self.ctx is not None and self.ctx < CTX_STEP:
            raise RunConfigError(f"the context must hold at least {CTX_STEP} tokens")
        # 0: as many as the server serves at once (only with a server)
        if not (1 if self.server is None else 0) <= self.parallel <= MAX_PARALLEL:
            raise RunConfigError(f"parallel must be between 1 and {MAX_PARALLEL}")
        if (self.model is None) == (self.server is None):
            raise RunConfigError("give either a model file or a server, not both or neither")

    @property
    def budget(self) -> int:
        """Tokens a question may generate: --max-tokens, else the official budget plus
        the think budget (so thinking never eats the answer's share); 0 when scoring."""
        if self.method == "logprob":
            return 0
        if self.max_tokens is not None:
            return self.max_tokens
        return MAX_TOKENS + (self.answer.think_budget or 0)


class RunConfigError(MmluProError):
    """A run's settings contradict each other or are out of range."""


def identity(
    config: RunConfig, model_hash: str, dataset: Dataset, server: tuple[str, str] | None = None
) -> Identity:
    """The settings that change results: a results file resumes only under the same ones."""
    g, e = config.answer, config.engine
    local = Identity(
        model_sha256=model_hash,
        dataset_sha256=dataset.sha256,
        style=config.prompt.style,
        shots=config.prompt.shots,
        strip_options=config.prompt.strip_options,
        extract_mode=g.extract_mode,
        strip_thinking=g.strip_thinking,
        max_tokens=config.budget,
        stop=g.stop,
        early_stop=g.early_stop,
        batch=e.batch,
        flash_attn=e.flash_attn,
        kv_type=e.kv_type,
        gpu_layers=e.gpu_layers,
        parallel=config.parallel,
        seed=config.sample.seed,
        # how ggml splits the work among threads changes the order of its sums
        threads=e.threads,
        lookup=e.lookup,
        think_budget=g.think_budget or 0,
        chat_template=_file_sha256(config.chat_template) if config.chat_template else "",
    )
    if config.method == "logprob":  # nothing is generated: no budget, stop or extraction
        local = replace(local, method="logprob", extract_mode="", strip_thinking=False, stop="",
                        early_stop=False, lookup=0, think_budget=0)  # fmt: skip
    if server is None:
        return local
    # the in-process settings mean nothing to a server
    return replace(local, batch=0, flash_attn=False, kv_type="", gpu_layers=0, threads=None,
                   lookup=0, server_url=server[0], server_model=server[1])  # fmt: skip


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def budget_floor(config: RunConfig) -> int:
    """A context no run of this config can be smaller than: the budget and a short prompt."""
    return config.budget + CTX_STEP


def settle_think_budget(config: RunConfig, template_thinks: bool) -> tuple[RunConfig, list[str]]:
    """Settle a think budget left to the template: THINK_BUDGET for one that thinks (the
    answer keeps the official budget on top, unless --max-tokens says otherwise)."""
    answer, notes = config.answer, list[str]()
    thinks = config.method == "cot" and config.prompt.style == "chat" and template_thinks
    if answer.think_budget is None:
        config = replace(config, answer=replace(answer, think_budget=THINK_BUDGET if thinks else 0))
        if thinks:
            raised = (f" and the budget raised from {MAX_TOKENS} to {config.budget} tokens "
                      f"(--max-tokens), the official {MAX_TOKENS} left for the answer"
                      if config.max_tokens is None else "")  # fmt: skip
            notes.append(f"the chat template opens think blocks: each is closed after "
                         f"{THINK_BUDGET} tokens (--think-budget){raised}")  # fmt: skip
    budget = config.answer.think_budget or 0
    if budget and config.max_tokens is not None and config.max_tokens <= budget:
        notes.append(f"--max-tokens {config.max_tokens} is not above --think-budget {budget}: "
                     "a model that thinks that long never reaches its answer")  # fmt: skip
    return config, notes


def settle_mode(
    config: RunConfig, *, backend: Backend, recorded: Identity | None
) -> tuple[RunConfig, str]:
    """Decide the settings left to the run: from the identity of the file it resumes, so
    that a file finishes as it began whatever this machine is, else by the rule
    (hardware.auto_mode). The model file must exist (run() reads it first). Returns the
    settled config and a line saying what was chosen."""
    assert config.model is not None
    auto, engine = config.auto, config.engine
    size = config.rule_bytes or config.model.stat().st_size
    rule = auto_mode(backend, engine.threads, size, config.sample.per_category)
    threads = engine.threads
    if "threads" in auto and recorded is not None and recorded.threads is not None:
        threads = recorded.threads
    chosen: Identity | EngineMode = rule if recorded is None else recorded
    parallel = chosen.parallel if "parallel" in auto else config.parallel
    lookup = chosen.lookup if "lookup" in auto else engine.lookup
    decided = auto & {"parallel", "lookup"}
    if config.method == "logprob":  # one question at a time, nothing generated
        parallel, lookup, reason = 1, 0, "--method logprob scores one question at a time"
        line = ""
    elif not decided and threads == engine.threads:  # given flags (--reference...)
        reason, line = "", ""
    elif recorded is not None:
        reason = f"as recorded in {config.out}, which this run resumes"
        line = (f"engine mode: --parallel {parallel} --lookup {lookup} --threads {threads}, "
                f"{reason} (the rule would choose {rule.flags} here now: {rule.reason})")  # fmt: skip
    else:
        reason = rule.reason
        line = f"engine mode: --parallel {parallel} --lookup {lookup} ({reason})"
    settled = replace(config, parallel=parallel, auto=frozenset(), mode_reason=reason,
                      engine=replace(engine, lookup=lookup, threads=threads))  # fmt: skip
    return settled, line
