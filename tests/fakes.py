"""Test doubles and helpers: a scripted engine, tiny hand-made GGUF files, the CLI run in
this process, and reading a results file."""

from __future__ import annotations

import errno
import json
import os
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from mmlupro_local.cli import main
from mmlupro_local.cli.options import CliState
from mmlupro_local.engine import EngineSettings, Generation, Job, NewWatcher, StopReason, Watcher
from mmlupro_local.run.request import RunRequest
from mmlupro_local.run.targets.gguf import GgufSpec


def gguf_bytes(
    metadata: dict[str, object], tensors: list[tuple[str, list[int], int, int]] = ()
) -> bytes:  # type: ignore[assignment]
    """A GGUF v3 file: metadata (str, int, bool values) and tensor infos (name, dims, type, offset)."""

    def string(s: str) -> bytes:
        data = s.encode()
        return struct.pack("<Q", len(data)) + data

    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for key, value in metadata.items():
        out += string(key)
        if isinstance(value, bool):
            out += struct.pack("<I?", 7, value)
        elif isinstance(value, int):
            out += struct.pack("<Iq", 11, value)
        else:
            out += struct.pack("<I", 8) + string(str(value))
    for name, dims, kind, offset in tensors:
        out += (
            string(name)
            + struct.pack("<I", len(dims))
            + b"".join(struct.pack("<Q", d) for d in dims)
        )
        out += struct.pack("<IQ", kind, offset)
    return out


def write_fake_model(path: Path, *, data_bytes: int = 64) -> Path:
    """A valid GGUF with one small f32 tensor: enough for the header checks and hashing."""
    header = gguf_bytes(
        {
            "general.architecture": "llama",
            "general.name": "fake",
            "llama.context_length": 4096,
            "general.file_type": 0,
        },
        [("w", [data_bytes // 4], 0, 0)],
    )
    padding = (-len(header)) % 32
    path.write_bytes(header + b"\0" * padding + b"\1" * data_bytes)
    return path


def question_of(prompt: str) -> str:
    """The question text of a completion-style prompt (after the last 'Question:')."""
    return prompt.rsplit("Question:\n", 1)[-1].split("\nOptions:", 1)[0]


def _pieces(text: str) -> list[str]:
    """A scripted response's tokens: its words, each after the first with its space."""
    words = text.split(" ")
    return [words[0], *(" " + word for word in words[1:])]


class FakeEngine:
    """Answers from a script: respond(prompt) -> text; can send itself `signum` (SIGINT
    by default) at call N."""

    def __init__(
        self,
        respond: Callable[[str], str] | None = None,
        *,
        sigint_at: int | None = None,
        signum: int = signal.SIGINT,
        after_forced: str = "B) it is.",
        score: Callable[[str, tuple[str, ...]], Sequence[float]] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.delay = delay  # seconds each answer takes
        self.respond = respond or (lambda prompt: "Let's see. The answer is (A).")
        self.after_forced = after_forced
        # by default the third letter wins, the rest in falling order
        self.score = score or (
            lambda text, choices: [-abs(i - 2) - 1.0 for i in range(len(choices))]
        )
        self.sigint_at = sigint_at
        self.signum = signum
        self.calls: list[str] = []
        self.n_ctx = 0
        self.closed = False

    def __call__(self, model: Path, settings: EngineSettings) -> FakeEngine:
        self.settings = settings  # what the run handed the engine
        return self

    def count_tokens(self, text: str) -> int:
        return len(text) // 4

    def open_context(self, n_ctx: int, parallel: int = 1) -> None:
        self.n_ctx = n_ctx
        self.parallel = parallel

    def generate_many(self, jobs: Sequence[Job], *, max_tokens: int, new_watcher: NewWatcher,
                      should_stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[int, Generation]]:  # fmt: skip
        for index, job in enumerate(jobs):
            generation = self.generate(
                job.text, job.prefix_chars, new_watcher(index), should_stop, max_tokens=max_tokens
            )
            if generation.stop_reason == "interrupted":
                return
            yield index, generation

    def score_many(
        self, jobs: Sequence[Job], *, should_stop: Callable[[], bool] = lambda: False
    ) -> Iterator[tuple[int, Generation]]:
        for index, job in enumerate(jobs):
            if should_stop():
                return
            self.calls.append(job.text)
            scores = tuple(self.score(job.text, job.choices))
            yield index, Generation("", self.count_tokens(job.text), self.count_tokens(job.text[job.prefix_chars:]),
                                    0, 0.01, 0.009, "scored", choice_logprobs=scores)  # fmt: skip

    def use_prefix_cache(self, cache: object, identity: str) -> None:
        self.prefix_cache = cache

    def generate(self, prompt: str, prefix_chars: int, watcher: Watcher,
                 should_stop: Callable[[], bool] = lambda: False, *,
                 max_tokens: int = 10**9) -> Generation:  # fmt: skip
        """Each word of the scripted response is a token; text the watcher forces is fed
        as one token, followed by `after_forced`'s words instead of the rest."""
        self.calls.append(prompt)
        time.sleep(self.delay)
        if self.sigint_at is not None and len(self.calls) == self.sigint_at:
            os.kill(os.getpid(), self.signum)
        reason: StopReason = "eos"
        pieces = _pieces(self.respond(prompt))
        generated = 0
        while pieces:
            if should_stop():
                reason = "interrupted"
                break
            generated += 1
            stopped = watcher.feed(pieces.pop(0))
            if stopped:
                reason = stopped
                break
            if generated >= max_tokens and pieces:
                reason = "length"
                break
            text = watcher.take_forced()
            if text:
                pieces = [text, *_pieces(self.after_forced)]
        return Generation(watcher.text, self.count_tokens(prompt), self.count_tokens(prompt[prefix_chars:]),
                          generated, 0.01, 0.009, reason)  # fmt: skip

    def describe(self) -> dict[str, object]:
        return {"engine": "fake", "n_ctx": self.n_ctx}

    def close(self) -> None:
        self.closed = True


def reference_request(model: Path, out: Path, **changes: Any) -> RunRequest:
    """A run of a GGUF file one question at a time on one thread, without lookup (the
    reference mode, pinned so that a scripted engine's answers do not depend on this
    machine); `changes` are RunRequest fields, or GgufSpec fields by name."""
    spec_fields = {f.name for f in fields(GgufSpec)}
    spec = {k: changes.pop(k) for k in list(changes) if k in spec_fields}
    target = GgufSpec(path=model, **{"threads": 1, "lookup": 0, **spec})
    return RunRequest(target=target, out=out, **{"parallel": 1, **changes})


def invoke(*args: str, engine: Callable[..., Any] | None = None) -> Result:
    """The CLI in this process; `run` gets `engine` through the CLI's public seam."""
    return CliRunner().invoke(main, list(args), obj=CliState(engine_factory=engine))


def invoke_with(engine: Callable[..., Any], *args: str) -> Result:
    return invoke(*args, engine=engine)


def lines(path: Path) -> list[dict[str, Any]]:
    """A results file's records."""
    return [json.loads(line) for line in path.read_text().splitlines()]


LAW2 = ["--per-category", "2", "--categories", "law", "--no-progress"]


def finished_run(model: Path, out: Path, engine: FakeEngine) -> Path:
    """A results file of two law questions, run to the end."""
    result = invoke_with(engine, "run", str(model), *LAW2, "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


REAL_FDOPEN = os.fdopen


class FullDisk:
    """A file object whose writes fail as on a full disk, after writing some bytes."""

    def __init__(self, fd: int, mode: str) -> None:
        self.handle = REAL_FDOPEN(fd, mode)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def write(self, data: bytes) -> int:
        self.handle.write(data[:100])
        self.handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def interrupt_when(ready: Callable[[], bool], within: float = 10.0) -> None:
    """A Ctrl-C to this process from a thread, once `ready()` (or after `within` s)."""

    def wait() -> None:
        deadline = time.monotonic() + within
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=wait, daemon=True).start()
