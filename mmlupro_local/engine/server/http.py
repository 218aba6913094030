"""HTTP to the server: retries with backoff, the server's own error messages, and
server-sent events read line by line."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx

from mmlupro_local.engine.server import ServerError, ServerSettings, api_key

T = TypeVar("T")
Json = dict[str, Any]


def server_message(response: httpx.Response) -> str:
    """What the server said about a failure: its JSON error message, else its text."""
    try:
        response.read()
        data = response.json()
    except (ValueError, httpx.HTTPError):
        return response.text.strip()[:300] if response.is_closed else ""
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error:
            return str(error)[:300]
    return json.dumps(data)[:300]


class ServerClient:
    def __init__(self, settings: ServerSettings, *, cancelled: threading.Event | None = None):
        self.settings = settings
        self.root = settings.root
        key = api_key()
        self._client = httpx.Client(
            base_url=self.root,
            auth=settings.credentials,
            headers={"Authorization": f"Bearer {key}"} if key else {},
            timeout=httpx.Timeout(settings.timeout, connect=min(settings.timeout, 10.0)),
        )
        self.cancelled = cancelled or threading.Event()

    def close(self) -> None:
        self._client.close()

    def check(self, response: httpx.Response, path: str) -> None:
        """Raise the failure a response reports, named for a user."""
        status = response.status_code
        if status < 400:
            return
        said = server_message(response)
        where = f"{self.root}{path}"
        if status in (401, 403):
            raise ServerError(
                f"the server refused the request to {where} ({status}: {said})",
                setting="api_key",
            )
        transient = status >= 500 or status in (408, 429)
        raise ServerError(f"{where} answered {status}: {said}", transient=transient)

    def failure(self, exc: httpx.HTTPError, path: str) -> ServerError:
        where = f"{self.root}{path}"
        if isinstance(exc, httpx.TimeoutException):
            return ServerError(
                f"{where} sent nothing for {self.settings.timeout:g} s ({type(exc).__name__})",
                transient=True,
                setting="timeout",
            )
        if isinstance(exc, httpx.ConnectError):
            return ServerError(
                f"cannot connect to {where} ({exc})", transient=True, setting="server"
            )
        return ServerError(f"{where} failed: {type(exc).__name__}: {exc}", transient=True)

    def retrying(self, attempt: Callable[[], T]) -> T:
        """`attempt()`, again after transient failures, waiting longer each time."""
        failures = 0
        while True:
            try:
                return attempt()
            except ServerError as exc:
                if not exc.transient or failures >= self.settings.retries:
                    if failures:
                        exc.args = (f"{exc.args[0]} (after {failures + 1} attempts)",)
                    raise
                wait = self.settings.backoff * 2**failures
                failures += 1
                if self.cancelled.wait(wait):
                    raise

    def get(self, path: str, *, quiet: bool = False) -> Json | None:
        """GET a JSON document; None when the server has no such endpoint (404, 405)
        or, with `quiet`, any other failure."""
        return self._json("GET", path, None, quiet)

    def post(self, path: str, body: Json, *, quiet: bool = False) -> Json | None:
        return self._json("POST", path, body, quiet)

    def _json(self, method: str, path: str, body: Json | None, quiet: bool) -> Json | None:
        def attempt() -> Json | None:
            try:
                response = self._client.request(method, path, json=body)
            except httpx.HTTPError as exc:
                raise self.failure(exc, path) from exc
            if response.status_code in (404, 405, 501) or (quiet and response.is_error):
                return None
            self.check(response, path)
            try:
                data = response.json()
            except ValueError as exc:
                raise ServerError(f"{self.root}{path} did not answer JSON") from exc
            return data if isinstance(data, dict) else {"data": data}

        return self.retrying(attempt)

    @contextmanager
    def events(self, path: str, body: Json) -> Iterator[Iterator[Json]]:
        """A streamed request's events (the JSON of each `data:` line) until [DONE]."""
        try:
            with self._client.stream("POST", path, json=body) as response:
                self.check(response, path)
                yield self._parse(response, path)
        except httpx.HTTPError as exc:
            raise self.failure(exc, path) from exc

    def _parse(self, response: httpx.Response, path: str) -> Iterator[Json]:
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments (": ping"), event names
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except ValueError:
                raise ServerError(
                    f"{self.root}{path} sent a malformed event: {data[:80]!r}", transient=True
                ) from None
            if not isinstance(event, dict):
                raise ServerError(
                    f"{self.root}{path} sent a malformed event: {data[:80]!r}", transient=True
                )
            if "error" in event:
                said = event["error"]
                said = said.get("message", said) if isinstance(said, dict) else said
                raise ServerError(f"{self.root}{path} failed mid-stream: {said}", transient=True)
            yield event
