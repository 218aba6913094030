"""A scripted OpenAI-compatible server on 127.0.0.1, for the server engine's unit tests.

Words are its tokens (/tokenize counts whitespace-separated words). Each knob scripts a
fault seen in real servers: ignoring the stop string, reporting fewer prompt tokens
than were sent (a cut prompt), a separate reasoning field, 5xx answers, a hang, a
malformed event, an API key.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from hubserver import loopback

DEFAULT_ANSWER = "Let me think. The answer is (A).\n\nQuestion: and then it rambles on " * 3


@dataclass
class FakeServer:
    answer: Callable[[str], str] = lambda prompt: DEFAULT_ANSWER
    models: tuple[str, ...] = ("fake-model",)
    honour_stop: bool = True
    cut_tokens: int = 0  # report this many prompt tokens fewer than were sent
    keep_tokens: int = 0  # quietly keep at most this many prompt tokens (Ollama's num_ctx)
    reasoning: str = ""  # streamed as delta.reasoning_content before the content (chat)
    failures: list[int] = field(default_factory=list)  # statuses for the next requests
    hangs: int = 0  # the next requests hang (send nothing) for hang_seconds
    hang_seconds: float = 30.0
    malformed: int = 0  # the next requests get a broken event after one good one
    api_key: str = ""  # when set, requests need "Authorization: Bearer <key>"
    tokenize: bool = True
    timings: bool = True  # per-chunk timings as llama-server sends them
    n_ctx: int = 100_000
    slots: int = 3
    model_path: str = "/models/fake-q4.gguf"  # what /props says is loaded
    chunk_delay: float = 0.0
    url: str = ""
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    chunks_sent: list[int] = field(default_factory=list)  # per completion request
    headers: list[str] = field(default_factory=list)  # Authorization headers seen
    lock: threading.Lock = field(default_factory=threading.Lock)

    def completions(self) -> list[dict[str, Any]]:
        return [body for path, body in self.requests if path.endswith("completions")]


def _count(text: str) -> int:
    return len(text.split())


def _handler(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _json(self, status: int, data: dict[str, Any]) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self) -> bool:
            seen = self.headers.get("Authorization", "")
            fake.headers.append(seen)
            if fake.api_key and seen != f"Bearer {fake.api_key}":
                self._json(401, {"error": {"code": 401, "message": "Invalid API Key",
                                           "type": "authentication_error"}})  # fmt: skip
                return False
            return True

        def do_GET(self) -> None:
            if not self._authorized():
                return
            if self.path == "/v1/models":
                data = [{"id": m, "object": "model", "owned_by": "fake"} for m in fake.models]
                self._json(200, {"object": "list", "data": data})
            elif self.path == "/props":
                self._json(200, {"default_generation_settings": {"n_ctx": fake.n_ctx},
                                 "total_slots": fake.slots, "build_info": "fake-1",
                                 "model_path": fake.model_path})  # fmt: skip
            else:
                self._json(404, {"error": {"message": "File Not Found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            with fake.lock:
                fake.requests.append((self.path, body))
            if not self._authorized():
                return
            if self.path == "/tokenize" and fake.tokenize:
                self._json(200, {"tokens": list(range(_count(body.get("content", ""))))})
            elif self.path == "/apply-template":
                text = "".join(f"<{m['role']}> {m['content']}\n" for m in body["messages"])
                self._json(200, {"prompt": text + "<assistant> "})
            elif self.path in ("/v1/completions", "/v1/chat/completions"):
                self._complete(body)
            else:
                self._json(404, {"error": {"message": "File Not Found"}})

        def _complete(self, body: dict[str, Any]) -> None:
            with fake.lock:
                status = fake.failures.pop(0) if fake.failures else 0
                hang = fake.hangs > 0
                fake.hangs -= hang
                broken = fake.malformed > 0
                fake.malformed -= broken
            if status:
                self._json(status, {"error": {"code": status, "message": "scripted failure"}})
                return
            if hang:
                time.sleep(fake.hang_seconds)
                return
            chat = "messages" in body
            prompt = (
                "".join(f"<{m['role']}> {m['content']}\n" for m in body["messages"])
                + "<assistant> "
                if chat
                else body["prompt"]
            )
            prompt_n = _count(prompt) - fake.cut_tokens
            if fake.keep_tokens:
                prompt_n = min(prompt_n, fake.keep_tokens)
            if not body.get("stream"):
                usage = {"prompt_tokens": prompt_n, "completion_tokens": 1}
                self._json(
                    200,
                    {
                        "choices": [{"index": 0, "text": "x", "finish_reason": "length"}],
                        "usage": usage,
                    },
                )
                return
            text = fake.answer(prompt)
            stop = (body.get("stop") or [None])[0]
            finish = "length"
            if fake.honour_stop and stop and stop in text:
                text, finish = text[: text.index(stop)], "stop"
            words = text.split(" ")[: body["max_tokens"]]
            pieces = [w + " " for w in words[:-1]] + words[-1:]
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            sent = 0
            try:
                events = list(self._events(chat, pieces, finish, prompt_n, broken))
                for event in events:
                    self.wfile.write(event.encode())
                    self.wfile.flush()
                    sent += 1
                    if fake.chunk_delay:
                        time.sleep(fake.chunk_delay)
            except (BrokenPipeError, ConnectionResetError):
                pass
            fake.chunks_sent.append(sent)
            self.close_connection = True

        def _events(
            self, chat: bool, pieces: list[str], finish: str, prompt_n: int, broken: bool
        ) -> Iterator[str]:
            def event(choice: dict[str, Any], n: int, **extra: Any) -> str:
                data: dict[str, Any] = {"choices": [choice] if choice else [], **extra}
                if fake.timings:
                    data["timings"] = {
                        "cache_n": 0,
                        "prompt_n": prompt_n,
                        "predicted_n": n,
                        "prompt_ms": 1.0,
                        "predicted_ms": float(n),
                    }
                return f"data: {json.dumps(data)}\n\n"

            if chat and fake.reasoning:
                for word in fake.reasoning.split(" "):
                    yield event({"index": 0, "delta": {"reasoning_content": word + " "}}, 0)
            for n, piece in enumerate(pieces, 1):
                if chat:
                    yield event({"index": 0, "delta": {"content": piece}}, n)
                else:
                    yield event({"index": 0, "text": piece}, n)
                if broken:
                    yield "data: {not json\n\n"
                    return
            last = {
                "index": 0,
                "finish_reason": finish,
                **({"delta": {}} if chat else {"text": ""}),
            }
            usage = {"prompt_tokens": prompt_n, "completion_tokens": len(pieces)}
            yield event(last, len(pieces))
            yield event({}, len(pieces), usage=usage)
            yield "data: [DONE]\n\n"

    return Handler


@contextmanager
def serve_fake(fake: FakeServer | None = None) -> Iterator[FakeServer]:
    fake = fake or FakeServer()
    with loopback(_handler(fake)) as root:
        fake.url = f"{root}/v1"
        yield fake
