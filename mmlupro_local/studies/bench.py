"""Speed measurements: raw decode throughput by batch width, and real runs of a fixed
sample with and without parallel decoding and the prefix cache."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from mmlupro_local.config import CACHE_ENV
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.engine.server import ServerSettings
from mmlupro_local.results.records import ResultRecord
from mmlupro_local.run.request import RunRequest
from mmlupro_local.run.runner import run
from mmlupro_local.run.targets.gguf import GgufSpec
from mmlupro_local.run.targets.server import ServerSpec
from mmlupro_local.studies.peak import peak_rss_bytes

Echo = Callable[[str], None]
TIMED_BUDGET = 512  # the timed runs' budget: most answers end before it, loops stop at it


@dataclass(frozen=True)
class Throughput:
    """Raw llama_decode figures for one attention mode, all tokens/s."""

    flash_attn: bool
    prompt_rate: float
    generation: dict[int, float]  # by number of sequences, one token each per step
    checking: float  # `guesses` tokens of one sequence per step: lookup when all guesses fit


@dataclass(frozen=True)
class TimedRun:
    name: str
    wall: float
    records: list[ResultRecord]  # the run's results, in file order
    warm: bool = False  # it began with its prefixes already in the prefix cache
    cpu: float = 0.0  # this process's CPU seconds (all its threads) during the run

    @property
    def cpu_per_question(self) -> float:
        """The client's own cost: for a server, whether the client or the server limits."""
        return self.cpu / self.questions if self.questions else 0.0

    @property
    def decode(self) -> float:
        return float(sum(r.decode_seconds for r in self.records))

    @property
    def questions(self) -> int:
        return len(self.records)

    @property
    def predictions(self) -> dict[int, str | None]:
        return {r.question_id: r.pred for r in self.records}

    @property
    def generated(self) -> int:
        """Tokens: batch shapes change greedy choices, and with them the work."""
        return sum(r.generated_tokens for r in self.records)

    @property
    def prompt_reused(self) -> float:
        """The share of prompt tokens not decoded: found in a (prefix or server) cache."""
        total = sum(r.prompt_tokens for r in self.records)
        return 1 - sum(r.decoded_prompt_tokens for r in self.records) / total if total else 0.0

    @property
    def outside_decode(self) -> float:
        return 1 - self.decode / self.wall if self.wall else 0.0


def timed_run(name: str, request: RunRequest, *, warm: bool = False) -> TimedRun:
    began, cpu = time.perf_counter(), time.process_time()
    outcome = run(request, echo=lambda _: None, progress=False)
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    return TimedRun(name, wall, outcome.records, warm, cpu)


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
    spec: GgufSpec, widths: tuple[int, ...] = (1, 2, 4, 8), guesses: int = 16
) -> list[Throughput]:
    """Figures with flash attention on and off (on only for a quantized KV cache, which
    needs it): which is faster depends on the backend and on how many tokens a step holds.
    The engine's other settings are the spec's, as `run` would have them."""
    from mmlupro_local.engine.llama import LlamaEngine

    found = []
    for flash in (True, False) if spec.kv_type == "f16" else (True,):
        settings = replace(spec, flash_attn=flash).engine_settings()
        with LlamaEngine(spec.path, settings) as engine:
            engine.open_context(2048, max(*widths, 2))  # what one stream reaches
            prompt_rate, rates, checking = engine.measure_throughput(widths, guesses)
        found.append(Throughput(flash, prompt_rate, rates, checking))
    return found


def best_width(rates: dict[int, float]) -> int:
    """The widest batch that still beats the next narrower one by at least 5 %."""
    widths = sorted(rates)
    best = widths[0]
    for n in widths[1:]:
        if rates[n] > rates[best] * 1.05:
            best = n
    return best


# Tokens per question a warm run decodes: its prompt after the cached prefix, and its
# answer (28-question SmolLM2 runs at budget 512: 6,417 and 3,900 in all). On a CPU
# flash attention may read prompts faster and generate slower, so the mix decides.
PROMPT_PER_QUESTION = 230
ANSWER_PER_QUESTION = 140


def best_attention(measured: list[Throughput], rate: Callable[[Throughput], float]) -> bool:
    """Flash attention on or off, whichever reads and answers a question sooner at
    generation `rate`; on when within 5 % (the tool's default, and llama.cpp's on GPUs)."""

    def seconds(t: Throughput) -> float:
        return PROMPT_PER_QUESTION / t.prompt_rate + ANSWER_PER_QUESTION / rate(t)

    on = next(t for t in measured if t.flash_attn)
    off = next((t for t in measured if not t.flash_attn), on)
    return seconds(on) <= seconds(off) * 1.05


def timed_runs(
    model: GgufSpec,
    parallel: int,
    spec: SampleSpec,
    budget: int,
    lookup: int = 0,
    flash_attn: bool = True,
    defaults: bool = True,
) -> list[TimedRun]:
    """--parallel 1 without the prefix cache (the reference mode), then `parallel` with
    the model's KV type and `flash_attn`, a cold and a warm one, in a private, empty
    cache; with `lookup`, once more warm with prompt-lookup decoding (same attention
    mode: the cache holds prefixes per mode, so another would be cold); then with
    `defaults`, the model as `run` would run it given nothing (its rule's mode and this
    machine's defaults), in a cache of its own (cold)."""
    kv_type = model.kv_type
    flags = f" --kv-type {kv_type}" if kv_type != "f16" else ""
    flags += "" if flash_attn else " --no-flash-attn"
    plans = [  # name, parallel, prefix cache, warm, KV type, lookup, flash attention
        ("--parallel 1, no prefix cache", 1, False, False, "f16", 0, True),
        (
            f"--parallel {parallel}{flags}, cold cache",
            parallel,
            True,
            False,
            kv_type,
            0,
            flash_attn,
        ),
        (f"--parallel {parallel}{flags}, warm cache", parallel, True, True, kv_type, 0, flash_attn),
    ]
    if lookup:
        plans.append(
            (
                f"--parallel {parallel}{flags} --lookup {lookup}, warm",
                parallel,
                True,
                True,
                kv_type,
                lookup,
                flash_attn,
            )
        )
    runs: list[TimedRun] = []
    with private_cache() as tmp:
        for name, width, cache, warm, kind, guesses, flash in plans:
            target = replace(model, kv_type=kind, lookup=guesses, flash_attn=flash)
            request = RunRequest(
                target=target,
                out=tmp / f"{len(runs)}.jsonl",
                sample=spec,
                max_tokens=budget,
                parallel=width,
                prefix_cache=cache,
            )
            runs.append(timed_run(name, request, warm=warm))
    if defaults:
        with private_cache() as tmp:
            target = GgufSpec(path=model.path, threads=model.threads)
            rule = target.rule_mode()
            request = RunRequest(
                target=target, out=tmp / "defaults.jsonl", sample=spec, max_tokens=budget
            )
            runs.append(timed_run(f"run's defaults ({rule.flags}), cold cache", request))
    return runs


def server_runs(
    servers: list[ServerSettings],
    concurrency: tuple[int | None, ...],
    spec: SampleSpec,
    budget: int,
    model: Path | None = None,
    threads: int | None = None,
) -> list[TimedRun]:
    """The in-process engine at its defaults on `model` (cold prefix cache) when given,
    then the same questions through each server at each concurrency. A server keeps
    its own prompt cache between runs, so later runs may find prefixes already read."""
    runs: list[TimedRun] = []
    with private_cache() as tmp:
        if model is not None:
            request = RunRequest(
                target=GgufSpec(path=model, threads=threads),
                out=tmp / "local.jsonl",
                sample=spec,
                max_tokens=budget,
            )
            runs.append(timed_run(f"in-process {model.name}, defaults", request))
        for server in servers:
            for width in concurrency:  # None: the server's slots
                request = RunRequest(
                    target=ServerSpec(server),
                    out=tmp / f"{len(runs)}.jsonl",
                    sample=spec,
                    max_tokens=budget,
                    parallel=width,
                )
                runs.append(timed_run(f"{server.root} --parallel {width or 'auto'}", request))
    return runs


def peak_memory_mib() -> float:
    """This process's peak resident memory (studies.peak)."""
    return peak_rss_bytes() / 2**20
