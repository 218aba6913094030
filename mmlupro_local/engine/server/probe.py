"""What a server says about itself: the model it serves, its context per request, its
slots, its version, and whether it can count tokens and render chat templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmlupro_local.engine.server import ServerError
from mmlupro_local.engine.server.http import Json, ServerClient


@dataclass(frozen=True)
class ServerInfo:
    kind: str  # llama-server, vllm, ollama, or openai-compatible
    model: str  # the served model id requests name
    models: tuple[str, ...]  # every id the server listed
    n_ctx: int | None  # tokens one request may hold (prompt and generation), when reported
    slots: int | None  # requests served at once, when reported
    version: str
    tokenize: str | None  # "llama-server" or "vllm": how /tokenize is called; None: absent
    chat_template: bool  # /apply-template renders the server's chat template
    details: dict[str, Any] = field(default_factory=dict)
    template_text: str = ""  # the chat template's source, where the server shows it (/props)

    @property
    def served(self) -> dict[str, Any]:
        """What the server says of the model behind its id, where it says anything: a
        file's path, type and size (llama-server), its root (vLLM), its details (Ollama).
        Another model behind the same id (--alias, --served-model-name, a tag pulled
        again) differs here."""
        keys = ("model_path", "ftype", "n_params", "size", "max_model_len", "root", "details")
        return {k: self.details[k] for k in keys if self.details.get(k) not in (None, {}, "")}

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": self.model,
            "n_ctx": self.n_ctx,
            "slots": self.slots,
            "version": self.version,
            "token_counts": f"{self.tokenize} /tokenize" if self.tokenize else "usage only",
            **self.details,
        }


def probe(client: ServerClient, wanted: str) -> ServerInfo:
    """Ask the server what it is; refuse a model it does not serve."""
    listing = client.get("/v1/models")
    if listing is None:
        raise ServerError(
            f"{client.root}/v1/models does not exist: the URL is not an OpenAI-compatible "
            "server's base URL",
            setting="server_url",
        )
    entries = [e for e in listing.get("data") or [] if isinstance(e, dict) and e.get("id")]
    ids = tuple(str(e["id"]) for e in entries)
    model = _choose(ids, wanted, client.root)
    entry = next((e for e in entries if e["id"] == model), {})
    props = client.get("/props", quiet=True) or {}
    kind, version, details = _identify(client, entry, props, model)
    n_ctx = _int(props.get("default_generation_settings", {}).get("n_ctx"))
    n_ctx = n_ctx or _int(entry.get("max_model_len")) or _int(entry.get("meta", {}).get("n_ctx"))
    tokenize = _tokenizer(client, model)
    template = (
        bool(props)
        and client.post(
            "/apply-template", {"messages": [{"role": "user", "content": "x"}]}, quiet=True
        )
        is not None
    )
    return ServerInfo(
        kind,
        model,
        ids,
        n_ctx,
        _int(props.get("total_slots")) or _int(details.get("max_running_requests")),
        version,
        tokenize,
        template,
        details,
        props["chat_template"] if isinstance(props.get("chat_template"), str) else "",
    )


def _choose(ids: tuple[str, ...], wanted: str, root: str) -> str:
    if wanted:
        if wanted in ids:
            return wanted
        raise ServerError(
            f"{root} does not serve {wanted!r}; it serves: {', '.join(ids) or 'nothing'}",
            setting="server_model",
        )
    if len(ids) == 1:
        return ids[0]
    if not ids:
        raise ServerError(f"{root}/v1/models lists no model", setting="server_model")
    raise ServerError(
        f"{root} serves {len(ids)} models: {', '.join(ids)}",
        setting="server_model",
    )


def _identify(client: ServerClient, entry: Json, props: Json, model: str) -> tuple[str, str, Json]:
    if props.get("build_info") or entry.get("owned_by") == "llamacpp":
        details = {"model_path": props.get("model_path"), "ftype": props.get("model_ftype")}
        meta = entry.get("meta") or {}
        details.update({k: meta[k] for k in ("n_params", "size", "n_ctx_train") if k in meta})
        return "llama-server", str(props.get("build_info", "")), details
    if entry.get("owned_by") == "vllm":
        version = (client.get("/version", quiet=True) or {}).get("version", "")
        return (
            "vllm",
            str(version),
            {"max_model_len": entry.get("max_model_len"), "root": entry.get("root")},
        )
    # SGLang says how many requests it runs at once
    sglang = client.get("/get_server_info", quiet=True) or client.get("/server_info", quiet=True)
    if sglang and "max_running_requests" in sglang:
        return (
            "sglang",
            str(sglang.get("version", "")),
            {
                "max_running_requests": sglang.get("max_running_requests"),
                "context_length": sglang.get("context_length"),
            },
        )
    ollama = client.get("/api/version", quiet=True)
    if ollama and "version" in ollama:
        show = client.post("/api/show", {"model": model}, quiet=True) or {}
        return (
            "ollama",
            str(ollama["version"]),
            {"details": show.get("details", {}), "parameters": show.get("parameters", "")},
        )
    return "openai-compatible", "", {"owned_by": entry.get("owned_by")}


def _tokenizer(client: ServerClient, model: str) -> str | None:
    if client.post("/tokenize", {"content": "a"}, quiet=True) is not None:
        return "llama-server"
    if client.post("/tokenize", {"model": model, "prompt": "a"}, quiet=True) is not None:
        return "vllm"
    return None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and value > 0 else None
