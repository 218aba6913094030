"""Answers from one or several servers serving the same model: the driver that keeps each
server's window full, and `ServerPool`, the Engine over several (`--server` given more
than once: replicas, or servers on several machines).

Questions are routed by their shared prefix (the category's 5-shot prompt), so that each
server keeps its own categories' prefixes cached; a server whose queue runs dry takes
from the longest other queue. A server that fails for good (no connection, silence past
the timeout, failures its retries did not mend) leaves the pool: its questions, queued
and in flight, go to the others, and the run fails only when none is left.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mmlupro_local.engine import Generation, Job, NewWatcher, never_stop
from mmlupro_local.engine.prefix_cache import PrefixCache
from mmlupro_local.engine.server import ServerError, ServerSettings
from mmlupro_local.engine.server.http import Busy, Loop

if TYPE_CHECKING:
    from mmlupro_local.engine.server.engine import ServerEngine

Answers = queue.Queue[tuple[int, Generation] | ServerError | None]


def generate(
    members: Sequence[ServerEngine],
    loop: Loop,
    jobs: Sequence[Job],
    *,
    max_tokens: int,
    new_watcher: NewWatcher,
    should_stop: Callable[[], bool] = never_stop,
) -> Iterator[tuple[int, Generation]]:
    """(index, generation) as each answer finishes; after a failure no server survived,
    the answers in flight are still yielded, then it is raised. Closing the iterator
    cancels the rest."""
    answers: Answers = queue.Queue()
    stopped = threading.Event()
    for member in members:
        member.reset_window()
        member.client.stopping.clear()
    driver = asyncio.run_coroutine_threadsafe(
        drive(members, jobs, max_tokens, new_watcher, answers, stopped, should_stop), loop.loop
    )
    try:
        while (item := answers.get()) is not None:
            if isinstance(item, ServerError):
                raise item
            yield item
    finally:
        stopped.set()
        driver.cancel()


def _leaves(exc: ServerError) -> bool:
    """A failure of the server rather than of the question: another server may answer."""
    return exc.transient or exc.setting in ("server", "timeout")


async def drive(
    members: Sequence[ServerEngine],
    jobs: Sequence[Job],
    max_tokens: int,
    new_watcher: NewWatcher,
    answers: Answers,
    stopped: threading.Event,
    should_stop: Callable[[], bool] = never_stop,
) -> None:
    """Until every question is answered, or a stop is asked (Ctrl-C, SIGTERM): then the
    requests in flight are cancelled and not retried, and nothing more is handed out."""
    live = list(members)
    queues: dict[int, deque[int]] = {id(m): deque() for m in members}
    home: dict[str, ServerEngine] = {}
    for index, job in enumerate(jobs):  # each prefix to the least loaded server
        prefix = job.text[: job.prefix_chars]
        if prefix not in home:
            home[prefix] = min(live, key=lambda m: len(queues[id(m)]))
        queues[id(home[prefix])].append(index)
    running: dict[asyncio.Task[Generation], tuple[ServerEngine, int]] = {}
    in_flight = {id(m): 0 for m in members}
    # finished requests, as they finish: waiting on all of them at every answer would
    # cost the loop the whole in-flight set each time (hundreds with a GPU server)
    finished: asyncio.Queue[asyncio.Task[Generation]] = asyncio.Queue()
    failure: ServerError | None = None

    def next_for(member: ServerEngine) -> int | None:
        own = queues[id(member)]
        if own:
            return own.popleft()
        busiest = max(live, key=lambda m: len(queues[id(m)]))
        return queues[id(busiest)].pop() if queues[id(busiest)] else None

    def hand_back(member: ServerEngine, index: int) -> None:
        target = member if member in live else min(live, key=lambda m: len(queues[id(m)]))
        queues[id(target)].appendleft(index)

    try:
        while True:
            for member in live:
                while (
                    failure is None
                    and not stopped.is_set()
                    and not member.cancelled.is_set()
                    and member.window.open(in_flight[id(member)])
                ):
                    taken = next_for(member)
                    if taken is None:
                        break
                    watcher = functools.partial(new_watcher, taken)
                    task = asyncio.ensure_future(member.answer(jobs[taken], max_tokens, watcher))
                    task.add_done_callback(finished.put_nowait)
                    running[task] = (member, taken)
                    in_flight[id(member)] += 1
            sending = failure is None and not stopped.is_set()
            waiting = sending and any(queues[id(m)] and not m.cancelled.is_set() for m in live)
            if not running and not waiting:  # a paused window waits; the rest is done
                break
            done = await _finished(finished, 0.1)
            if should_stop() or stopped.is_set():
                for member in members:
                    member.client.stopping.set()
                break
            for task in done:
                member, index = running.pop(task)
                in_flight[id(member)] -= 1
                outcome = _outcome(task, member)
                if outcome is None:  # refused: asked again after the window's pause
                    hand_back(member, index)
                    continue
                if isinstance(outcome, ServerError):
                    if member in live and len(live) > 1 and _leaves(outcome):
                        live.remove(member)
                        member.failed = str(outcome)
                        orphans = queues.pop(id(member))
                        for orphan in orphans:
                            hand_back(member, orphan)
                    if member not in live and live:
                        hand_back(member, index)
                        continue
                    failure = failure or outcome  # hand out no more; keep what is in flight
                    continue
                member.window.grow()
                member.answered += 1
                answers.put((index, outcome))
        if failure is not None:
            answers.put(failure)
    finally:
        for task in running:
            task.cancel()
        answers.put(None)


def _outcome(
    task: asyncio.Task[Generation], member: ServerEngine
) -> Generation | ServerError | None:
    """A request's answer, the server's failure, or None for a 429/503: too eager for
    the server now, so fewer in flight after a pause (the driver goes on meanwhile:
    other answers, other servers, a stop). Refusals of everything for longer than the
    request timeout are a failure of the server."""
    try:
        return task.result()
    except Busy as busy:
        member.window.shrink()
        refusing = member.window.refusing_for()
        if refusing <= member.settings.timeout:
            return None
        return ServerError(
            f"{busy}, to every request for {refusing:.0f} s (--request-timeout "
            f"{member.settings.timeout:g})",
            setting="server",
        )
    except ServerError as exc:
        return exc


async def _finished(
    finished: asyncio.Queue[asyncio.Task[Generation]], timeout: float
) -> list[asyncio.Task[Generation]]:
    """The requests finished so far, waiting up to `timeout` for the first."""
    try:
        done = [await asyncio.wait_for(finished.get(), timeout)]
    except asyncio.TimeoutError:
        return []
    while not finished.empty():
        done.append(finished.get_nowait())
    return done


class ServerPool:
    """The Engine over several servers of one model, on one event loop."""

    def __init__(
        self, settings: Sequence[ServerSettings], *, seed: int, stop: tuple[str, ...]
    ) -> None:
        from mmlupro_local.engine.server.engine import ServerEngine

        self.loop = Loop()
        self.members: list[ServerEngine] = []
        try:
            for one in settings:
                self.members.append(ServerEngine(one, seed=seed, stop=stop, loop=self.loop))
        except ServerError as exc:
            self.close()
            if exc.setting in ("server", "timeout"):  # gone: the others may go on alone
                exc.args = (
                    f"{exc.args[0]}. To go on without {one.root}, leave its --server out: "
                    "a results file resumes on some of its servers",
                )
            raise
        except BaseException:
            self.close()
            raise
        first = self.members[0]
        for other in self.members[1:]:
            changed = _differences(first, other)
            if changed:
                self.close()
                raise ServerError(
                    f"{other.settings.root} does not serve what {first.settings.root} serves "
                    f"({'; '.join(changed)}): the servers of one run must serve the same model",
                    setting="servers",
                )
        self.info = first.info

    def use_template_kwargs(self, kwargs: Mapping[str, Any]) -> None:
        for member in self.members:
            member.use_template_kwargs(kwargs)

    # the Engine, as one server's, answered by the first where one suffices

    def count_tokens(self, text: str) -> int:
        return self.members[0].count_tokens(text)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return self.members[0].count_many(texts)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return self.members[0].render_chat(messages)

    def find_cut(self, text: str) -> int | None:
        cut = self.members[0].find_cut(text)
        for member in self.members:
            member.cut_at = cut
        return cut

    def open_context(self, n_ctx: int, parallel: int = 1) -> None:
        for member in self.members:
            member.open_context(n_ctx, parallel)

    def use_prefix_cache(self, cache: PrefixCache, identity: str) -> None:
        """Each server keeps its own prefix cache."""

    def generate_many(
        self,
        jobs: Sequence[Job],
        *,
        max_tokens: int,
        new_watcher: NewWatcher,
        should_stop: Callable[[], bool] = never_stop,
    ) -> Iterator[tuple[int, Generation]]:
        return generate(
            self.members,
            self.loop,
            jobs,
            max_tokens=max_tokens,
            new_watcher=new_watcher,
            should_stop=should_stop,
        )

    def score_many(
        self, jobs: Sequence[Job], *, should_stop: Callable[[], bool] = never_stop
    ) -> Iterator[tuple[int, Generation]]:
        return self.members[0].score_many(jobs, should_stop=should_stop)

    def describe(self) -> dict[str, Any]:
        return {"name": "server pool", "servers": [m.describe() for m in self.members]}

    def close(self) -> None:
        for member in self.members:
            member.close()
        self.loop.close()


def _differences(a: ServerEngine, b: ServerEngine) -> list[str]:
    """What two servers report differently about the model they serve."""
    found = []
    for name, x, y in (
        ("model", a.info.model, b.info.model),
        ("kind", a.info.kind, b.info.kind),
        ("context per request", a.info.n_ctx, b.info.n_ctx),
    ):
        if x != y:
            found.append(f"{name} {x!r} against {y!r}")
    for key in ("ftype", "n_params", "size", "max_model_len"):  # not paths: machines differ
        x, y = a.info.details.get(key), b.info.details.get(key)
        if x is not None and y is not None and x != y:
            found.append(f"{key} {x!r} against {y!r}")
    return found
