"""The kind "server": a model behind an OpenAI-compatible server (vLLM, SGLang,
llama-server, Ollama), probed once when opened. Its memory, threads and kernels are the
server's business; what it tells of itself sizes the run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmlupro_local.engine import Engine, EngineError
from mmlupro_local.engine.chat import served_variables
from mmlupro_local.engine.server import ServerSettings
from mmlupro_local.engine.server.descriptors import RESERVE, connection_room
from mmlupro_local.results.records import Identity, ResultRecord, ServerEngineIdentity
from mmlupro_local.run.targets import (
    EngineFactory,
    Given,
    Mode,
    Target,
    TargetOptionError,
    TargetSpec,
    kind,
)
from mmlupro_local.task.fitting import TokenCounts
from mmlupro_local.task.prompt import ChatRenderer

if TYPE_CHECKING:
    from mmlupro_local.engine.server.engine import ServerEngine
    from mmlupro_local.engine.server.pool import ServerPool
    from mmlupro_local.run.plan import RunPlan
    from mmlupro_local.run.request import RunRequest

# requests in flight when a server does not say how many it runs at once: vLLM's default
# --max-num-seqs (SGLang reports its own); a smaller server answers 429/503 and the
# engine sends fewer (engine.server.engine.Window)
SERVER_PARALLEL = 256


@kind("server")
@dataclass(frozen=True)
class ServerSpec(TargetSpec):
    settings: ServerSettings
    # more servers of the same model (replicas): questions are shared among them all
    more: tuple[ServerSettings, ...] = ()
    # servers differ in whether and how they return prompt log-probabilities
    scores_choices = False
    own_options = ("server", "server_model", "request_timeout", "retries")

    @classmethod
    def claims(cls, options: Mapping[str, Any]) -> bool:
        return bool(options.get("server"))

    @classmethod
    def from_options(
        cls, models: Sequence[str], options: Mapping[str, Any], given: Given
    ) -> list[TargetSpec]:
        """One spec for the --server URLs given (the first, and its replicas)."""
        if models:
            raise TargetOptionError(f"give MODEL ({models[0]}) or --server, not both")
        first, *more = (
            ServerSettings(
                url=url,
                model=options.get("server_model") or "",
                timeout=options.get("request_timeout", ServerSettings.timeout),
                retries=options.get("retries", ServerSettings.retries),
            )
            for url in options["server"]
        )
        return [cls(first, tuple(more))]

    @classmethod
    def refuse(cls, name: str, shown: str, other: type[TargetSpec]) -> str:
        if name == "think_budget":
            return (
                f"{shown} is applied by the in-process engine; with --server, set the "
                "server's own: llama-server --reasoning-budget N (vLLM and SGLang have none: "
                "cap the whole answer with --max-tokens)"
            )
        return (
            f"{shown} applies to the in-process engine; with --server, set it on the server "
            "(its own flags decide threads, offload and batching)"
        )

    @property
    def stem(self) -> str:
        """Named after the model asked for, else the server's host and port."""
        if self.settings.model:
            return self.settings.model.rsplit("/", 1)[-1].removesuffix(".gguf")
        return self.settings.root.split("://", 1)[1].replace(":", "-").replace("/", "-")

    @property
    def label(self) -> str:
        return " ".join(s.root for s in (self.settings, *self.more))

    def open(self, request: RunRequest, factory: EngineFactory | None) -> Target:
        return ServedModel((self.settings, *self.more), request)


class ServedModel(Target):
    def __init__(self, settings: tuple[ServerSettings, ...], request: RunRequest) -> None:
        from mmlupro_local.engine.server import server_engine

        self.root = settings[0].root
        self.replicas = tuple(s.root for s in settings[1:])
        self.engine: ServerEngine | ServerPool = server_engine(
            settings, seed=request.sample.seed, stop=request.answer.stop
        )
        self.chat = request.prompt.style == "chat"
        info = self.engine.info
        name = f"the model {info.model!r} at {self.root}"
        self.template_variables = served_variables(
            request.prompt.thinking, info.template_text, name
        )
        self.engine.use_template_kwargs(self.template_variables)
        self.fixed_ctx = info.n_ctx  # each request's context, as the server reports it
        # counts are the server's only when it tokenizes the very text it is sent
        self.exact_counts = info.tokenize is not None and bool(info.chat_template or not self.chat)
        trained = info.details.get("n_ctx_train")
        self.trained_ctx = int(trained) if isinstance(trained, int) else None

    def mode(self, request: RunRequest, recorded: Identity | None) -> Mode:
        if request.parallel is not None:
            parallel, line = request.parallel, ""
        else:
            slots = self.engine.info.slots
            said = (
                "the server's slots)"
                if slots
                else "the server does not say how many it serves at once)"
            )
            parallel = slots or SERVER_PARALLEL
            line = f"--parallel auto: {parallel} requests in flight ({said}"
        servers = 1 + len(self.replicas)
        room, limit = connection_room(parallel * servers)
        if room < parallel * servers:
            fitted = max(1, room // servers)
            line = (
                f"--parallel {parallel}: this process may open only {limit} files (its "
                f"descriptor limit, ulimit -n), so {fitted} requests go in flight per server; "
                f"for {parallel}, raise it first ('ulimit -n {parallel * servers + 2 * RESERVE}'"
                " in the shell that runs this)"
            )
            parallel = fitted
        return Mode(parallel, line=line)

    def engine_identity(self, plan: RunPlan) -> ServerEngineIdentity:
        return ServerEngineIdentity(
            url=self.root,
            model=self.engine.info.model,
            parallel=plan.parallel,
            replicas=self.replicas,
            served=self.engine.info.served,
        )

    def record(self) -> dict[str, Any]:
        info = self.engine.info
        record = {
            "name": info.model,
            "server": self.root,
            "kind": info.kind,
            "quantization": info.details.get("ftype"),
            "source": None,
        }
        if self.chat:  # the official chat form, rendered by the server's own template
            record["chat_template"] = "the server's"
        if self.template_variables:  # sent as chat_template_kwargs (--thinking)
            record["chat_template_variables"] = self.template_variables
        return record

    def start(self, plan: RunPlan) -> Engine:
        return self.engine

    def renderer(self) -> ChatRenderer:
        if self.engine.info.chat_template:
            return self.engine.render_chat
        return _plain_chat  # the server renders; this text only locates the shared prefix

    def context(self, ctx: int | None, warnings: list[str]) -> int | None:
        """--ctx within the server's own; none when the server cannot count (prompts are
        then sent whole)."""
        if not self.exact_counts:
            warnings.append(
                "the server cannot count tokens (no /tokenize, or a chat template it cannot "
                "render on its own): prompts are sent whole, never fitted to its context"
            )
            return None
        if ctx is not None and self.fixed_ctx is not None and ctx > self.fixed_ctx:
            raise EngineError(
                f"--ctx {ctx} is more than the server gives a request ({self.fixed_ctx} tokens)",
                setting="server_ctx",
            )
        return ctx or self.fixed_ctx

    def counts(self, engine: Engine) -> TokenCounts:
        """The server's own counts, many at once; a rough count where it cannot count."""
        if self.exact_counts:
            return TokenCounts(engine.count_tokens, self.engine.count_many)
        return TokenCounts(_estimate_tokens, exact=False)

    def check_cuts(self, longest: str, warnings: list[str]) -> None:
        """A server that cannot count tokens is probed for quietly cut prompts."""
        if self.exact_counts:
            return
        cut = self.engine.find_cut(longest)
        if cut is not None:
            warnings.append(
                f"the server quietly cuts prompts longer than about {cut} tokens (a probe "
                "with the longest prompt sent twice); questions it cuts will be errors"
            )

    def after_run(self, answered: list[ResultRecord]) -> list[str]:
        members = self.engine.members
        said = _answers_in_reasoning(answered)
        for member in members:
            window, root = member.window, member.settings.root
            who = "the server" if len(members) == 1 else root
            if member.capped:
                said.append(
                    f"{who} sent more than the --max-tokens budget in {member.capped} "
                    "answers, which were cut at it (stop_reason length)"
                )
            if member.failed:
                said.append(
                    f"{root} failed after {member.answered} answers ({member.failed}); "
                    "its questions went to the other servers"
                )
            if window.slowed:
                said.append(
                    f"{who} made requests wait ever longer for a first token (queueing what it "
                    f"cannot run): in flight was cut {window.slowed} times, to {window.low} of "
                    f"--parallel {window.limit}, ending at {window.size}"
                )
            if window.shed:
                said.append(
                    f"{who} asked for fewer requests {window.shed} times (429 or 503): in "
                    f"flight went down to {window.low} of --parallel {window.limit} and ended "
                    f"at {window.size}; those questions were asked again. Start it with more "
                    "room (vLLM --max-num-seqs, SGLang --max-running-requests) or give --parallel"
                )
        if len(members) > 1:
            said.append(
                "answers per server: "
                + ", ".join(f"{m.settings.root} {m.answered}" for m in members)
            )
        return said

    def used(self) -> dict[str, Any]:
        members = self.engine.members
        return {
            "servers": [
                {
                    "url": m.settings.root,
                    "answered": m.answered,
                    "parallel": m.window.describe(),
                    **({"failed": m.failed} if m.failed else {}),
                }
                for m in members
            ]
        }

    def close(self) -> None:
        self.engine.close()


def _answers_in_reasoning(records: list[ResultRecord]) -> list[str]:
    """Most answers empty but for a separate reasoning field: a server's reasoning parser
    took the whole answer, and every question is scored as a guess (issue 26, case 27)."""
    hidden = sum(not r.response.strip() and bool(r.reasoning.strip()) for r in records)
    if not records or hidden * 2 <= len(records):
        return []
    return [
        f"warning: {hidden} of {len(records)} answers came only in the server's reasoning field, "
        "with no answer text, so they were scored as guesses: its reasoning parser took "
        "the whole answer (vLLM --reasoning-parser, llama-server --reasoning-format); "
        "turn it off for this model, or use --style completion"
    ]


def _estimate_tokens(text: str) -> int:
    """A server that cannot count: a rough count (4 characters a token), only to size
    nothing; such prompts are never fitted."""
    return len(text) // 4 + 1


def _plain_chat(messages: list[dict[str, str]]) -> str:
    return "".join(f"<{m['role']}>\n{m['content']}\n" for m in messages) + "<assistant>\n"
