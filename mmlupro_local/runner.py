"""The one place that drives the stages of an evaluation run, and owns its progress bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from mmlupro_local import __version__
from mmlupro_local.config import PREFIX_CACHE_MAX_GB, prefix_cache_dir
from mmlupro_local.datasets.dataset import EMBEDDED_NAME, Dataset, load_dataset
from mmlupro_local.datasets.questions import Question
from mmlupro_local.datasets.sampling import SampleSpec, draw, shortfalls
from mmlupro_local.datasets.verify import verify
from mmlupro_local.engine import Engine, EngineSettings, Generation, Job
from mmlupro_local.engine.prefix_cache import PrefixCache
from mmlupro_local.errors import DatasetError, MmluProError
from mmlupro_local.fitting import CTX_STEP, prepare_prompts, round_ctx
from mmlupro_local.interrupts import first_interrupt_requests_stop
from mmlupro_local.model.fingerprint import model_record, model_sha256
from mmlupro_local.model.gguf import GgufInfo, read_gguf
from mmlupro_local.model.memory import check_fits, estimate, machine_memory
from mmlupro_local.results.records import Identity, ResultRecord, RunHeader, SampleInfo
from mmlupro_local.results.store import ResultsWriter, StoreError
from mmlupro_local.task.prompt import Prompt, PromptSettings
from mmlupro_local.task.scoring import result_record
from mmlupro_local.task.settings import MAX_TOKENS, AnswerSettings
from mmlupro_local.task.stopping import new_watchers

MAX_PARALLEL = 64
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
    answer: AnswerSettings = field(default_factory=AnswerSettings)
    max_tokens: int = MAX_TOKENS
    engine: EngineSettings = field(default_factory=lambda: EngineSettings(threads=1))
    ctx: int | None = None  # None: fit the longest prompt and the budget
    parallel: int = 1
    prefix_cache: bool = True
    memory_check: bool = True  # refuse a model and context larger than this machine's memory
    prefix_cache_gb: float = PREFIX_CACHE_MAX_GB
    command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise RunConfigError("the generation budget must be at least 1 token")
        if self.ctx is not None and self.ctx < CTX_STEP:
            raise RunConfigError(f"the context must hold at least {CTX_STEP} tokens")
        if not 1 <= self.parallel <= MAX_PARALLEL:
            raise RunConfigError(f"parallel must be between 1 and {MAX_PARALLEL}")


class RunConfigError(MmluProError):
    """A run's settings contradict each other or are out of range."""


@dataclass
class RunOutcome:
    path: Path
    sample_size: int
    already_done: int
    written: int
    records: list[ResultRecord]  # results for the selected questions, file order
    warnings: list[str]
    signum: int = 0  # the signal that interrupted the run, when one did

    @property
    def interrupted(self) -> bool:
        return self.signum != 0


def identity(config: RunConfig, model_hash: str, dataset: Dataset) -> Identity:
    """The settings that change results: a results file resumes only under the same ones."""
    g, e = config.answer, config.engine
    return Identity(
        model_sha256=model_hash,
        dataset_sha256=dataset.sha256,
        style=config.prompt.style,
        shots=config.prompt.shots,
        strip_options=config.prompt.strip_options,
        extract_mode=g.extract_mode,
        strip_thinking=g.strip_thinking,
        max_tokens=config.max_tokens,
        stop=g.stop,
        early_stop=g.early_stop,
        batch=e.batch,
        flash_attn=e.flash_attn,
        kv_type=e.kv_type,
        gpu_layers=e.gpu_layers,
        parallel=config.parallel,
        seed=config.sample.seed,
        # how ggml splits the work among threads changes the order of its sums
        threads=e.threads,
        lookup=e.lookup,
    )


def _check_dataset(dataset: Dataset) -> None:
    """A dataset that fails `dataset verify` would give wrong or endless runs."""
    errors = [f for f in verify(dataset) if f.severity == "error"]
    if errors:
        raise DatasetError(
            f"dataset {dataset.name!r} fails its checks: "
            + "; ".join(f.message for f in errors)
            + f". See 'mmlupro-local dataset verify --dataset {dataset.name}', then import a "
            "corrected copy."
        )


def budget_floor(config: RunConfig) -> int:
    """A context no run of this config can be smaller than: the budget and a short prompt."""
    return config.max_tokens + CTX_STEP


def _check_memory(config: RunConfig, info: GgufInfo, n_ctx: int, warnings: list[str]) -> None:
    if not config.memory_check:
        return
    need = estimate(info, n_ctx, config.engine.kv_type)
    warning = check_fits(info, need, machine_memory())
    if warning and warning not in warnings:
        warnings.append(warning)


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
    _check_dataset(dataset)
    sample = draw(dataset.test, config.sample)
    info = read_gguf(config.model)
    model_hash = model_sha256(config.model)
    ident = identity(config, model_hash, dataset)
    with ResultsWriter(config.out, ident) as writer:
        warnings = list(writer.log.warnings)
        short = shortfalls(dataset.test, config.sample)
        if short:
            warnings.append(short)
        done = {q.question_id for q in sample if q.question_id in writer.log.results}
        todo = [q for q in sample if q.question_id not in done]
        echo(f"results: {config.out} ({len(done)} of {len(sample)} questions already there)")
        written, signum = 0, 0
        if todo and writer.read_only_reason:
            raise StoreError(
                f"cannot write to {config.out}: {writer.read_only_reason}; {len(todo)} of "
                f"{len(sample)} questions are still to run. Make it writable or choose another --out."
            )
        if todo:
            # before loading: the weights and the smallest context this run could use
            _check_memory(config, info, round_ctx(config.ctx or budget_floor(config)), warnings)
            engine = (engine_factory or _default_engine)(config.model, config.engine)
            try:
                prompts, n_ctx = prepare_prompts(
                    todo,
                    dataset.validation,
                    config.prompt,
                    max_tokens=config.max_tokens,
                    ctx=config.ctx,
                    parallel=config.parallel,
                    info=info,
                    count_tokens=engine.count_tokens,
                    warnings=warnings,
                )
                _check_memory(config, info, n_ctx, warnings)
                engine.open_context(n_ctx, config.parallel)
                cache = None
                if config.prefix_cache:
                    cache = PrefixCache(prefix_cache_dir(), int(config.prefix_cache_gb * 2**30))
                    engine.use_prefix_cache(cache, model_hash)
                writer.append_run(
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
                written, signum = _generate_all(
                    config, todo, prompts, engine, writer, progress, len(done), len(sample)
                )
                if cache is not None and cache.hits + cache.misses:
                    echo(_cache_summary(cache))
            finally:
                engine.close()
        records = [
            writer.log.results[q.question_id] for q in sample if q.question_id in writer.log.results
        ]
    return RunOutcome(config.out, len(sample), len(done), written, records, warnings, signum)


def _cache_summary(cache: PrefixCache) -> str:
    text = f"prefix cache: {cache.hits} loaded, {cache.misses} decoded, {cache.saved} saved"
    if cache.not_saved:
        reasons = sorted(set(cache.not_saved))
        text += f", {len(cache.not_saved)} not saved ({'; '.join(reasons)})"
    return text


def _run_record(
    config: RunConfig,
    dataset: Dataset,
    info: GgufInfo,
    model_hash: str,
    ident: Identity,
    engine: Engine,
    sample_size: int,
    warnings: list[str],
    *,
    resumed: bool,
) -> RunHeader:
    spec = config.sample
    return RunHeader(
        identity=ident,
        model={**model_record(info, model_hash), "source": config.model_source or None},
        dataset={
            "name": dataset.name,
            "sha256": dataset.sha256,
            "source": dataset.meta.source,
            "revision": dataset.meta.revision,
        },
        engine=engine.describe(),
        sample=SampleInfo(
            seed=spec.seed,
            per_category=spec.per_category,
            fraction=spec.fraction,
            categories=tuple(spec.categories),
            description=spec.describe(),
            size=sample_size,
        ),
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        resumed=resumed,
        tool_version=__version__,
        command=tuple(config.command),
        warnings=tuple(warnings),
    )


class Speed:
    """The progress bar's rates: questions per minute over the wall clock, and prompt
    reading and generation each over its own decoding time (so a long prompt does not
    make generation look slow)."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.questions = self.prompt_tokens = self.generated = 0
        self.prompt_seconds = self.generation_seconds = 0.0

    def add(self, generation: Generation) -> None:
        self.questions += 1
        self.prompt_tokens += generation.decoded_prompt_tokens
        self.generated += generation.generated_tokens
        self.prompt_seconds += generation.prompt_seconds
        self.generation_seconds += max(generation.decode_seconds - generation.prompt_seconds, 0.0)

    def __str__(self) -> str:
        elapsed = time.perf_counter() - self.began
        parts = [f"{self.questions / elapsed * 60:.1f} q/min"]
        if self.generation_seconds:
            parts.append(f"gen {self.generated / self.generation_seconds:.1f} tok/s")
        if self.prompt_seconds:
            parts.append(f"prompt {self.prompt_tokens / self.prompt_seconds:.0f} tok/s")
        return ", ".join(parts)


def _generate_all(
    config: RunConfig,
    todo: list[Question],
    prompts: dict[int, Prompt],
    engine: Engine,
    writer: ResultsWriter,
    progress: bool,
    done: int,
    total: int,
) -> tuple[int, int]:
    written = correct = 0
    speed = Speed()
    bar = tqdm(
        total=total,
        initial=done,
        disable=not progress,
        file=sys.stderr,
        unit="q",
        dynamic_ncols=True,
    )
    with bar, first_interrupt_requests_stop() as stop:
        texts = [prompts[q.question_id].text for q in todo]
        jobs = [
            Job(text, prompts[q.question_id].prefix_chars)
            for text, q in zip(texts, todo, strict=True)
        ]
        for index, generation in engine.generate_many(
            jobs,
            max_tokens=config.max_tokens,
            new_watcher=new_watchers(config.answer, texts),
            should_stop=stop.is_set,
        ):
            question = todo[index]
            record = result_record(
                question,
                prompts[question.question_id],
                generation,
                seed=config.sample.seed,
                extract_mode=config.answer.extract_mode,
                strip_thinking=config.answer.strip_thinking,
            )
            writer.append_result(record)
            written += 1
            correct += record.correct
            speed.add(generation)
            bar.set_postfix_str(f"acc {correct / written:.1%}, {speed}", refresh=False)
            bar.update(1)
            if stop.is_set():
                return written, stop.signum
    return written, stop.signum
