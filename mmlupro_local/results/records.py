"""The results file's schema, in one place: a `run` record (what produced the results,
with the identity that decides whether a file may be resumed) and one `result` record
per question. Written and read back through these types only.

Schema 1 is what every release so far has written; a file of another version is
refused with a clear message rather than half-read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mmlupro_local.errors import MmluProError

SCHEMA = 1
TOOL_NAME = "mmlupro-local"
DEFAULT_BATCH = 512  # the engine's default prompt batch, left out of a mode's flags


class SchemaError(MmluProError):
    """A record that does not follow the schema."""


def check_schema(record: Mapping[str, Any]) -> None:
    version = record.get("schema")
    if version != SCHEMA:
        raise SchemaError(
            f"results schema {json.dumps(version)} is not one this mmlupro-local reads (it "
            f"reads schema {SCHEMA}); a newer release wrote it: upgrade mmlupro-local"
        )


@dataclass(frozen=True)
class Identity:
    """The settings that change results: a results file resumes only under the same."""

    model_sha256: str  # "" for a server's model (its files are not ours to hash)
    dataset_sha256: str
    style: str
    shots: int
    strip_options: bool
    extract_mode: str
    strip_thinking: bool
    max_tokens: int
    stop: str
    early_stop: bool
    batch: int
    flash_attn: bool
    kv_type: str
    gpu_layers: int
    parallel: int
    seed: int
    threads: int | None = None  # None: a file from before it was recorded
    lookup: int = 0
    # a server engine: its root URL (no credentials) and the model id requests name;
    # the in-process settings above do not apply to it
    server_url: str = ""
    server_model: str = ""
    method: str = "cot"  # or "logprob" (the leaderboard's letter choice, nothing generated)
    think_budget: int = 0  # think blocks closed after this many tokens; 0: never
    chat_template: str = ""  # the sha256 of a --chat-template file used instead of the model's

    @property
    def model_key(self) -> str:
        """What names the model: its file's hash, or the server and the model it served."""
        return f"{self.server_url} {self.server_model}" if self.server_url else self.model_sha256

    @property
    def mode(self) -> str:
        """The engine mode as flags: what, besides the model, changes greedy answers."""
        flags = [f"--parallel {self.parallel}"]
        if self.lookup:
            flags.append(f"--lookup {self.lookup}")
        if not self.server_url:
            flags += [] if self.flash_attn else ["--no-flash-attn"]
            flags += [] if self.kv_type == "f16" else [f"--kv-type {self.kv_type}"]
            flags += [] if self.batch == DEFAULT_BATCH else [f"--batch {self.batch}"]
            flags += [] if self.threads is None else [f"--threads {self.threads}"]
        return " ".join(flags)

    def to_json(self) -> dict[str, Any]:
        engine: dict[str, Any]
        if self.server_url:
            engine = {"kind": "server", "url": self.server_url, "model": self.server_model}
        else:
            engine = {"batch": self.batch, "flash_attn": self.flash_attn,
                      "kv_type": self.kv_type, "gpu_layers": self.gpu_layers}  # fmt: skip
            if self.threads is not None:
                engine["threads"] = self.threads
        engine["parallel"] = self.parallel
        if self.lookup:  # absent (files before it existed) means off
            engine["lookup"] = self.lookup
        generation: dict[str, Any] = {
            "decoding": "greedy" if self.method == "cot" else "none: each choice scored",
            "max_tokens": self.max_tokens,
            "stop": self.stop,
            "early_stop": self.early_stop,
        }
        if self.think_budget:  # absent (files before it existed) means none
            generation["think_budget"] = self.think_budget
        method = {"method": self.method} if self.method != "cot" else {}  # absent: cot
        return {
            **method,
            "model_sha256": self.model_sha256,
            "dataset_sha256": self.dataset_sha256,
            "prompt": {
                "style": self.style,
                "shots": self.shots,
                "strip_options": self.strip_options,
                **({"chat_template_sha256": self.chat_template} if self.chat_template else {}),
            },
            "extraction": {"mode": self.extract_mode, "strip_thinking": self.strip_thinking},
            "generation": generation,
            # batching and kernels change the floating-point path, so greedy choices can flip
            "engine": engine,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Identity:
        try:
            prompt, extraction = data["prompt"], data["extraction"]
            generation, engine = data["generation"], data["engine"]
            if engine.get("kind") == "server":
                engine = {"batch": 0, "flash_attn": False, "kv_type": "", "gpu_layers": 0,
                          "server_url": engine["url"], "server_model": engine["model"],
                          **engine}  # fmt: skip
            return cls(
                model_sha256=str(data["model_sha256"]),
                dataset_sha256=str(data["dataset_sha256"]),
                style=prompt["style"],
                shots=int(prompt["shots"]),
                strip_options=bool(prompt["strip_options"]),
                extract_mode=extraction["mode"],
                strip_thinking=bool(extraction["strip_thinking"]),
                max_tokens=int(generation["max_tokens"]),
                stop=generation["stop"],
                early_stop=bool(generation["early_stop"]),
                batch=int(engine["batch"]),
                flash_attn=bool(engine["flash_attn"]),
                kv_type=engine["kv_type"],
                gpu_layers=int(engine["gpu_layers"]),
                parallel=int(engine["parallel"]),
                seed=int(data["seed"]),
                threads=int(engine["threads"]) if "threads" in engine else None,
                lookup=int(engine.get("lookup", 0)),
                server_url=str(engine.get("server_url", "")),
                server_model=str(engine.get("server_model", "")),
                method=str(data.get("method", "cot")),
                think_budget=int(generation.get("think_budget", 0)),
                chat_template=str(prompt.get("chat_template_sha256", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"the run record's identity is incomplete ({exc})") from exc


# identity keys recorded only by later releases: a file without one resumes (it cannot
# say what it used), and the run record it gets now says what this session used
ADDED_LATER = frozenset({"engine.threads"})


def differences(
    expected: Mapping[str, Any], actual: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """Human-readable differences between two identities' JSON (the file's, then now)."""
    found = []
    for key in sorted(set(expected) | set(actual)):
        a, b = expected.get(key), actual.get(key)
        name = f"{prefix}{key}"
        if key not in expected and name in ADDED_LATER:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found.extend(differences(a, b, f"{name}."))
        elif a != b:
            found.append(f"{name}: {_short(a)} in the file, {_short(b)} now")
    return found


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 24 else text[:20] + '..."'


@dataclass(frozen=True)
class SampleInfo:
    seed: int
    per_category: int | None
    fraction: float | None
    categories: tuple[str, ...]
    description: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "per_category": self.per_category, "fraction": self.fraction,
                "categories": list(self.categories), "description": self.description,
                "size": self.size}  # fmt: skip


@dataclass(frozen=True)
class RunHeader:
    """One session's `run` record."""

    identity: Identity
    model: Mapping[str, Any]  # path, name, size, sha256, architecture, quantization...
    dataset: Mapping[str, Any]  # name, sha256, source, revision
    engine: Mapping[str, Any]  # what the engine said about itself
    sample: SampleInfo
    started: str
    resumed: bool
    tool_version: str
    command: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # the identity as a file holds it, when read from one: an older release's may lack
    # keys (ADDED_LATER) that `identity` fills in, and resuming compares against it
    read_identity: Mapping[str, Any] | None = None

    @property
    def identity_json(self) -> Mapping[str, Any]:
        return self.identity.to_json() if self.read_identity is None else self.read_identity

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "run",
            "schema": SCHEMA,
            "tool": {"name": TOOL_NAME, "version": self.tool_version},
            "started": self.started,
            "resumed": self.resumed,
            "identity": dict(self.identity_json),
            "model": dict(self.model),
            "dataset": dict(self.dataset),
            "engine": dict(self.engine),
            "sample": self.sample.to_json(),
            "command": list(self.command),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunHeader:
        check_schema(data)
        try:
            sample = data["sample"]
            return cls(
                identity=Identity.from_json(data["identity"]),
                read_identity=data["identity"],
                model=data["model"],
                dataset=data["dataset"],
                engine=data.get("engine") or {},
                sample=SampleInfo(
                    seed=int(sample["seed"]),
                    per_category=sample.get("per_category"),
                    fraction=sample.get("fraction"),
                    categories=tuple(sample.get("categories") or ()),
                    description=str(sample.get("description", "")),
                    size=int(sample["size"]),
                ),
                started=str(data.get("started", "")),
                resumed=bool(data.get("resumed")),
                tool_version=str(data.get("tool", {}).get("version", "")),
                command=tuple(data.get("command") or ()),
                warnings=tuple(data.get("warnings") or ()),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SchemaError(f"a run record is incomplete ({exc})") from exc


@dataclass(frozen=True)
class ResultRecord:
    """One question's result."""

    question_id: int
    category: str
    answer: str
    pred: str | None  # the extracted letter, None when nothing was extracted
    level: int  # extraction level 1-3, 0 for none
    correct: bool  # strict: an unextracted answer is wrong
    guess: str | None  # the official-compatible seeded guess when nothing was extracted
    guess_correct: bool
    n_options: int
    shots: int
    response: str
    thinking_chars: int = 0
    prompt_tokens: int = 0
    decoded_prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    decode_seconds: float = 0.0
    stop_reason: str = ""
    guessed_tokens: int = 0
    reasoning: str = ""  # a server's separate reasoning field, kept like a think block
    thinking_tokens: int = 0  # of generated_tokens, those inside think blocks
    think_cut: bool = False  # the think budget closed the block and forced the answer
    option_logprobs: Mapping[str, float] = field(default_factory=dict)  # --method logprob
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)  # keys of later releases

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "result"}
        for name in _RESULT_ORDER:
            data[name] = getattr(self, name)
        # written only when they say something, so that other records stay as they were
        if self.reasoning:  # only servers with a reasoning field write it
            data["reasoning"] = self.reasoning
        if self.thinking_tokens:
            data["thinking_tokens"] = self.thinking_tokens
        if self.think_cut:
            data["think_cut"] = True
        if self.option_logprobs:
            data["option_logprobs"] = dict(self.option_logprobs)
        return {**data, **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResultRecord:
        """The record, or SchemaError saying which field is wrong."""
        for name, types in _REQUIRED.items():
            if name not in data:
                raise SchemaError(f"no {name!r}")
            value = data[name]
            # bool is an int in Python: a question id or option count of true is no number
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                raise SchemaError(f"{name!r} is {json.dumps(value)[:40]}")
        if data["n_options"] < 1:
            raise SchemaError("'n_options' is below 1")
        values: dict[str, Any] = {name: data[name] for name in _REQUIRED}
        for name, default in _OPTIONAL.items():
            value = data.get(name, default)
            numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
            if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise SchemaError(f"{name!r} is {json.dumps(value)[:40]}")
            values[name] = value
        scores = values["option_logprobs"]
        if not isinstance(scores, Mapping) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()
        ):
            raise SchemaError(f"'option_logprobs' is {json.dumps(scores)[:40]}")
        extra = {k: v for k, v in data.items() if k not in _KNOWN}
        return cls(**values, extra=extra)


_REQUIRED: dict[str, tuple[type, ...]] = {
    "question_id": (int,),
    "category": (str,),
    "answer": (str,),
    "pred": (str, type(None)),
    "correct": (bool,),
    "n_options": (int,),
}
_OPTIONAL: dict[str, Any] = {
    "level": 0, "guess": None, "guess_correct": False, "shots": 0, "response": "",
    "thinking_chars": 0, "prompt_tokens": 0, "decoded_prompt_tokens": 0,
    "generated_tokens": 0, "seconds": 0.0, "decode_seconds": 0.0, "stop_reason": "",
    "guessed_tokens": 0, "reasoning": "", "thinking_tokens": 0, "think_cut": False,
    "option_logprobs": {},
}  # fmt: skip
_RESULT_ORDER = ("question_id", "category", "answer", "pred", "level", "correct", "guess",
                 "guess_correct", "n_options", "shots", "response", "thinking_chars",
                 "prompt_tokens", "decoded_prompt_tokens", "generated_tokens", "seconds",
                 "decode_seconds", "stop_reason", "guessed_tokens")  # fmt: skip
_KNOWN = {"type", "reasoning", "thinking_tokens", "think_cut", "option_logprobs", *_RESULT_ORDER}
