"""What a run evaluates, as one seam. A kind is a `TargetSpec` (what the user named,
checked before anything loads), registered by name, that reads its own options and
refuses those that are not its own, and opens a `Target` (the model, identified, ready
to start an engine). Both are abstract: a kind that leaves a method out fails when it
is defined, not mid-run. `Target` has defaults for everything a kind need not say
(token counting, memory and cut checks, context, closing), so the CLI and the runner
ask a kind and never which one it is. Kinds defer their optional imports (the server's
HTTP client) to the moment they are opened.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from mmlupro_local.engine import Engine
from mmlupro_local.errors import MmluProError
from mmlupro_local.results.records import EngineIdentity, Identity, ResultRecord
from mmlupro_local.task.fitting import TokenCounts
from mmlupro_local.task.prompt import ChatRenderer

if TYPE_CHECKING:
    from mmlupro_local.run.plan import RunPlan
    from mmlupro_local.run.request import RunRequest

EngineFactory = Callable[..., Engine]  # (model path, EngineSettings) -> an in-process engine
# how the user gave the first of these options (its flag or config key); None: none given
Given = Callable[[Sequence[str]], "str | None"]
KINDS: dict[str, type[TargetSpec]] = {}
S = TypeVar("S", bound="type[TargetSpec]")


def kind(name: str) -> Callable[[S], S]:
    """Register a TargetSpec class under `name`; one that leaves an abstract method out
    fails here, when its module is imported."""

    def register(cls: S) -> S:
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise TypeError(f"target kind {name!r} leaves out {', '.join(missing)}")
        cls.kind = name
        KINDS[name] = cls
        return cls

    return register


class TargetOptionError(MmluProError):
    """Options that do not go together, or not with the kind they name."""


def specs_from_options(
    models: Sequence[str], options: Mapping[str, Any], given: Given
) -> list[TargetSpec]:
    """What a run evaluates: the kind whose own options are given (else the default
    kind) reads MODELS and its options, after refusing the other kinds' options."""
    claimed = [k for k in KINDS.values() if not k.default and k.claims(options)]
    chosen = claimed[0] if claimed else next(k for k in KINDS.values() if k.default)
    for other in KINDS.values():
        for name in other.own_options if other is not chosen else ():
            shown = given((name,))
            if shown:
                raise TargetOptionError(chosen.refuse(name, shown, other))
    return chosen.from_options(models, options, given)


@dataclass(frozen=True)
class Mode:
    """How many questions are in flight and how the engine decodes them, decided once."""

    parallel: int
    lookup: int = 0
    threads: int = 0  # CPU threads of an in-process engine; 0 where none runs
    reason: str = ""  # how it was chosen (recorded in the run record)
    line: str = ""  # what the run prints about it


@dataclass(frozen=True)
class TargetSpec(ABC):
    """What the user named; `open` makes the Target."""

    kind: ClassVar[str] = ""
    default: ClassVar[bool] = False  # the kind a run is of when no other claims it
    # the run's options only this kind takes: another kind refuses them
    own_options: ClassVar[tuple[str, ...]] = ()
    # whether --method logprob can score choices through this kind
    scores_choices: ClassVar[bool] = True
    # the most questions in flight together it can take
    max_parallel: ClassVar[int] = 1024

    @classmethod
    def claims(cls, options: Mapping[str, Any]) -> bool:
        """Whether the run's options name this kind (the default kind needs not)."""
        return False

    @classmethod
    @abstractmethod
    def from_options(
        cls, models: Sequence[str], options: Mapping[str, Any], given: Given
    ) -> list[TargetSpec]:
        """The specs MODELS and the run's options name (TargetOptionError: they cannot)."""

    @classmethod
    def refuse(cls, name: str, shown: str, other: type[TargetSpec]) -> str:
        """Why the option `name` (given as `shown`) of `other` kind does not go with this one."""
        return f"{shown} is for {other.kind} models, not {cls.kind} ones"

    @property
    @abstractmethod
    def stem(self) -> str:
        """What a default results file is named after."""

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
        return None  # a default: nothing to do for most kinds

    @abstractmethod
    def open(self, request: RunRequest, factory: EngineFactory | None) -> Target:
        """The model, identified and ready to start an engine."""


class Target(ABC):
    """A model ready to be evaluated. A kind overrides what it knows better."""

    key = ""  # what names the model in the identity and the prefix cache ("": not a file)
    template_thinks = False  # its chat template opens think blocks
    template_file: Path | None = None  # a --chat-template used instead of the model's
    fixed_ctx: int | None = None  # the context each request gets; None: the run chooses
    trained_ctx: int | None = None  # the context the model was trained on, when known

    @abstractmethod
    def mode(self, request: RunRequest, recorded: Identity | None) -> Mode:
        """--parallel (and the engine's own mode) from the request, else from the file
        being resumed (`recorded`), else the kind's rule."""

    @abstractmethod
    def engine_identity(self, plan: RunPlan) -> EngineIdentity:
        """Its engine's part of the identity."""

    @abstractmethod
    def record(self) -> dict[str, Any]:
        """What the run record says of the model."""

    @abstractmethod
    def start(self, plan: RunPlan) -> Engine:
        """The engine that answers (closed by the run)."""

    @abstractmethod
    def renderer(self) -> ChatRenderer:
        """Renders chat messages as the model's template does."""

    def context(self, ctx: int | None, warnings: list[str]) -> int | None:
        """The context prompts must fit: --ctx; None: the run fits it to the prompts."""
        return ctx

    def counts(self, engine: Engine) -> TokenCounts:
        """Counts prompts' tokens as the model will see them (`exact` False: a rough
        count, never checked against a context)."""
        return TokenCounts(engine.count_tokens)

    def check_memory(self, n_ctx: int, warnings: list[str], parallel: int = 1) -> None:
        """Refuse, or warn of, a context this machine cannot hold (in-process kinds): one
        in which each of `parallel` questions may reach n_ctx tokens."""
        return None  # a default: nothing to do for most kinds

    def check_cuts(self, longest: str, warnings: list[str]) -> None:
        """Warn of prompts the kind would cut quietly (kinds that cannot count)."""
        return None  # a default: nothing to do for most kinds

    @property
    def uses_prefix_cache(self) -> bool:
        """Whether the tool's own prefix cache applies (a server keeps its own)."""
        return False

    def after_run(self, answered: list[ResultRecord]) -> list[str]:
        """What the run should say once the answers (`answered`, this session's) are in:
        how a server held up."""
        return []

    def used(self) -> dict[str, Any]:
        """What the session actually used where it differs from what it was given (a
        server's concurrency as it adapted), for the file's end record; {}: nothing."""
        return {}

    def close(self) -> None:
        """Release what `open` took (the engine `start` made is closed by the run)."""
        return None  # a default: nothing to do for most kinds


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
