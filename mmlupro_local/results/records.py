"""The results file's schema, in one place: a `run` record (what produced the results,
with the identity that decides whether a file may be resumed) and one `result` record
per question. Written and read back through these types only; each record's JSON form
is derived from its fields (results.jsonform), so a field is declared once.

Schema 1 is what every release so far has written; a file of another version is
refused with a clear message rather than half-read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from mmlupro_local.engine.shapes import exact_rule, known_rule
from mmlupro_local.errors import MmluProError
from mmlupro_local.results.jsonform import OMIT_DEFAULT, SKIP, FormError, form, from_json, to_json

SCHEMA = 1
TOOL_NAME = "mmlupro-local"


class SchemaError(MmluProError):
    """A record that does not follow the schema."""


def check_schema(record: Mapping[str, Any]) -> None:
    version = record.get("schema")
    if version != SCHEMA:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA
        why = (
            "a newer release wrote it: upgrade mmlupro-local"
            if newer
            else "it was not written by mmlupro-local, or was changed by hand"
        )
        raise SchemaError(
            f"results schema {json.dumps(version)} is not one this mmlupro-local reads (it "
            f"reads schema {SCHEMA}); {why}"
        )


# -- the identity: the settings that change results, composed of the task's parts and
# the part of the engine kind that ran it


@dataclass(frozen=True)
class PromptIdentity:
    style: str
    shots: int
    strip_options: bool
    # the sha256 of a --chat-template file used instead of the model's
    chat_template: str = field(
        default="", metadata=form(key="chat_template_sha256", omit_default=True)
    )
    # the prompt's wording when not MMLU-Pro's official English: "mmlu-prox-ko"...
    wording: str = field(default="", metadata=OMIT_DEFAULT)
    # --method logprob: what stands between "Answer:" and a letter ("Answer: A"); absent in
    # files of the releases that wrote "Answer:A" against the harness
    target_delimiter: str = field(default="", metadata=OMIT_DEFAULT)
    # --thinking: the chat template's switch or effort ("": the template's own default)
    thinking: str = field(default="", metadata=OMIT_DEFAULT)


@dataclass(frozen=True)
class ExtractionIdentity:
    mode: str  # "" with nothing generated (--method logprob)
    strip_thinking: bool


@dataclass(frozen=True)
class GenerationIdentity:
    decoding: str  # "greedy", or "none: each choice scored"
    max_tokens: int
    stop: str | tuple[str, ...]  # one stop string as itself (files of schema 1 keep their bytes)
    early_stop: bool
    think_budget: int = field(default=0, metadata=OMIT_DEFAULT)  # 0: think blocks never cut

    @property
    def generates(self) -> bool:
        """Answers were generated (not choices scored: then nothing may be)."""
        return self.max_tokens > 0


# the default prompt batch of the releases before canonical shapes, for their flags
EARLIER_BATCH = 512


@dataclass(frozen=True, kw_only=True)
class LocalEngineIdentity:
    """The in-process engine. Under an exact shape rule (engine.shapes) every token is
    computed the same way whatever --parallel, --lookup and --draft, so those only say
    how it ran; before it (a file with no `shapes`), batching changed the arithmetic, and with
    it some greedy answers."""

    platform: ClassVar[str] = "local"  # where the model ran, as evaluation schemas name it
    batch: int = field(default=0, metadata=OMIT_DEFAULT)  # the prompt batch before rules
    shapes: str = field(default="", metadata=OMIT_DEFAULT)  # the rule; "": before rules
    flash_attn: bool | None  # None: llama.cpp's automatic choice (an Intel Mac's GPU)
    kv_type: str
    gpu_layers: int
    # how ggml splits the work among threads changes the order of its sums; None: a
    # file from before it was recorded
    threads: int | None = field(default=None, metadata=OMIT_DEFAULT)
    parallel: int = 1
    lookup: int = field(default=0, metadata=OMIT_DEFAULT)  # absent: off
    # the draft model whose guesses were checked (--draft): its file name and sha256
    draft: str = field(default="", metadata=OMIT_DEFAULT)

    @property
    def exact(self) -> bool:
        return exact_rule(self.shapes)

    def arithmetic(self) -> str | None:
        """Under an exact shape rule, what changes greedy answers besides the model (not
        --parallel, --lookup or --draft); None without one."""
        return " ".join([f"shapes {self.shapes}", *self.flags()]) if self.exact else None

    def model_key(self, model_sha256: str) -> str:
        return model_sha256

    @staticmethod
    def resumes(file: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
        """What keeps a file of this engine from resuming: any difference, but for how
        it ran (--parallel, --lookup, --draft) under the same exact shape rule; and a file of an
        earlier rule (or of none) whose answers this release computes otherwise."""
        engine, engine_now = file.get("engine") or {}, now.get("engine") or {}
        was = str(engine.get("shapes", ""))
        if engine_now.get("shapes") and not known_rule(was):
            why = (
                f"whose decode shapes ({was}) computed some tokens otherwise than this "
                f"release's ({engine_now['shapes']})"
                if was
                else "whose greedy answers changed with --parallel, --lookup and --batch; this "
                "release computes every token the same way in every mode (canonical decode "
                "shapes)"
            )
            return [
                f"it was made by an earlier release, {why}, so some answers differ from that "
                "file's. Start a new --out, and `compare` the two runs to see which"
            ]
        same_rule = engine.get("shapes") == engine_now.get("shapes") and exact_rule(
            str(engine_now.get("shapes", ""))
        )
        return differences(file, now, ignore=HOW_IT_RAN if same_rule else frozenset())

    def engine_name(self, engine: Mapping[str, Any]) -> tuple[str, str]:
        """The inference engine and its version, from the run's engine record."""
        return "llama.cpp (llama-cpp-python)", str(engine.get("llama_cpp_python") or "unknown")

    def flags(self) -> list[str]:
        """What, besides --parallel and --lookup, changes greedy answers, as flags."""
        flags = ["--no-flash-attn"] if self.flash_attn is False else []
        flags += [] if self.kv_type == "f16" else [f"--kv-type {self.kv_type}"]
        flags += [] if self.batch in (0, EARLIER_BATCH) else [f"--batch {self.batch}"]
        return flags + ([] if self.threads is None else [f"--threads {self.threads}"])


@dataclass(frozen=True)
class ServerEngineIdentity:
    """A model behind a server: its root URL (never credentials) and the model id
    requests name; the server's own settings are its business."""

    platform: ClassVar[str] = "server"
    exact: ClassVar[bool] = False  # its batching is the server's: no shape rule holds
    kind: str = "server"
    url: str = ""
    model: str = ""
    parallel: int = 1  # per server
    lookup: int = field(default=0, metadata=OMIT_DEFAULT)
    # the other servers (--server given more than once) the questions were shared with
    replicas: tuple[str, ...] = field(default=(), metadata=OMIT_DEFAULT)
    # what the server says of the model behind the id (ServerInfo.served)
    served: Mapping[str, Any] = field(default_factory=dict, metadata=OMIT_DEFAULT)

    def model_key(self, model_sha256: str) -> str:
        return f"{self.url} {self.model}"

    @classmethod
    def resumes(cls, file: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
        """What keeps a file of a server from resuming: the model and what the servers
        say of it; the servers may be some of the file's (a pool that lost one)."""
        engine, engine_now = file.get("engine") or {}, now.get("engine") or {}
        if _engine_kind(engine_now) is not cls:
            return differences(file, now)
        return _servers_differ(engine, engine_now) + differences(file, now, ignore=SERVERS)

    def arithmetic(self) -> str | None:
        return None

    def engine_name(self, engine: Mapping[str, Any]) -> tuple[str, str]:
        """The server's software (vLLM, llama-server...) as its probe named it."""
        return str(engine.get("kind") or self.kind), str(engine.get("version") or "unknown")

    def flags(self) -> list[str]:
        return []


EngineIdentity = LocalEngineIdentity | ServerEngineIdentity


# the engine identities by the kind they record ("local": the in-process engine, which
# records none)
ENGINE_KINDS: dict[str, type[LocalEngineIdentity] | type[ServerEngineIdentity]] = {
    "local": LocalEngineIdentity,
    ServerEngineIdentity.kind: ServerEngineIdentity,
}


def _engine_kind(data: Mapping[str, Any]) -> type[LocalEngineIdentity] | type[ServerEngineIdentity]:
    return ENGINE_KINDS.get(str(data.get("kind", "local")), LocalEngineIdentity)


@dataclass(frozen=True, kw_only=True)
class Identity:
    """The settings that change results: a results file resumes only under the same."""

    method: str = field(default="cot", metadata=OMIT_DEFAULT)  # or "logprob"
    model_sha256: str  # "" for a server's model (its files are not ours to hash)
    dataset_sha256: str
    prompt: PromptIdentity
    extraction: ExtractionIdentity
    generation: GenerationIdentity
    engine: EngineIdentity = field(metadata=form(choose=_engine_kind))
    seed: int

    @property
    def model_key(self) -> str:
        """What names the model: its file's hash, or the server and the model it served."""
        return self.engine.model_key(self.model_sha256)

    def mode(self) -> str:
        """The engine mode as flags."""
        flags = [f"--parallel {self.engine.parallel}"]
        flags += [f"--lookup {self.engine.lookup}"] if self.engine.lookup else []
        draft = getattr(self.engine, "draft", "")
        flags += [f"--draft {draft.split(' ')[0]}"] if draft else []
        return " ".join(flags + self.engine.flags())

    @property
    def exact(self) -> bool:
        """Computed under an exact shape rule: --parallel and --lookup changed nothing."""
        return self.engine.exact

    def arithmetic(self) -> str:
        """What, besides the model, changes greedy answers: the engine mode, except that
        under an exact shape rule --parallel and --lookup change nothing."""
        return self.engine.arithmetic() or self.mode()

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Identity:
        try:
            return from_json(cls, data)
        except FormError as exc:
            raise SchemaError(f"the run record's identity is incomplete ({exc})") from exc


# identity keys recorded only by later releases: a file without one resumes (it cannot
# say what it used), and the run record it gets now says what this session used
ADDED_LATER = frozenset({"engine.threads", "engine.served"})
# what an absent key means, for saying what differs (issue 26, case 28)
ABSENT = {"method": "cot", "prompt.target_delimiter": "none"}


# how a question was computed, not what: under the same exact shape rule they change no answer
HOW_IT_RAN = frozenset({"engine.parallel", "engine.lookup", "engine.draft"})


def resume_differences(file: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Why a file of identity `file` cannot be resumed under `now` (JSON forms): [] if it
    can. The file's engine kind says what may differ (its `resumes` rule)."""
    engine = file.get("engine") or {}
    return _engine_kind(engine).resumes(file, now)


# which servers answered: a pooled file resumes on some of them (issue 32, case 4)
SERVERS = frozenset({"engine.url", "engine.replicas"})


def _servers_differ(file: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """[] when the servers now are some of the file's (a pool that lost a member goes on
    with the rest: the model and what they say of it are compared as for any server);
    else which ones differ, each named whole."""
    was = [str(file.get("url", "")), *map(str, file.get("replicas") or ())]
    new = [str(now.get("url", "")), *map(str, now.get("replicas") or ())]
    added = [url for url in new if url not in was]
    if not added:
        return []
    return [
        f"servers: the file's were {', '.join(was)}; now {', '.join(new)} ("
        f"{', '.join(added)} not among them). A resume may leave servers out, not add them"
    ]


def differences(
    expected: Mapping[str, Any],
    actual: Mapping[str, Any],
    prefix: str = "",
    ignore: frozenset[str] = frozenset(),
) -> list[str]:
    """Human-readable differences between two identities' JSON (the file's, then now)."""
    found = []
    for key in sorted(set(expected) | set(actual)):
        a, b = expected.get(key), actual.get(key)
        name = f"{prefix}{key}"
        if (key not in expected and name in ADDED_LATER) or name in ignore:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found.extend(differences(a, b, f"{name}.", ignore))
        elif a != b:
            a, b = (
                (ABSENT.get(name, a) if a is None else a),
                (ABSENT.get(name, b) if b is None else b),
            )
            found.append(f"{name}: {_short(a)} in the file, {_short(b)} now")
    return found


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 24 else text[:20] + '..."'


@dataclass(frozen=True, kw_only=True)
class SampleInfo:
    seed: int
    per_category: int | None = None
    fraction: float | None = None
    categories: tuple[str, ...] = ()
    description: str = ""
    size: int
    # run --precision: the sample grows until the estimate is this precise (points)
    precision: float | None = field(default=None, metadata=OMIT_DEFAULT)
    max_questions: int | None = field(default=None, metadata=OMIT_DEFAULT)


@dataclass(frozen=True, kw_only=True)
class RunHeader:
    """One session's `run` record."""

    type: str = "run"
    schema: int = SCHEMA
    tool: Mapping[str, Any] = field(default_factory=lambda: {"name": TOOL_NAME, "version": ""})
    started: str = ""
    resumed: bool = False
    identity: Identity
    model: Mapping[str, Any]  # path, name, size, sha256, architecture, quantization...
    dataset: Mapping[str, Any]  # name, sha256, source, revision
    engine: Mapping[str, Any] = field(default_factory=dict)  # what the engine said of itself
    sample: SampleInfo
    command: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # the identity as a file holds it, when read from one: an older release's may lack
    # keys (ADDED_LATER) that `identity` fills in, and resuming compares against it
    read_identity: Mapping[str, Any] | None = field(default=None, metadata=SKIP)

    @property
    def tool_version(self) -> str:
        return str(self.tool.get("version", ""))

    @property
    def identity_json(self) -> Mapping[str, Any]:
        return self.identity.to_json() if self.read_identity is None else self.read_identity

    def to_json(self) -> dict[str, Any]:
        return {**to_json(self), "identity": dict(self.identity_json)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunHeader:
        check_schema(data)
        if not isinstance(data.get("identity"), Mapping):
            raise SchemaError("a run record is incomplete (no 'identity')")
        identity = Identity.from_json(data["identity"])
        sample = data.get("sample")
        if isinstance(sample, Mapping) and _not_finite(sample.get("precision")):
            # releases that took --precision nan or inf ran one round and wrote it: no goal
            data = {**data, "sample": {k: v for k, v in sample.items() if k != "precision"}}
        try:
            given = {"identity": identity, "read_identity": data["identity"]}
            return from_json(cls, data, given=given)
        except FormError as exc:
            raise SchemaError(f"a run record is incomplete ({exc})") from exc


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


@dataclass(frozen=True, kw_only=True)
class SessionEnd:
    """What a session actually used, once its answers are in (a server's concurrency as
    it adapted, the answers per server); written only when there is something to say.
    Readers before it skip records of a type they do not know."""

    type: str = "end"
    schema: int = SCHEMA
    finished: str
    written: int  # results this session wrote
    used: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


# what computing an answer cost: the clock and the prompt tokens decoded (a warm prefix
# cache decodes fewer); they may differ between reruns that give the same answers
COST_FIELDS = frozenset({"seconds", "decode_seconds", "prompt_seconds", "decoded_prompt_tokens"})


@dataclass(frozen=True, kw_only=True)
class ResultRecord:
    """One question's result. The fields without a default must be in every record; the
    ones that say nothing unless set are written only then, so that other records stay
    as they were."""

    question_id: int
    category: str
    answer: str
    pred: str | None  # the extracted letter, None when nothing was extracted
    level: int = 0  # extraction level 1-3, 0 for none
    correct: bool  # strict: an unextracted answer is wrong
    guess: str | None = None  # the official-compatible seeded guess when nothing was extracted
    guess_correct: bool = False
    n_options: int
    shots: int = 0
    response: str = ""
    thinking_chars: int = 0
    prompt_tokens: int = 0
    decoded_prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    decode_seconds: float = 0.0
    stop_reason: str = ""
    guessed_tokens: int = 0
    # a server's separate reasoning field, kept like a think block
    reasoning: str = field(default="", metadata=OMIT_DEFAULT)
    thinking_tokens: int = field(default=0, metadata=OMIT_DEFAULT)  # inside think blocks
    # the think budget closed the block and forced the answer
    think_cut: bool = field(default=False, metadata=OMIT_DEFAULT)
    option_logprobs: Mapping[str, float] = field(
        default_factory=dict, metadata=OMIT_DEFAULT
    )  # --method logprob
    # the part of decode_seconds spent reading the prompt (0: not recorded, or all cached)
    prompt_seconds: float = field(default=0.0, metadata=OMIT_DEFAULT)
    # keys of later releases, kept as they were
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, metadata=SKIP)

    def to_json(self) -> dict[str, Any]:
        return {"type": "result", **to_json(self), **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResultRecord:
        """The record, or SchemaError saying which field is wrong."""
        try:
            record = from_json(
                cls, data, given={"extra": {k: v for k, v in data.items() if k not in _KNOWN}}
            )
        except FormError as exc:
            raise SchemaError(str(exc)) from None
        if record.n_options < 1:
            raise SchemaError("'n_options' is below 1")
        return record


_KNOWN = {"type", *(f.name for f in fields(ResultRecord))}
