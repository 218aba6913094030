"""Speed measurements: raw decode throughput by batch width, and real runs of a fixed
sample with and without parallel decoding and the prefix cache."""

from __future__ import annotations

import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    decode: float
    questions: int
    predictions: dict[int, str | None]
    generated: int  # tokens: batch shapes change greedy choices, and with them the work

    @property
    def outside_decode(self) -> float:
        return 1 - self.decode / self.wall if self.wall else 0.0


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
    runs: list[TimedRun] = []
    previous = os.environ.get(CACHE_ENV)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")
        try:
            kv = f" --kv-type {kv_type}" if kv_type != "f16" else ""
            plans = [
                ("--parallel 1, no prefix cache", 1, False, "f16", 0),
                (f"--parallel {parallel}{kv}, cold cache", parallel, True, kv_type, 0),
                (f"--parallel {parallel}{kv}, warm cache", parallel, True, kv_type, 0),
            ]
            if lookup:
                name = f"--parallel {parallel}{kv} --lookup {lookup}, warm"
                plans.append((name, parallel, True, kv_type, lookup))
            for name, width, cache, kind, guesses in plans:
                config = RunConfig(model=model, out=Path(tmp) / f"{len(runs)}.jsonl", sample=spec,
                                   generation=GenerationSettings(max_tokens=budget), threads=threads,
                                   parallel=width, prefix_cache=cache, kv_type=kind,
                                   lookup=guesses)  # fmt: skip
                began = time.perf_counter()
                outcome = run(config, echo=lambda _: None, progress=False)
                wall = time.perf_counter() - began
                decode = sum(r["decode_seconds"] for r in outcome.records)
                preds = {r["question_id"]: r["pred"] for r in outcome.records}
                generated = sum(r["generated_tokens"] for r in outcome.records)
                runs.append(TimedRun(name, wall, decode, len(outcome.records), preds, generated))
        finally:
            if previous is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = previous
    return runs


def peak_memory_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
