"""Speed measurements: raw decode throughput by batch width, and real runs of a fixed
sample with and without parallel decoding and the prefix cache."""

from __future__ import annotations

import os
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmlupro_local.config import CACHE_ENV
from mmlupro_local.engine import EngineSettings, GenerationSettings
from mmlupro_local.runner import RunConfig, run
from mmlupro_local.sampling import SampleSpec

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Throughput:
    parallel: int
    prompt_rate: float
    generation_rate: float


@dataclass(frozen=True)
class TimedRun:
    name: str
    wall: float
    records: list[dict[str, Any]]  # the run's results, in file order

    @property
    def decode(self) -> float:
        return float(sum(r["decode_seconds"] for r in self.records))

    @property
    def questions(self) -> int:
        return len(self.records)

    @property
    def predictions(self) -> dict[int, str | None]:
        return {r["question_id"]: r["pred"] for r in self.records}

    @property
    def generated(self) -> int:
        """Tokens: batch shapes change greedy choices, and with them the work."""
        return sum(r["generated_tokens"] for r in self.records)

    @property
    def outside_decode(self) -> float:
        return 1 - self.decode / self.wall if self.wall else 0.0


def timed_run(name: str, config: RunConfig) -> TimedRun:
    began = time.perf_counter()
    outcome = run(config, echo=lambda _: None, progress=False)
    return TimedRun(name, time.perf_counter() - began, outcome.records)


@contextmanager
def private_cache() -> Iterator[Path]:
    """A temporary directory, its `cache` folder the user cache (a cold prefix cache)
    until the block ends."""
    previous = os.environ.get(CACHE_ENV)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")
        try:
            yield Path(tmp)
        finally:
            if previous is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = previous


def throughput(
    model: Path, threads: int, widths: tuple[int, ...] = (1, 2, 4, 8), kv_type: str = "f16"
) -> list[Throughput]:
    from mmlupro_local.engine.llama import LlamaEngine

    found = []
    for n in widths:
        settings = EngineSettings(threads=threads, flash_attn=True, kv_type=kv_type)
        with LlamaEngine(model, settings) as engine:
            engine.open_context(2048 + 256 * n, max(n, 2))
            prompt_rate, rate = engine.measure_throughput(n)
        found.append(Throughput(n, prompt_rate, rate))
    return found


def best_width(measured: list[Throughput]) -> int:
    """The widest batch that still beats the next narrower one by at least 5 %."""
    best = measured[0]
    for t in measured[1:]:
        if t.generation_rate > best.generation_rate * 1.05:
            best = t
    return best.parallel


def timed_runs(
    model: Path,
    threads: int,
    parallel: int,
    spec: SampleSpec,
    budget: int,
    kv_type: str = "f16",
    lookup: int = 0,
) -> list[TimedRun]:
    """--parallel 1 without the prefix cache (the reference mode: f16 KV), then
    `parallel` with `kv_type` and a cold and a warm one, in a private, empty cache;
    with `lookup`, once more warm with prompt-lookup decoding."""
    kv = f" --kv-type {kv_type}" if kv_type != "f16" else ""
    plans = [
        ("--parallel 1, no prefix cache", 1, False, "f16", 0),
        (f"--parallel {parallel}{kv}, cold cache", parallel, True, kv_type, 0),
        (f"--parallel {parallel}{kv}, warm cache", parallel, True, kv_type, 0),
    ]
    if lookup:
        plans.append((f"--parallel {parallel}{kv} --lookup {lookup}, warm", parallel, True, kv_type, lookup))  # fmt: skip
    runs: list[TimedRun] = []
    with private_cache() as tmp:
        for name, width, cache, kind, guesses in plans:
            config = RunConfig(model=model, out=tmp / f"{len(runs)}.jsonl", sample=spec,
                               generation=GenerationSettings(max_tokens=budget), threads=threads,
                               parallel=width, prefix_cache=cache, kv_type=kind, lookup=guesses)  # fmt: skip
            runs.append(timed_run(name, config))
    return runs


def peak_memory_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
