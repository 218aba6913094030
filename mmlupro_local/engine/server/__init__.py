"""The server engine: the same evaluation through an OpenAI-compatible server (vLLM,
SGLang, llama-server, Ollama, LM Studio). The only package that imports aiohttp.

The client keeps the task's rules: every sampling field is sent, the stream is cut by
the task's own watcher (servers have ignored stop strings), and a prompt the server
reports as shorter than it is, is an error for that question, never a quiet score.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from mmlupro_local.engine import EngineError

if TYPE_CHECKING:
    from mmlupro_local.engine.server.engine import ServerEngine
    from mmlupro_local.engine.server.pool import ServerPool

API_KEY_VARIABLES = ("MMLUPRO_API_KEY", "OPENAI_API_KEY")
# how a context too small for a prompt is remedied, whatever serves
RAISE_CONTEXT = (
    "raise the server's context (llama-server -c, divided among its -np slots; vLLM "
    "--max-model-len; Ollama OLLAMA_CONTEXT_LENGTH), or lower --max-tokens"
)


class ServerError(EngineError):
    """The server failed or refused. `transient` failures (no connection, a timeout, a
    5xx, a broken stream) are retried with backoff; the others are not."""

    def __init__(self, message: str, *, transient: bool = False, setting: str | None = None):
        super().__init__(message, setting=setting)
        self.transient = transient


@dataclass(frozen=True)
class ServerSettings:
    url: str  # the base URL as given; credentials in it are used, never recorded
    model: str = ""  # the served model to use; "" when the server serves one
    timeout: float = 600.0  # seconds a request may wait for its next byte
    retries: int = 3  # further attempts after a transient failure
    backoff: float = 1.0  # seconds before the first retry, doubling after

    def __post_init__(self) -> None:
        shown = redact_url(self.url.strip())  # never a credential in a message
        parts = urlsplit(self.url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerError(f"{shown!r} is not an http(s) URL", setting="server_url")
        try:
            parts.port  # noqa: B018 (urllib checks the port only when asked)
        except ValueError as exc:
            raise ServerError(
                f"{shown!r} is not a valid URL ({exc})", setting="server_url"
            ) from None
        if parts.query or parts.fragment:
            raise ServerError(
                f"{shown!r} has a query string, which is not sent with requests (a key in it "
                "would be recorded); give the base URL alone and the API key in "
                "MMLUPRO_API_KEY",
                setting="server_url",
            )
        if self.timeout <= 0 or self.retries < 0 or self.backoff < 0:
            raise ServerError("the timeout must be positive, retries and backoff not negative")

    @property
    def root(self) -> str:
        """The URL without credentials, query or a trailing /v1: the server's root."""
        parts = urlsplit(self.url.strip())
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        path = parts.path.rstrip("/")
        if path.endswith("/v1"):
            path = path[: -len("/v1")]
        return urlunsplit((parts.scheme, netloc, path, "", ""))

    @property
    def credentials(self) -> tuple[str, str] | None:
        parts = urlsplit(self.url.strip())
        if parts.username is None:
            return None
        return parts.username, parts.password or ""


def server_engine(
    settings: Sequence[ServerSettings], *, seed: int, stop: tuple[str, ...]
) -> ServerEngine | ServerPool:
    """The engine, connected and probed: one server's, or a pool's over several of the
    same model; aiohttp is an optional extra, so imported here."""
    try:
        import aiohttp  # noqa: F401
    except ImportError as exc:
        raise ServerError(
            "the server engine needs the HTTP client aiohttp, an optional extra; install it with "
            "pip install 'mmlupro-local[server]'"
        ) from exc
    if len(settings) > 1:
        from mmlupro_local.engine.server.pool import ServerPool

        return ServerPool(settings, seed=seed, stop=stop)
    from mmlupro_local.engine.server.engine import ServerEngine

    return ServerEngine(settings[0], seed=seed, stop=stop)


def api_key() -> str | None:
    """The API key from the environment (never from a flag, so never in the command the
    results file records), checked once: an HTTP header carries printable ASCII only, and
    the key is never printed, not even in this error."""
    for name in API_KEY_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            if not all(33 <= ord(c) < 127 for c in value):
                raise ServerError(
                    f"{name} holds a character an HTTP header cannot carry (a space, a "
                    "newline, a control or non-ASCII character); set it to the key alone",
                    setting="api_key",
                )
            return value
    return None


def redact_url(text: str) -> str:
    """A URL with any user, password and query values replaced by ***; other text as it is."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not (parts.netloc or "").strip():
        return text
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{q.split('=', 1)[0]}=***" for q in parts.query.split("&") if q)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_command(argv: Sequence[str]) -> tuple[str, ...]:
    """A command line as it may be recorded and printed: credentials in URLs hidden."""
    return tuple(redact_url(arg) if "://" in arg else arg for arg in argv)
