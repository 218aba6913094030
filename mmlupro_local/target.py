"""What a run evaluates: a GGUF file run in-process, or a model behind a server. Each
says how it is identified in results, how its chat prompts are rendered and counted,
and which context prompts must fit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmlupro_local.engine import Engine, EngineSettings
from mmlupro_local.engine.server import ServerSettings, server_engine
from mmlupro_local.errors import MmluProError
from mmlupro_local.model.fingerprint import model_record, model_sha256
from mmlupro_local.model.gguf import GgufInfo, read_gguf
from mmlupro_local.model.memory import check_fits, estimate, machine_memory
from mmlupro_local.task.prompt import ChatRenderer

EngineFactory = Callable[[Path, EngineSettings], Engine]


class LocalModel:
    """A GGUF file, hashed, checked against this machine's memory, loaded on demand."""

    def __init__(self, path: Path, source: str, settings: EngineSettings,
                 factory: EngineFactory, chat_template: Path | None = None) -> None:  # fmt: skip
        self.path, self.source, self.settings, self.factory = path, source, settings, factory
        self.info: GgufInfo = read_gguf(path)
        self.template_file = chat_template
        self.template = read_template(chat_template) if chat_template else self.info.chat_template
        self.template_thinks = template_thinks(self.template)
        self.key = model_sha256(path)  # the identity's model_sha256, the prefix cache's key
        self.server: tuple[str, str] | None = None
        self.fixed_ctx: int | None = None  # the run chooses the context it opens
        self.slots: int | None = None
        self.exact_counts = True
        self.trained_ctx = self.info.get_int("context_length")

    def record(self) -> dict[str, Any]:
        record = {**model_record(self.info, self.key), "source": self.source or None}
        if self.template_file is not None:
            record["chat_template"] = str(self.template_file)
        return record

    def check_memory(self, n_ctx: int, warnings: list[str]) -> None:
        need = estimate(self.info, n_ctx, self.settings.kv_type)
        warning = check_fits(self.info, need, machine_memory())
        if warning and warning not in warnings:
            warnings.append(warning)

    def start(self) -> Engine:
        return self.factory(self.path, self.settings)

    def renderer(self, engine: Engine) -> ChatRenderer:
        from mmlupro_local.engine.chat import chat_renderer

        return chat_renderer(self.info, self.template)

    def check_cuts(self, longest: str, warnings: list[str]) -> None:
        """In-process, a prompt that does not fit is refused, never cut."""

    def close(self) -> None:
        """The engine `start` made is closed by the run."""


class ServedModel:
    """A model behind an OpenAI-compatible server, probed once at the start."""

    def __init__(self, settings: ServerSettings, *, seed: int, stop: str, chat: bool) -> None:
        self.engine = server_engine(settings, seed=seed, stop=stop)
        self.chat = chat
        info = self.engine.info
        self.key = ""
        self.server = (settings.root, info.model)
        self.fixed_ctx = info.n_ctx  # each request's context, as the server reports it
        self.slots = info.slots
        # counts are the server's only when it tokenizes the very text it is sent
        self.exact_counts = info.tokenize is not None and (info.chat_template or not chat)
        trained = info.details.get("n_ctx_train")
        self.trained_ctx = int(trained) if isinstance(trained, int) else None
        self.template_thinks = False  # the server's template is the server's business

    def record(self) -> dict[str, Any]:
        info = self.engine.info
        record = {"name": info.model, "server": self.server[0], "kind": info.kind,
                  "quantization": info.details.get("ftype"), "source": None}  # fmt: skip
        if self.chat:  # the official chat form, rendered by the server's own template
            record["chat_template"] = "the server's"
        return record

    def check_memory(self, n_ctx: int, warnings: list[str]) -> None:
        """The server's memory is the server's business."""

    def start(self) -> Engine:
        return self.engine

    def renderer(self, engine: Engine) -> ChatRenderer:
        if self.engine.info.chat_template:
            return self.engine.render_chat
        return _plain_chat  # the server renders; this text only locates the shared prefix

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

    def close(self) -> None:
        self.engine.close()


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


class TemplateError(MmluProError):
    """A --chat-template file that cannot be used."""


def _plain_chat(messages: list[dict[str, str]]) -> str:
    return "".join(f"<{m['role']}>\n{m['content']}\n" for m in messages) + "<assistant>\n"
