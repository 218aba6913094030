"""What a run evaluates, as one seam. A kind is a `TargetSpec` (what the user named,
checked before anything loads), registered by name, that opens a `Target` (the model,
identified, ready to start an engine). `Target` has defaults for everything a kind
need not say (token counting, memory and cut checks, context, closing), so the runner
asks a target and never which kind it is. Kinds defer their optional imports (the
server's HTTP client) to the moment they are opened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from mmlupro_local.engine import Engine
from mmlupro_local.errors import MmluProError
from mmlupro_local.results.records import EngineIdentity, Identity
from mmlupro_local.task.prompt import ChatRenderer

if TYPE_CHECKING:
    from mmlupro_local.run.plan import RunPlan
    from mmlupro_local.run.request import RunRequest

EngineFactory = Callable[..., Engine]  # (model path, EngineSettings) -> an in-process engine
KINDS: dict[str, type[TargetSpec]] = {}
S = TypeVar("S", bound="type[TargetSpec]")


def kind(name: str) -> Callable[[S], S]:
    """Register a TargetSpec class under `name`."""

    def register(cls: S) -> S:
        cls.kind = name
        KINDS[name] = cls
        return cls

    return register


@dataclass(frozen=True)
class Mode:
    """How many questions are in flight and how the engine decodes them, decided once."""

    parallel: int
    lookup: int = 0
    threads: int = 0  # CPU threads of an in-process engine; 0 where none runs
    reason: str = ""  # how it was chosen (recorded in the run record)
    line: str = ""  # what the run prints about it


@dataclass(frozen=True)
class TargetSpec:
    """What the user named; `open` makes the Target."""

    kind: ClassVar[str] = ""
    # whether --method logprob can score choices through this kind
    scores_choices: ClassVar[bool] = True
    # the most questions in flight together it can take
    max_parallel: ClassVar[int] = 1024

    @property
    def stem(self) -> str:
        """What a default results file is named after."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """How messages name it."""
        return self.stem

    @property
    def rule_size(self) -> int:
        """The model size the engine mode's rule reads (0: the rule reads none)."""
        return 0

    def sized(self, size: int) -> TargetSpec:
        """The same, its mode chosen as for a model of `size` bytes (several models share
        the mode of the largest)."""
        return self

    def check(self) -> None:
        """What can be checked before anything loads (several models are all checked
        before the first runs)."""

    def open(self, request: RunRequest, factory: EngineFactory | None) -> Target:
        raise NotImplementedError


class Target:
    """A model ready to be evaluated. A kind overrides what it knows better."""

    key = ""  # what names the model in the identity and the prefix cache ("": not a file)
    template_thinks = False  # its chat template opens think blocks
    template_file: Path | None = None  # a --chat-template used instead of the model's
    fixed_ctx: int | None = None  # the context each request gets; None: the run chooses
    trained_ctx: int | None = None  # the context the model was trained on, when known

    def mode(self, request: RunRequest, recorded: Identity | None) -> Mode:
        """--parallel (and the engine's own mode) from the request, else from the file
        being resumed (`recorded`), else the kind's rule."""
        raise NotImplementedError

    def engine_identity(self, plan: RunPlan) -> EngineIdentity:
        raise NotImplementedError

    def record(self) -> dict[str, Any]:
        """What the run record says of the model."""
        raise NotImplementedError

    def start(self, plan: RunPlan) -> Engine:
        raise NotImplementedError

    def renderer(self) -> ChatRenderer:
        raise NotImplementedError

    def context(self, ctx: int | None, warnings: list[str]) -> int | None:
        """The context prompts must fit: --ctx; None: the run fits it to the prompts."""
        return ctx

    def counter(self, engine: Engine) -> Callable[[str], int]:
        """Counts a prompt's tokens as the model will see them."""
        return engine.count_tokens

    def count_many(self, engine: Engine) -> Callable[[Sequence[str]], list[int]] | None:
        """Counts many prompts at once, where the kind can do better than one by one."""
        return None

    def job_tokens(self, count: Callable[[str], int], text: str) -> int | None:
        """A prompt's count for the engine to check against (None: not checkable)."""
        return count(text)

    def check_memory(self, n_ctx: int, warnings: list[str], parallel: int = 1) -> None:
        """Refuse, or warn of, a context this machine cannot hold (in-process kinds): one
        in which each of `parallel` questions may reach n_ctx tokens."""

    def check_cuts(self, longest: str, warnings: list[str]) -> None:
        """Warn of prompts the kind would cut quietly (kinds that cannot count)."""

    @property
    def uses_prefix_cache(self) -> bool:
        """Whether the tool's own prefix cache applies (a server keeps its own)."""
        return False

    def after_run(self) -> list[str]:
        """What the run should say once the answers are in (how a server held up)."""
        return []

    def used(self) -> dict[str, Any]:
        """What the session actually used where it differs from what it was given (a
        server's concurrency as it adapted), for the file's end record; {}: nothing."""
        return {}

    def close(self) -> None:
        """Release what `open` took (the engine `start` made is closed by the run)."""


class TemplateError(MmluProError):
    """A --chat-template file that cannot be used."""


def read_template(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read the chat template {path}: {exc}") from None
    if not text.strip():
        raise TemplateError(f"the chat template {path} is empty; give a Jinja template file")
    return text


def template_thinks(template: str | None) -> bool:
    """A template that writes or opens think blocks belongs to a model that thinks."""
    return bool(template) and "<think>" in str(template)


# the kinds this release has (each registers itself)
from mmlupro_local.run.targets import gguf as gguf  # noqa: E402
from mmlupro_local.run.targets import server as server  # noqa: E402
