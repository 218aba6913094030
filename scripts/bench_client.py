"""How fast the server client is (issue 25), against a fake vLLM in a process of its own
(tests/vllmfake.py) on 127.0.0.1:

1. instant: the server answers as fast as it can; the client's own ceiling, beside a
   minimal threaded httpx streaming client doing the same per-event work (parse each
   event's JSON, append the piece, look for the answer, close on a match);
2. paced: one token per stream every 20 ms, as a GPU streams, no stream limit; the
   run's default concurrency against the server's own bound (streams x rate).

Prints questions/s, streamed tokens/s and the client's CPU per question.

    python scripts/bench_client.py [--questions 1400] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx  # noqa: E402

from mmlupro_local.datasets.dataset import load_dataset  # noqa: E402
from mmlupro_local.datasets.sampling import SampleSpec, draw  # noqa: E402
from mmlupro_local.engine.server import ServerSettings  # noqa: E402
from mmlupro_local.run.request import RunRequest  # noqa: E402
from mmlupro_local.run.runner import run  # noqa: E402
from mmlupro_local.run.targets.server import SERVER_PARALLEL, ServerSpec  # noqa: E402
from mmlupro_local.task.prompt import PromptSettings, build_prompt  # noqa: E402
from vllmfake import ANSWER_WORDS  # noqa: E402

ANSWER = re.compile(r"answer is \(?([A-J])\)?")
TOKENS = ANSWER_WORDS + 4  # what the fake streams before the answer is complete


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Fake:
    """The fake vLLM in a subprocess, so that it has a core of its own."""

    def __init__(self, token_seconds: float) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "vllmfake.py"),
                "--port",
                str(self.port),
                "--token-seconds",
                str(token_seconds),
            ],
        )
        deadline = time.monotonic() + 30
        while True:  # until it accepts connections
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the fake vLLM did not start") from None
                time.sleep(0.05)

    def __enter__(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)


def minimal(url: str, prompts: list[str], concurrency: int) -> int:
    """The reference: threads sharing one httpx client, each streaming one question."""
    client = httpx.Client(
        base_url=url,
        timeout=60,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )
    todo: queue.Queue[str] = queue.Queue()
    for prompt in prompts:
        todo.put(prompt)
    answered: list[str] = []

    def work() -> None:
        while True:
            try:
                prompt = todo.get_nowait()
            except queue.Empty:
                return
            text = ""
            body = {
                "model": "fake/vllm-model",
                "prompt": prompt,
                "max_tokens": 2048,
                "temperature": 0.0,
                "stream": True,
                "stop": ["Question:"],
            }
            with client.stream("POST", "/v1/completions", json=body) as response:
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    text += json.loads(data)["choices"][0]["text"]
                    if ANSWER.search(text):
                        break
            answered.append(text)

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    return len(answered)


LAST: list[float] = []  # each question's seconds in the last tool() run


def tool(url: str, per_category: int, parallel: int | None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MMLUPRO_LOCAL_CACHE"] = str(Path(tmp) / "cache")
        request = RunRequest(
            target=ServerSpec(ServerSettings(url=f"{url}/v1")),
            out=Path(tmp) / "r.jsonl",
            sample=SampleSpec(per_category=per_category),
            parallel=parallel,
        )
        outcome = run(request, echo=lambda _: None, progress=False)
        LAST[:] = [r.seconds for r in outcome.records]
        return len(outcome.records)


def timed(label: str, work: Callable[[], int]) -> tuple[float, float, int]:
    cpu, began = time.process_time(), time.perf_counter()
    n = work()
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    print(
        f"  {label:<44}{n:>6}{wall:>9.2f}{n / wall:>9.0f}{n * TOKENS / wall:>11,.0f}"
        f"{cpu / n * 1000:>9.2f}",
        flush=True,
    )
    return wall, cpu, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=1400)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--token-seconds", type=float, default=0.02)
    args = parser.parse_args()
    per_category = args.questions // 14
    dataset = load_dataset()
    sample = draw(dataset.test, SampleSpec(per_category=per_category))
    prompts = [build_prompt(q, dataset.validation, PromptSettings()).text for q in sample]
    head = f"  {'':<44}{'q':>6}{'seconds':>9}{'q/s':>9}{'tokens/s':>11}{'CPU ms/q':>9}"
    print(
        f"{len(prompts)} questions, about {TOKENS} streamed tokens each (2 cores, one for the fake)"
    )
    print("instant server (the client's own ceiling):")
    print(head)
    with Fake(0.0) as url:
        base, _, _ = timed(
            f"minimal threaded httpx, {args.concurrency} threads",
            lambda: minimal(url, prompts, args.concurrency),
        )
        same, _, _ = timed(
            f"mmlupro-local run --parallel {args.concurrency}",
            lambda: tool(url, per_category, args.concurrency),
        )
        auto, _, _ = timed(
            f"mmlupro-local run --parallel {SERVER_PARALLEL} (auto)",
            lambda: tool(url, per_category, None),
        )
    print(
        f"  the whole run against the minimal client: {base / auto:.2f}x its questions/s at "
        f"the default concurrency, {base / same:.2f}x at the same {args.concurrency}"
    )
    rate = 1 / args.token_seconds
    print(
        f"paced server: a token per stream every {args.token_seconds * 1000:.0f} ms, no stream limit:"
    )
    print(head)
    with Fake(args.token_seconds) as url:
        wall, _, n = timed(
            "mmlupro-local run, default --parallel (auto)", lambda: tool(url, per_category, None)
        )
    per_stream = TOKENS / rate / (sum(LAST) / len(LAST))
    print(
        f"  each stream got {per_stream:.0%} of the {rate:.0f} tokens/s the server offered it "
        f"(a question {sum(LAST) / len(LAST):.2f} s from request to answer, "
        f"{TOKENS / rate:.2f} s at the server's pace)"
    )
    bound = n * TOKENS / (SERVER_PARALLEL * rate)
    waves = -(-n // SERVER_PARALLEL) * TOKENS / rate
    print(
        f"  the server's bound at {SERVER_PARALLEL} streams x {rate:.0f} tokens/s: {bound:.1f} s "
        f"({waves:.1f} s in whole waves of {SERVER_PARALLEL} equal answers); the run took "
        f"{wall:.1f} s, {bound / wall:.0%} of the bound, {waves / wall:.0%} of the waves'"
    )


if __name__ == "__main__":
    main()
