"""The one place that drives the stages of an evaluation run, and owns its progress bar."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mmlupro_local import __version__
from mmlupro_local.config import PREFIX_CACHE_MAX_GB, prefix_cache_dir
from mmlupro_local.dataset import EMBEDDED_NAME, Dataset, load_dataset
from mmlupro_local.engine import LIVE_PREFIXES, Engine, EngineSettings, GenerationSettings
from mmlupro_local.fingerprint import model_record, model_sha256
from mmlupro_local.gguf import GgufInfo, read_gguf
from mmlupro_local.memory import check_fits, estimate, machine_memory
from mmlupro_local.prefix_cache import PrefixCache
from mmlupro_local.prompt import ChatRenderer, Prompt, PromptSettings, build_prompt, fit_prompt
from mmlupro_local.questions import Question
from mmlupro_local.sampling import SampleSpec, draw
from mmlupro_local.scoring import result_record
from mmlupro_local.store import SCHEMA, ResultsWriter

CTX_STEP = 256  # llama.cpp pads the context to this; an unpadded n_ctx crashes later
EngineFactory = Callable[[Path, EngineSettings], Engine]
Echo = Callable[[str], None]


@dataclass(frozen=True)
class RunConfig:
    model: Path
    out: Path
    model_source: str = ""  # the hub reference it was downloaded from, if any
    dataset: str = EMBEDDED_NAME
    sample: SampleSpec = field(default_factory=SampleSpec)
    prompt: PromptSettings = field(default_factory=PromptSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    ctx: int | None = None
    threads: int = 1
    gpu_layers: int = -1
    batch: int = 512
    flash_attn: bool = True
    kv_type: str = "f16"
    parallel: int = 1
    lookup: int = 0  # prompt-lookup decoding: most guessed tokens checked per step
    prefix_cache: bool = True
    memory_check: bool = True  # refuse a model and context larger than this machine's memory
    prefix_cache_gb: float = PREFIX_CACHE_MAX_GB
    command: tuple[str, ...] = ()


@dataclass
class RunOutcome:
    path: Path
    sample_size: int
    already_done: int
    written: int
    interrupted: bool
    records: list[dict[str, Any]]  # results for the selected questions, file order
    warnings: list[str]


def identity(config: RunConfig, model_hash: str, dataset: Dataset) -> dict[str, Any]:
    """The settings that change results: a results file resumes only under the same ones."""
    g = config.generation
    return {
        "model_sha256": model_hash,
        "dataset_sha256": dataset.sha256,
        "prompt": {
            "style": config.prompt.style,
            "shots": config.prompt.shots,
            "strip_options": config.prompt.strip_options,
        },
        "extraction": {"mode": g.extract_mode, "strip_thinking": g.strip_thinking},
        "generation": {
            "decoding": "greedy",
            "max_tokens": g.max_tokens,
            "stop": g.stop,
            "early_stop": g.early_stop,
        },
        # batching and kernels change the floating-point path, so greedy choices can flip
        "engine": {
            "batch": config.batch,
            "flash_attn": config.flash_attn,
            "kv_type": config.kv_type,
            "gpu_layers": config.gpu_layers,
            "parallel": config.parallel,
            # absent (files before it existed) means off
            **({"lookup": config.lookup} if config.lookup else {}),
        },
        "seed": config.sample.seed,
    }


def budget_floor(config: RunConfig) -> int:
    """A context no run of this config can be smaller than: the budget and a short prompt."""
    return config.generation.max_tokens + 256


def _check_memory(config: RunConfig, info: GgufInfo, n_ctx: int, warnings: list[str]) -> None:
    if not config.memory_check:
        return
    need = estimate(info, n_ctx, config.kv_type)
    warning = check_fits(info, need, machine_memory())
    if warning and warning not in warnings:
        warnings.append(warning)


def round_ctx(n: int) -> int:
    return -(-n // CTX_STEP) * CTX_STEP


def _default_engine(model: Path, settings: EngineSettings) -> Engine:
    from mmlupro_local.engine.llama import LlamaEngine

    return LlamaEngine(model, settings)


def run(
    config: RunConfig,
    *,
    echo: Echo,
    engine_factory: EngineFactory | None = None,
    progress: bool = True,
) -> RunOutcome:
    dataset = load_dataset(config.dataset)
    sample = draw(dataset.test, config.sample)
    info = read_gguf(config.model)
    model_hash = model_sha256(config.model)
    ident = identity(config, model_hash, dataset)
    with ResultsWriter(config.out, ident) as writer:
        warnings = list(writer.log.warnings)
        done = {q.question_id for q in sample if q.question_id in writer.log.results}
        todo = [q for q in sample if q.question_id not in done]
        echo(f"results: {config.out} ({len(done)} of {len(sample)} questions already there)")
        written, interrupted = 0, False
        if todo:
            # before loading: the weights and the smallest context this run could use
            _check_memory(config, info, round_ctx(config.ctx or budget_floor(config)), warnings)
            engine = (engine_factory or _default_engine)(
                config.model,
                EngineSettings(
                    threads=config.threads,
                    gpu_layers=config.gpu_layers,
                    batch=config.batch,
                    flash_attn=config.flash_attn,
                    kv_type=config.kv_type,
                    lookup=config.lookup,
                ),
            )
            try:
                prompts, n_ctx = _prepare_prompts(config, dataset, todo, info, engine, warnings)
                _check_memory(config, info, n_ctx, warnings)
                engine.open_context(n_ctx, config.parallel)
                cache = None
                if config.prefix_cache:
                    cache = PrefixCache(prefix_cache_dir(), int(config.prefix_cache_gb * 2**30))
                    engine.use_prefix_cache(cache, model_hash)
                writer.append(
                    _run_record(
                        config,
                        dataset,
                        info,
                        model_hash,
                        ident,
                        engine,
                        len(sample),
                        warnings,
                        resumed=bool(writer.log.runs),
                    )
                )
                for text in warnings:
                    echo(f"warning: {text}")
                written, interrupted = _generate_all(
                    config, todo, prompts, engine, writer, progress, len(done), len(sample)
                )
                if cache is not None and cache.hits + cache.misses:
                    echo(f"prefix cache: {cache.hits} loaded, {cache.misses} decoded and saved")
            finally:
                engine.close()
        records = [
            writer.log.results[q.question_id] for q in sample if q.question_id in writer.log.results
        ]
    return RunOutcome(config.out, len(sample), len(done), written, interrupted, records, warnings)


def _prepare_prompts(
    config: RunConfig,
    dataset: Dataset,
    todo: list[Question],
    info: GgufInfo,
    engine: Engine,
    warnings: list[str],
) -> tuple[dict[int, Prompt], int]:
    """Every prompt, fitted to the context; and the context size to open."""
    render: ChatRenderer | None = None
    if config.prompt.style == "chat":
        from mmlupro_local.engine.chat import chat_renderer

        render = chat_renderer(info)
    budget = config.generation.max_tokens
    prompts = {
        q.question_id: build_prompt(q, dataset.validation, config.prompt, render_chat=render)
        for q in todo
    }
    counts = {qid: engine.count_tokens(p.text) for qid, p in prompts.items()}
    if config.ctx is None:
        # the live prefixes, shared, plus each parallel sequence's own question and budget
        prefix: dict[str, int] = {}
        for q in todo:
            if q.category not in prefix:
                p = prompts[q.question_id]
                prefix[q.category] = engine.count_tokens(p.text[: p.prefix_chars])
        longest = max(counts.values())
        own = max(counts[q.question_id] - prefix[q.category] for q in todo) + budget
        shared = max(prefix.values()) * min(LIVE_PREFIXES, len(prefix))
        n_ctx = round_ctx(max(longest + budget, shared + config.parallel * own))
    else:
        n_ctx = round_ctx(config.ctx)
        if n_ctx != config.ctx:
            warnings.append(
                f"--ctx {config.ctx} rounded up to {n_ctx} (llama.cpp needs a multiple of {CTX_STEP})"
            )
        limit = n_ctx - budget
        for q in todo:
            if counts[q.question_id] >= limit:
                prompts[q.question_id] = fit_prompt(
                    q,
                    dataset.validation,
                    config.prompt,
                    count_tokens=engine.count_tokens,
                    limit=limit,
                    render_chat=render,
                )
        cut = sum(p.shots < config.prompt.shots for p in prompts.values())
        if cut:
            warnings.append(
                f"{cut} prompts dropped exemplars to fit --ctx {n_ctx} with --max-tokens {budget}"
            )
    trained = info.get_int("context_length")
    if trained and n_ctx > trained:
        warnings.append(
            f"the context ({n_ctx} tokens) is longer than the model was trained on ({trained}); answers may degrade"
        )
    return prompts, n_ctx


def _run_record(
    config: RunConfig,
    dataset: Dataset,
    info: GgufInfo,
    model_hash: str,
    ident: dict[str, Any],
    engine: Engine,
    sample_size: int,
    warnings: list[str],
    *,
    resumed: bool,
) -> dict[str, Any]:
    spec = config.sample
    return {
        "type": "run",
        "schema": SCHEMA,
        "tool": {"name": "mmlupro-local", "version": __version__},
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "resumed": resumed,
        "identity": ident,
        "model": {**model_record(info, model_hash), "source": config.model_source or None},
        "dataset": {
            "name": dataset.name,
            "sha256": dataset.sha256,
            "source": dataset.meta.source,
            "revision": dataset.meta.revision,
        },
        "engine": engine.describe(),
        "sample": {
            "seed": spec.seed,
            "per_category": spec.per_category,
            "fraction": spec.fraction,
            "categories": list(spec.categories),
            "description": spec.describe(),
            "size": sample_size,
        },
        "command": list(config.command),
        "warnings": warnings,
    }


@contextmanager
def _first_interrupt_requests_stop() -> Iterator[threading.Event]:
    """First Ctrl-C: stop after the current question (nothing half-written).
    A second one interrupts at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _generate_all(
    config: RunConfig,
    todo: list[Question],
    prompts: dict[int, Prompt],
    engine: Engine,
    writer: ResultsWriter,
    progress: bool,
    done: int,
    total: int,
) -> tuple[int, bool]:
    written = correct = tokens = 0
    began = time.perf_counter()
    bar = tqdm(
        total=total,
        initial=done,
        disable=not progress,
        file=sys.stderr,
        unit="q",
        dynamic_ncols=True,
    )
    with bar, _first_interrupt_requests_stop() as stop:
        jobs = [(prompts[q.question_id].text, prompts[q.question_id].prefix_chars) for q in todo]
        for index, generation in engine.generate_many(jobs, config.generation, stop.is_set):
            question = todo[index]
            prompt = prompts[question.question_id]
            record = result_record(
                question,
                prompt,
                generation,
                seed=config.sample.seed,
                extract_mode=config.generation.extract_mode,
                strip_thinking=config.generation.strip_thinking,
            )
            writer.append(record)
            writer.log.results[question.question_id] = record
            written += 1
            correct += record["correct"]
            tokens += generation.generated_tokens
            elapsed = time.perf_counter() - began
            bar.set_postfix_str(
                f"acc {correct / written:.1%}, {written / elapsed * 60:.1f} q/min, {tokens / elapsed:.1f} tok/s",
                refresh=False,
            )
            bar.update(1)
            if stop.is_set():
                return written, True
    return written, stop.is_set()
