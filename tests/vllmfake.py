"""A fake vLLM on 127.0.0.1 for tests and the client benchmark (issue 25): it answers as
vLLM does (/v1/models with owned_by "vllm", /version, /tokenize, streamed completions
with continuous usage), instantly or paced like a GPU (one token per stream every
`token_seconds`), with a stream limit, 429/503 answers, and deaths mid-stream.

It runs an asyncio server in a thread of its own (`serve`) or in a process of its own
(`python tests/vllmfake.py --port N ...`, for benchmarks, so that it has a core of its
own). Requests are bounded by the tests that make them; it listens on loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

ANSWER_WORDS = 126  # reasoning words before the answer: about 130 tokens an answer


@dataclass
class FakeVllm:
    model: str = "fake/vllm-model"
    root: str = ""  # the weights behind the id (vLLM's "root"); "" is the id itself
    token_seconds: float = 0.0  # 0: instant
    max_streams: int = 0  # 0: no limit; above it a request gets 429
    max_model_len: int = 8192
    failures: list[int] = field(default_factory=list)  # statuses for the next requests
    die_after: int = 0  # >0: close the connection after this many events, once per request
    dying: int = 0  # how many of the next streams die
    letter: str = "A"
    ignore_budget: bool = False  # stream the whole answer whatever max_tokens says
    pings: int = 0  # >0: a stream of this many keep-alive comments (10 a second), no answer
    run_at_once: int = 0  # >0: streams beyond this many wait their turn (vLLM's queue)
    gate: asyncio.Semaphore | None = None
    refuse_for: float = 0.0  # >0: every completion gets 429 for this many seconds from the first
    refusing_since: float = 0.0
    hang_after: int = 0  # >0: completions beyond this many get their headers, then nothing
    kill_after: int = 0  # >0: the server dies (stops listening, drops every connection)
    # once this many completions were asked
    asked: int = 0
    prompts: list[str] = field(default_factory=list)  # every completion's prompt
    dead: bool = False
    connections: set[asyncio.StreamWriter] = field(default_factory=set)
    server: asyncio.AbstractServer | None = None
    streams: int = 0  # open now
    peak_streams: int = 0
    completions: int = 0
    refused: int = 0
    port: int = 0

    def answer(self, prompt: str) -> list[str]:
        words = [f" step{i % 7}" for i in range(ANSWER_WORDS)]
        return [*words, " The", " answer", " is", f" ({self.letter}).", "\n\nQuestion:"]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, object]] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    body = json.loads(await reader.readexactly(length)) if length else {}
    return method, path, body


def _response(status: int, data: object) -> bytes:
    payload = json.dumps(data).encode()
    reason = {
        200: "OK",
        400: "Bad Request",
        404: "Not Found",
        429: "Too Many Requests",
        503: "Service Unavailable",
    }
    return (
        f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\ncontent-type: application/json"
        f"\r\ncontent-length: {len(payload)}\r\n\r\n"
    ).encode() + payload


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _complete(fake: FakeVllm, body: dict[str, object], writer: asyncio.StreamWriter) -> bool:
    """Stream one completion; False when the connection was closed (a death)."""
    prompt = str(body.get("prompt", ""))
    budget = int(body.get("max_tokens", 16))  # type: ignore[call-overload]
    stop = [str(s) for s in body.get("stop") or []]  # type: ignore[attr-defined]
    pieces = fake.answer(prompt)
    pieces = pieces if fake.ignore_budget else pieces[:budget]
    n_prompt = len(prompt) // 4 + 1
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    if fake.hang_after and fake.asked > fake.hang_after:
        await writer.drain()
        await asyncio.sleep(3600)  # cancelled when the fake stops
    for _ in range(fake.pings):
        writer.write(_chunk(b": ping\n\n"))
        await writer.drain()
        await asyncio.sleep(0.1)
    dies = fake.dying > 0
    fake.dying -= dies
    text, finish = "", "length"
    for i, piece in enumerate(pieces):
        if dies and i == fake.die_after:
            writer.close()
            return False
        if any(s in text + piece for s in stop):
            finish = "stop"
            break
        text += piece
        last = i == len(pieces) - 1
        event = {
            "id": "cmpl-1",
            "object": "text_completion",
            "model": fake.model,
            "choices": [{"index": 0, "text": piece, "finish_reason": ("length" if last else None)}],
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": i + 1,
                "total_tokens": n_prompt + i + 1,
            },
        }
        writer.write(_chunk(b"data: " + json.dumps(event).encode() + b"\n\n"))
        if fake.token_seconds:
            await writer.drain()
            await asyncio.sleep(fake.token_seconds)
    if finish == "stop":
        event = {
            "choices": [{"index": 0, "text": "", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": len(text)},
        }
        writer.write(_chunk(b"data: " + json.dumps(event).encode() + b"\n\n"))
    writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await writer.drain()
    return True


def _die(fake: FakeVllm) -> None:
    fake.dead = True
    if fake.server is not None:
        fake.server.close()
    for writer in list(fake.connections):
        writer.close()


async def _serve_connection(
    fake: FakeVllm, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    if fake.dead:
        writer.close()
        return
    fake.connections.add(writer)
    try:
        while True:
            request = await _read_request(reader)
            if request is None:
                return
            _, path, body = request
            if path == "/v1/models":
                writer.write(
                    _response(
                        200,
                        {
                            "object": "list",
                            "data": [
                                {
                                    "id": fake.model,
                                    "object": "model",
                                    "owned_by": "vllm",
                                    "root": fake.root or fake.model,
                                    "max_model_len": fake.max_model_len,
                                }
                            ],
                        },
                    )
                )
            elif path == "/version":
                writer.write(_response(200, {"version": "0.11.0-fake"}))
            elif path == "/tokenize" and "prompt" not in body:  # as vLLM refuses it
                writer.write(_response(400, {"error": {"message": "field required: prompt"}}))
            elif path == "/tokenize":
                n = len(str(body.get("prompt", ""))) // 4 + 1
                writer.write(
                    _response(
                        200,
                        {"count": n, "max_model_len": fake.max_model_len, "tokens": list(range(n))},
                    )
                )
            elif path == "/v1/completions":
                fake.asked += 1
                fake.prompts.append(str(body.get("prompt", "")))
                if fake.kill_after and fake.asked >= fake.kill_after:
                    _die(fake)
                    return
                now = asyncio.get_running_loop().time()
                fake.refusing_since = fake.refusing_since or now
                if now - fake.refusing_since < fake.refuse_for:
                    fake.refused += 1
                    writer.write(_response(429, {"error": {"message": "too many requests"}}))
                elif fake.failures:
                    writer.write(_response(fake.failures.pop(0), {"error": {"message": "busy"}}))
                elif fake.max_streams and fake.streams >= fake.max_streams:
                    fake.refused += 1
                    writer.write(_response(429, {"error": {"message": "too many requests"}}))
                else:
                    fake.streams += 1
                    fake.peak_streams = max(fake.peak_streams, fake.streams)
                    try:
                        if fake.run_at_once:
                            fake.gate = fake.gate or asyncio.Semaphore(fake.run_at_once)
                            async with fake.gate:
                                alive = await _complete(fake, body, writer)
                        else:
                            alive = await _complete(fake, body, writer)
                    finally:
                        fake.streams -= 1
                    fake.completions += alive
                    if not alive:
                        return
            else:
                writer.write(_response(404, {"error": "not found"}))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        fake.connections.discard(writer)
        writer.close()


@contextlib.contextmanager
def serve(fake: FakeVllm | None = None) -> Iterator[FakeVllm]:
    """The fake in a thread with its own event loop, on a free loopback port."""
    fake = fake or FakeVllm()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    server: asyncio.AbstractServer | None = None

    async def start() -> None:
        nonlocal server
        server = await asyncio.start_server(
            lambda r, w: _serve_connection(fake, r, w), "127.0.0.1", fake.port, limit=2**20
        )
        fake.port = server.sockets[0].getsockname()[1]
        fake.server = server
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True, name="fake-vllm")
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    started.wait(10)

    async def stop() -> None:
        if server is not None:
            server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def url(fake: FakeVllm) -> str:
    return f"http://127.0.0.1:{fake.port}/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description="a fake vLLM on 127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-seconds", type=float, default=0.0)
    parser.add_argument("--max-streams", type=int, default=0)
    args = parser.parse_args()
    fake = FakeVllm(token_seconds=args.token_seconds, max_streams=args.max_streams, port=args.port)

    async def run() -> None:
        server = await asyncio.start_server(
            lambda r, w: _serve_connection(fake, r, w),
            "127.0.0.1",
            args.port,
            limit=2**20,
            backlog=2048,
        )
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
