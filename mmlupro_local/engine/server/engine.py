"""`ServerEngine`: the runner's Engine over HTTP, N requests in flight."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mmlupro_local.engine import (
    EngineError,
    Generation,
    Job,
    NewWatcher,
    StopReason,
    Watcher,
    never_stop,
)
from mmlupro_local.engine.prefix_cache import PrefixCache
from mmlupro_local.engine.server import RAISE_CONTEXT, ServerError, ServerSettings
from mmlupro_local.engine.server.http import Busy, Json, Loop, ServerClient
from mmlupro_local.engine.server.probe import ServerInfo, probe

CUT_SLACK = 8  # tokens a prompt may lose or gain where it is joined or specials added
COUNTING = 64  # /tokenize requests in flight while counting prompts
# the most characters an answer may hold per token of its budget: more is a server that
# ignores max_tokens (a 5.7 MB answer to --max-tokens 32 was seen), cut and said
CHARS_PER_TOKEN = 32


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    stop: tuple[str, ...]  # where the server ends a generation (also watched here)
    seed: int


class ServerEngine:
    def __init__(
        self,
        settings: ServerSettings,
        *,
        seed: int,
        stop: tuple[str, ...],
        loop: Loop | None = None,
    ) -> None:
        self.settings = settings
        self.cancelled = threading.Event()
        self.client = ServerClient(settings, cancelled=self.cancelled, loop=loop)
        try:
            self.info: ServerInfo = probe(self.client, settings.model)
        except ServerError:
            self.client.close()
            raise
        self.seed, self.stop = seed, stop
        self.parallel = 1
        self.window = Window(1)
        self.answered = 0  # answers this server gave in the last generate_many
        self.failed = ""  # why it left a pool of servers, if it did
        self.capped = 0  # answers cut at the budget because the server sent more
        self.cut_at: int | None = None  # a server that cuts long prompts keeps about this many
        self.checked_connections = 0  # completion connections the last identity check covers
        self._checking = asyncio.Lock()
        self.template_kwargs: dict[str, Any] = {}  # the chat template's variables (--thinking)

    def use_template_kwargs(self, kwargs: Mapping[str, Any]) -> None:
        self.template_kwargs = dict(kwargs)

    def find_cut(self, text: str) -> int | None:
        """For a server that cannot count tokens: send `text` and `text` twice (one token
        generated each) and compare the prompt counts it reports. Twice the text should
        count about twice the tokens; a server that quietly cuts prompts reports less, and
        keeps that many at most. None: it does not cut (or refuses, which is no harm).
        Each starts with its own number so that no prompt cache serves either."""
        counts = []
        for n, prompt in enumerate((text, text + "\n\n" + text)):
            prompt = f"{secrets.randbelow(10**8) + n}\n{prompt}"
            body = {
                "model": self.info.model,
                "prompt": prompt,
                "max_tokens": 1,
                "temperature": 0.0,
                "seed": self.seed,
            }
            data = self.client.post("/v1/completions", body, quiet=True) or {}
            usage = data.get("usage") or {}
            if not isinstance(usage.get("prompt_tokens"), int):
                return None
            counts.append(int(usage["prompt_tokens"]))
        single, double = counts
        if double >= 2 * single - CUT_SLACK:
            return None
        self.cut_at = double
        return double

    # -- what the runner asks before generating

    def count_tokens(self, text: str) -> int:
        """The server's own count (its tokenizer, special tokens parsed as in a prompt)."""
        return self.count_many([text])[0]

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Counts of many texts, COUNTING requests at a time (a full run's 12,032 prompts
        one after another took 17 s before the first question)."""
        kind = self.info.tokenize
        if kind is None:
            raise ServerError(f"{self.client.root} cannot count tokens (no /tokenize)")
        gate = asyncio.Semaphore(COUNTING)

        async def count(text: str) -> int:
            body: Json = (
                {"content": text}
                if kind == "llama-server"
                else {"model": self.info.model, "prompt": text}
            )
            async with gate:
                data = await self.client.json("POST", "/tokenize", body, False) or {}
            if "count" in data:
                return int(data["count"])
            return len(data.get("tokens") or [])

        async def every() -> list[int]:
            return list(await asyncio.gather(*(count(t) for t in texts)))

        return self.client.loop.run(every())

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The server's own chat template applied to messages (llama-server)."""
        body: Json = {"messages": messages}
        if self.template_kwargs:
            body["chat_template_kwargs"] = dict(self.template_kwargs)
        data = self.client.post("/apply-template", body) or {}
        if not isinstance(data.get("prompt"), str):
            raise ServerError(f"{self.client.root}/apply-template gave no prompt")
        return str(data["prompt"])

    def open_context(self, n_ctx: int, parallel: int = 1) -> None:
        self.parallel = parallel

    def use_prefix_cache(self, cache: PrefixCache, identity: str) -> None:
        """The server keeps its own prefix cache."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": "server",
            "url": self.settings.root,
            **self.info.describe(),
            "parallel": self.parallel,
            "timeout": self.settings.timeout,
            "retries": self.settings.retries,
        }

    def close(self) -> None:
        self.cancelled.set()
        self.client.close()

    # -- generation

    def score_many(
        self, jobs: Sequence[Job], *, should_stop: Callable[[], bool] = never_stop
    ) -> Iterator[tuple[int, Generation]]:
        raise EngineError(
            "a server does not score choices here: the letter-choice method runs in-process "
            "(on the GGUF file), since OpenAI-compatible servers differ in how, and whether, "
            "they return a prompt's log-probabilities"
        )

    def generate_many(
        self,
        jobs: Sequence[Job],
        *,
        max_tokens: int,
        new_watcher: NewWatcher,
        should_stop: Callable[[], bool] = never_stop,
    ) -> Iterator[tuple[int, Generation]]:
        """Keeps up to `parallel` requests in flight on the client's event loop, fewer
        while the server answers 429 or 503 (Window); yields each answer as it finishes
        (engine.server.pool.generate, with this server alone)."""
        from mmlupro_local.engine.server.pool import generate

        return generate(
            [self],
            self.client.loop,
            jobs,
            max_tokens=max_tokens,
            new_watcher=new_watcher,
            should_stop=should_stop,
        )

    def reset_window(self) -> None:
        self.window = Window(self.parallel)

    @property
    def members(self) -> list[ServerEngine]:
        """The servers answering (this one; a ServerPool has several)."""
        return [self]

    async def answer(
        self, job: Job, max_tokens: int, new_watcher: Callable[[], Watcher]
    ) -> Generation:
        """One question, retried from the start (a fresh watcher) after transient
        failures; a 429 or 503 goes back to the pool (Busy), which pauses and sends fewer."""
        sampling = Sampling(max_tokens, self.stop, self.seed)
        began = time.perf_counter()

        async def attempt() -> Generation:
            try:
                generation = await self._stream(job, sampling, new_watcher(), began)
            except Busy as exc:
                raise _Shed(exc) from None
            await self._still_the_same()  # before the answer counts
            return generation

        try:
            return await self.client.retrying(attempt)
        except _Shed as shed:
            raise shed.busy from None

    async def _still_the_same(self) -> None:
        """The check made at the start holds for the whole run (issue 32, case 7): once
        an answer came on a new connection (a server restarted mid-run is reached on
        one), the server is asked again what it serves; another model behind the same
        id fails it for good (a pool goes on without it)."""
        if self.client.completion_connections == self.checked_connections:
            return
        async with self._checking:
            covered = self.client.completion_connections
            if covered == self.checked_connections:
                return  # checked meanwhile
            try:
                now = await asyncio.to_thread(probe, self.client, self.info.model)
            except ServerError as exc:
                if exc.transient:
                    raise
                raise ServerError(
                    f"{self.settings.root} changed mid-run: {exc}", setting="server"
                ) from None
            changed = _changes(self.info, now)
            if changed:
                raise ServerError(
                    f"{self.settings.root} now serves another model behind {self.info.model!r} "
                    f"({'; '.join(changed)}): restarted mid-run? Its answers since are not "
                    "counted; a resume with it checks it afresh",
                    setting="server",
                )
            self.checked_connections = covered

    def _body(self, job: Job, sampling: Sampling) -> tuple[str, Json]:
        body: Json = {
            "model": self.info.model,
            "max_tokens": sampling.max_tokens,
            # greedy, every field explicit: some servers default to temperature 0.8
            "temperature": 0.0,
            "top_p": 1.0,
            "top_k": 1,
            "seed": sampling.seed,
            "n": 1,
            "stream": True,
            # prompt counts while streaming: usage per chunk (vLLM), timings (llama-server)
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
            "timings_per_token": True,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if job.messages:
            if self.template_kwargs:  # --thinking, as vLLM, SGLang and llama-server take it
                body["chat_template_kwargs"] = dict(self.template_kwargs)
            return "/v1/chat/completions", {**body, "messages": list(job.messages)}
        return "/v1/completions", {**body, "prompt": job.text}

    async def _stream(
        self, job: Job, sampling: Sampling, watcher: Watcher, began: float
    ) -> Generation:
        path, body = self._body(job, sampling)
        counted = job.tokens
        checkable = counted is not None or self.cut_at is not None
        tally = _Tally()
        reason: StopReason | None = None
        events = self.client.events(path, body)
        sent, waited = time.perf_counter(), None
        try:
            async for event in events:
                if waited is None:
                    waited = time.perf_counter() - sent
                    self.window.observe(waited)
                tally.read(event)
                if tally.prompt is not None and self._was_cut(tally.prompt, counted):
                    return _truncated(counted, self.cut_at, tally, began)
                choice = (event.get("choices") or [{}])[0]
                if reason is None:
                    piece, thought = _pieces(choice)
                    tally.reasoning += thought
                    reason = watcher.feed(piece) if piece else None
                    finish = choice.get("finish_reason")
                    if reason is None and finish:
                        reason = "length" if finish == "length" else "stop"
                    tally.chunks += bool(piece)
                    # the client keeps the budget too: a server that ignores max_tokens
                    if reason is None and tally.chunks >= sampling.max_tokens:
                        reason = "length"
                    # ...in characters too: a piece may hold any number of tokens
                    if len(watcher.text) > sampling.max_tokens * CHARS_PER_TOKEN:
                        reason, tally.capped = "length", True
                # an early stop closes the stream once the prompt's count is checked
                if reason is not None and (not checkable or tally.prompt is not None):
                    break
            else:
                if reason is None:
                    raise ServerError(
                        f"{self.client.root}{path}: the stream ended before the answer did",
                        transient=True,
                    )
        finally:
            await events.aclose()
        if tally.prompt is None:  # the server never said; /tokenize may have
            tally.prompt = counted
        if tally.capped:
            self.capped += 1
            return tally.generation(
                watcher.text[: sampling.max_tokens * CHARS_PER_TOKEN], reason, began
            )
        return tally.generation(watcher.text, reason, began)

    def _was_cut(self, prompt: int, counted: int | None) -> bool:
        if counted is not None:
            return prompt < counted
        return self.cut_at is not None and prompt >= self.cut_at - CUT_SLACK


def _changes(then: ServerInfo, now: ServerInfo) -> list[str]:
    """What a server says of the model it serves differently from before."""
    found = [
        f"{name} {a!r}, was {b!r}"
        for name, a, b in (
            ("kind", now.kind, then.kind),
            ("context per request", now.n_ctx, then.n_ctx),
        )
        if a != b
    ]
    for key in sorted(then.served.keys() | now.served.keys()):
        if then.served.get(key) != now.served.get(key):
            found.append(f"{key} {now.served.get(key)!r}, was {then.served.get(key)!r}")
    return found


class _Shed(Exception):
    """A 429 or 503 the pool handles by sending fewer after a pause (not a retry)."""

    def __init__(self, busy: Busy) -> None:
        super().__init__(str(busy))
        self.busy = busy


class Window:
    """How many requests may be in flight: halved (at most once a second), with a pause,
    when the server answers 429 or 503; cut by a quarter (at most every 5 s) while the wait for a
    first token grows far past what it was at the start (a server queueing what it
    cannot run: vLLM above --max-num-seqs); one more after each answer otherwise; never
    above `limit`."""

    BASELINE = 16  # first answers whose wait for a first token sets what is normal
    SLOWER = 4.0  # a wait this many times the normal one, and a second more, is queueing

    def __init__(self, limit: int) -> None:
        self.limit = self.size = max(1, limit)
        self.low = self.size
        self.shed = 0  # 429/503 answers taken back into the queue
        self.slowed = 0  # cuts for waits that grew
        self.backoff = 0.0
        self.paused_until = 0.0  # monotonic time before which nothing is sent
        self.refusing_since = 0.0  # the first 429/503 since the last answer; 0: none
        self._last_cut = self._last_slow = -1e9
        self._waits: list[float] = []
        self._normal: float | None = None
        self._recent = 0.0

    def shrink(self) -> None:
        """A 429 or 503: halve (at most once a second) and pause sending. Refusals that
        come back during a pause share it (a storm is one pause per cut, not one per
        refused request); the pause doubles with each cut, up to 2 s."""
        self.shed += 1
        now = time.monotonic()
        self.refusing_since = self.refusing_since or now
        if now < self.paused_until:
            return
        if now - self._last_cut >= 1.0:
            self.size = max(1, self.size // 2)
            self.low = min(self.low, self.size)
            self._last_cut = now
            self.backoff = min(max(self.backoff * 2, 0.05), 2.0)
        self.paused_until = now + max(self.backoff, 0.05)

    def open(self, in_flight: int) -> bool:
        """Whether one more request may go now."""
        return in_flight < self.size and time.monotonic() >= self.paused_until

    def observe(self, wait: float) -> None:
        """The seconds an answer waited for its first token."""
        if self._normal is None:
            self._waits.append(wait)
            if len(self._waits) >= self.BASELINE:
                self._normal = sorted(self._waits)[len(self._waits) // 4]
                self._recent = self._normal
            return
        self._recent = 0.8 * self._recent + 0.2 * wait
        queueing = self._recent > max(self.SLOWER * self._normal, self._normal + 1.0)
        now = time.monotonic()
        if queueing and now - self._last_slow >= 5.0 and self.size > 1:
            self.size = max(1, self.size * 3 // 4)
            self.low = min(self.low, self.size)
            self.slowed += 1
            self._last_slow = now

    def refusing_for(self) -> float:
        """Seconds the server has refused every request since its last answer."""
        return time.monotonic() - self.refusing_since if self.refusing_since else 0.0

    def grow(self) -> None:
        self.backoff = self.refusing_since = 0.0
        if self._normal is not None and self._recent > 2 * self._normal + 0.5:
            return  # waits still long: no more until they clear
        self.size = min(self.limit, self.size + 1)

    def describe(self) -> dict[str, int]:
        return {
            "limit": self.limit,
            "lowest": self.low,
            "final": self.size,
            "shed": self.shed,
            "slowed": self.slowed,
        }


class _Tally:
    """What the server reported about one request so far."""

    def __init__(self) -> None:
        self.prompt: int | None = None
        self.cached = 0
        self.generated: int | None = None
        self.chunks = 0
        self.prompt_ms = self.predicted_ms = 0.0
        self.reasoning = ""
        self.capped = False  # the client cut the answer at its budget

    def read(self, event: Json) -> None:
        usage = event.get("usage")
        if isinstance(usage, dict) and usage.get("prompt_tokens") is not None:
            self.prompt = int(usage["prompt_tokens"])
            self.generated = int(usage.get("completion_tokens") or 0)
            details = usage.get("prompt_tokens_details") or {}
            self.cached = int(details.get("cached_tokens") or 0)
        timings = event.get("timings")
        if isinstance(timings, dict) and "prompt_n" in timings:
            self.cached = int(timings.get("cache_n", 0))
            self.prompt = self.cached + int(timings["prompt_n"])
            self.generated = int(timings.get("predicted_n", 0))
            self.prompt_ms = float(timings.get("prompt_ms", 0.0))
            self.predicted_ms = float(timings.get("predicted_ms", 0.0))

    def generation(self, text: str, reason: StopReason | None, began: float) -> Generation:
        seconds = time.perf_counter() - began
        prompt = self.prompt or 0
        decode = (self.prompt_ms + self.predicted_ms) / 1000
        return Generation(
            text=text,
            prompt_tokens=prompt,
            decoded_prompt_tokens=max(prompt - self.cached, 0),
            generated_tokens=self.generated if self.generated is not None else self.chunks,
            seconds=seconds,
            decode_seconds=decode or seconds,
            stop_reason=reason or "interrupted",
            prompt_seconds=self.prompt_ms / 1000,
            reasoning=self.reasoning,
        )


def _truncated(counted: int | None, cut_at: int | None, tally: _Tally, began: float) -> Generation:
    generation = tally.generation("", "length", began)
    read = (
        f"the server read {tally.prompt} of the prompt's {counted} tokens"
        if counted is not None
        else f"the server read {tally.prompt} tokens of the prompt, where it cuts prompts "
        f"(it kept {cut_at} of a longer probe)"
    )
    error = (
        f"{read}: it cut the prompt, so the answer would be scored on a different "
        f"question; {RAISE_CONTEXT}"
    )
    return replace(generation, error=error)


def _pieces(choice: Json) -> tuple[str, str]:
    """(content, reasoning) of an event's choice: a completion's text, or a chat delta;
    reasoning as vLLM (`reasoning_content`) or others (`reasoning`) send it."""
    text = choice.get("text")
    if text is not None:
        return str(text), str(choice.get("reasoning_content") or choice.get("reasoning") or "")
    delta = choice.get("delta") or choice.get("message") or {}
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    return str(delta.get("content") or ""), str(reasoning)
