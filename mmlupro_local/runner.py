"""The one place that drives the stages of an evaluation run, and owns its progress bar."""

from __future__ import annotations

import functools
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from mmlupro_local import __version__
from mmlupro_local.config import prefix_cache_dir
from mmlupro_local.datasets.dataset import Dataset, load_dataset
from mmlupro_local.datasets.questions import Question
from mmlupro_local.datasets.sampling import draw, shortfalls
from mmlupro_local.datasets.verify import verify
from mmlupro_local.engine import Engine, EngineError, EngineSettings, Generation, Job
from mmlupro_local.engine.prefix_cache import PrefixCache
from mmlupro_local.errors import DatasetError, MmluProError
from mmlupro_local.fitting import prepare_letter_prompts, prepare_prompts, round_ctx
from mmlupro_local.interrupts import first_interrupt_requests_stop
from mmlupro_local.model.gguf import read_gguf
from mmlupro_local.results.records import Identity, ResultRecord, RunHeader, SampleInfo
from mmlupro_local.results.store import ResultsWriter, StoreError, read_results
from mmlupro_local.run_config import MAX_PARALLEL as MAX_PARALLEL
from mmlupro_local.run_config import RunConfig as RunConfig
from mmlupro_local.run_config import RunConfigError as RunConfigError
from mmlupro_local.run_config import budget_floor, identity, settle_mode, settle_think_budget
from mmlupro_local.target import EngineFactory as EngineFactory
from mmlupro_local.target import LocalModel, ServedModel
from mmlupro_local.task.prompt import Prompt
from mmlupro_local.task.scoring import result_record
from mmlupro_local.task.stopping import Watchers

SERVER_PARALLEL = 4  # requests in flight when a server does not report its slots
Echo = Callable[[str], None]


@dataclass
class RunOutcome:
    path: Path
    sample_size: int
    already_done: int
    written: int
    records: list[ResultRecord]  # results for the selected questions, file order
    warnings: list[str]
    signum: int = 0  # the signal that interrupted the run, when one did
    failed: list[str] = field(default_factory=list)  # questions left unanswered, and why

    @property
    def interrupted(self) -> bool:
        return self.signum != 0


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


def _default_engine(model: Path, settings: EngineSettings) -> Engine:
    from mmlupro_local.engine.llama import LlamaEngine

    return LlamaEngine(model, settings)


Target = LocalModel | ServedModel


def open_target(config: RunConfig, engine_factory: EngineFactory | None = None) -> Target:
    if config.server is not None:
        return ServedModel(config.server, seed=config.sample.seed, stop=config.answer.stop,
                           chat=config.prompt.style == "chat")  # fmt: skip
    assert config.model is not None
    return LocalModel(config.model, config.model_source, config.engine,
                      engine_factory or _default_engine, config.chat_template)  # fmt: skip


def _context(config: RunConfig, target: Target, warnings: list[str]) -> int | None:
    """The context prompts must fit: --ctx, else a server's own; None: the run's choice
    (in-process) or whole prompts (a server that cannot count tokens)."""
    if not target.exact_counts:
        warnings.append(
            "the server cannot count tokens (no /tokenize, or a chat template it cannot "
            "render on its own): prompts are sent whole, never fitted to its context"
        )
        return None
    fixed = target.fixed_ctx
    if config.ctx is not None and fixed is not None and config.ctx > fixed:
        raise EngineError(
            f"--ctx {config.ctx} is more than the server gives a request ({fixed} tokens)",
            setting="server_ctx",
        )
    return config.ctx or fixed


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
    if config.auto and config.model is not None:  # before the engine settings are handed on
        from mmlupro_local.engine.handles import backend

        read_gguf(config.model)  # a wrong file is named before any mode is chosen for it

        config, line = settle_mode(config, backend=backend(config.engine.gpu_layers),
                                   recorded=_recorded_identity(config.out))  # fmt: skip
        if line:
            echo(line)
    target = open_target(config, engine_factory)
    try:
        config, notes = settle_think_budget(config, target.template_thinks)
        if config.parallel == 0:
            slots = target.slots or SERVER_PARALLEL
            echo(f"--parallel auto: {slots} requests in flight ("
                 + ("the server's slots)" if target.slots else "the server does not say how many it serves at once)"))  # fmt: skip
            config = replace(config, parallel=slots)
        return _run(config, dataset, sample, target, echo, progress, notes)
    finally:
        target.close()


def _recorded_identity(path: Path) -> Identity | None:
    """The identity of the results file a run would resume, if there is a readable one
    (a broken file is for the writer to report)."""
    if not path.is_file():
        return None
    try:
        header = read_results(path).header
    except MmluProError:
        return None
    return header.identity if header is not None else None


def _run(
    config: RunConfig,
    dataset: Dataset,
    sample: list[Question],
    target: Target,
    echo: Echo,
    progress: bool,
    notes: list[str],
) -> RunOutcome:
    ident = identity(config, target.key, dataset, target.server)
    with ResultsWriter(config.out, ident) as writer:
        warnings = [*writer.log.warnings, *notes]
        short = shortfalls(dataset.test, config.sample)
        if short:
            warnings.append(short)
        done = {q.question_id for q in sample if q.question_id in writer.log.results}
        todo = [q for q in sample if q.question_id not in done]
        echo(f"results: {config.out} ({len(done)} of {len(sample)} questions already there)")
        written, signum, failed = 0, 0, list[str]()
        if todo and writer.read_only_reason:
            raise StoreError(
                f"cannot write to {config.out}: {writer.read_only_reason}; {len(todo)} of "
                f"{len(sample)} questions are still to run. Make it writable or choose another --out."
            )
        if todo:
            ctx = _context(config, target, warnings)
            if config.memory_check:  # before loading: the weights and the smallest context
                target.check_memory(round_ctx(ctx or budget_floor(config)), warnings)
            engine = target.start()
            try:
                count = functools.lru_cache(maxsize=None)(engine.count_tokens)
                render = target.renderer(engine) if config.prompt.style == "chat" else None
                if config.method == "logprob":
                    prompts, n_ctx = prepare_letter_prompts(
                        todo, dataset.validation, config.prompt, ctx=config.ctx, render=render,
                        trained_ctx=target.trained_ctx, count_tokens=count, warnings=warnings)  # fmt: skip
                else:
                    prompts, n_ctx = prepare_prompts(
                        todo,
                        dataset.validation,
                        config.prompt,
                        max_tokens=config.budget,
                        ctx=ctx,
                        parallel=config.parallel,
                        render=render,
                        trained_ctx=target.trained_ctx,
                        count_tokens=count if target.exact_counts else _estimate_tokens,
                        warnings=warnings,
                        pad=target.fixed_ctx is None,
                        ctx_name="" if config.ctx else f"the server's context ({ctx} tokens)",
                    )
                if config.memory_check:
                    target.check_memory(n_ctx, warnings)
                target.check_cuts(max((p.text for p in prompts.values()), key=len), warnings)
                engine.open_context(n_ctx, config.parallel)
                cache = None
                if config.prefix_cache:
                    cache = PrefixCache(prefix_cache_dir(), int(config.prefix_cache_gb * 2**30))
                    engine.use_prefix_cache(cache, target.key)
                header = _run_record(config, dataset, target, ident, engine, len(sample),
                                     warnings, resumed=bool(writer.log.runs))  # fmt: skip
                writer.append_run(header)
                for text in warnings:
                    echo(f"warning: {text}")
                jobs = [_job(prompts[q.question_id], count if target.exact_counts else None)
                        for q in todo]  # fmt: skip
                written, signum, failed = _generate_all(
                    config, todo, prompts, jobs, engine, writer, progress, len(done), len(sample)
                )
                if cache is not None and cache.hits + cache.misses:
                    echo(_cache_summary(cache))
            finally:
                engine.close()
        records = [
            writer.log.results[q.question_id] for q in sample if q.question_id in writer.log.results
        ]
    return RunOutcome(config.out, len(sample), len(done), written, records, warnings, signum,
                      failed)  # fmt: skip


def _job(prompt: Prompt, count: Callable[[str], int] | None) -> Job:
    return Job(prompt.text, prompt.prefix_chars, prompt.messages,
               count(prompt.text) if count else None, prompt.choices)  # fmt: skip


def _estimate_tokens(text: str) -> int:
    """A server that cannot count: a rough count (4 characters a token), only to size
    nothing; such prompts are never fitted."""
    return len(text) // 4 + 1


def _cache_summary(cache: PrefixCache) -> str:
    text = f"prefix cache: {cache.hits} loaded, {cache.misses} decoded, {cache.saved} saved"
    if cache.not_saved:
        reasons = sorted(set(cache.not_saved))
        text += f", {len(cache.not_saved)} not saved ({'; '.join(reasons)})"
    return text


def _run_record(
    config: RunConfig,
    dataset: Dataset,
    target: Target,
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
        model=target.record(),
        dataset={
            "name": dataset.name,
            "sha256": dataset.sha256,
            "source": dataset.meta.source,
            "revision": dataset.meta.revision,
        },
        engine={
            **engine.describe(),
            **({"mode_chosen": config.mode_reason} if config.mode_reason else {}),
        },
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


def _resume_hint(config: RunConfig, saved: int, total: int) -> str:
    again = shlex.join(config.command) if config.command else "the same command"
    return f"{saved} of {total} questions are saved in {config.out}. Resume with:\n  {again}"


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
    jobs: list[Job],
    engine: Engine,
    writer: ResultsWriter,
    progress: bool,
    done: int,
    total: int,
) -> tuple[int, int, list[str]]:
    """Generate, score and append each answer as it comes; (written, signal, failures)."""
    written = correct = 0
    failed: list[str] = []
    speed = Speed()
    bar = tqdm(
        total=total,
        initial=done,
        disable=not progress,
        file=sys.stderr,
        unit="q",
        dynamic_ncols=True,
    )
    watchers = Watchers(config.answer, [job.text for job in jobs])
    with bar, first_interrupt_requests_stop() as stop:
        if config.method == "logprob":
            answers = engine.score_many(jobs, should_stop=stop.is_set)
        else:
            answers = engine.generate_many(jobs, max_tokens=config.budget, new_watcher=watchers,
                                           should_stop=stop.is_set)  # fmt: skip
        try:
            for index, generation in answers:
                question = todo[index]
                watcher = watchers.made.pop(index, None)
                if generation.error:  # nothing written: a rerun asks again
                    failed.append(f"question {question.question_id}: {generation.error}")
                    bar.update(1)
                    continue
                record = result_record(
                    question,
                    prompts[question.question_id],
                    generation,
                    seed=config.sample.seed,
                    extract_mode=config.answer.extract_mode,
                    strip_thinking=config.answer.strip_thinking,
                    thinking_tokens=watcher.thinking_tokens if watcher else 0,
                    think_cut=watcher.think_cut if watcher else False,
                )
                writer.append_result(record)
                written += 1
                correct += record.correct
                speed.add(generation)
                bar.set_postfix_str(f"acc {correct / written:.1%}, {speed}", refresh=False)
                bar.update(1)
                if stop.is_set():
                    return written, stop.signum, failed
        except EngineError as exc:  # mid-run (a server gone): what is saved, how to go on
            exc.after = _resume_hint(config, done + written, total)
            raise
    return written, stop.signum, failed
