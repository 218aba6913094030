"""The one place that drives the stages of an evaluation run: dataset -> target ->
plan -> prompts -> engine -> score -> store."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from mmlupro_local import __version__
from mmlupro_local.config import prefix_cache_dir
from mmlupro_local.datasets.dataset import Dataset, load_dataset
from mmlupro_local.datasets.questions import Question
from mmlupro_local.datasets.sampling import draw, shortfalls
from mmlupro_local.datasets.summary import population_sizes
from mmlupro_local.datasets.verify import verify
from mmlupro_local.engine import Engine, EngineError, Job, round_ctx
from mmlupro_local.engine.prefix_cache import PrefixCache
from mmlupro_local.errors import DatasetError, MmluProError
from mmlupro_local.results.estimates import count_into, strict
from mmlupro_local.results.records import (
    TOOL_NAME,
    Identity,
    ResultRecord,
    RunHeader,
    SampleInfo,
    SessionEnd,
)
from mmlupro_local.results.report import categories_union, load_report
from mmlupro_local.results.store import ResultsWriter, StoreError, read_results
from mmlupro_local.run.interrupts import first_interrupt_requests_stop
from mmlupro_local.run.plan import RunPlan, settle
from mmlupro_local.run.progress import progress_bar
from mmlupro_local.run.request import RunRequest
from mmlupro_local.run.saving import Acknowledged
from mmlupro_local.run.targets import EngineFactory, Target
from mmlupro_local.run.thinking_cost import ThinkingCost
from mmlupro_local.task.methods import Fitting
from mmlupro_local.task.prompt import Prompt
from mmlupro_local.task.stopping import Watchers
from mmlupro_local.task.wording import wording_for

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


def run(
    request: RunRequest,
    *,
    echo: Echo,
    engine_factory: EngineFactory | None = None,
    progress: bool = True,
) -> RunOutcome:
    dataset = load_dataset(request.dataset)
    _check_dataset(dataset)
    sample = draw(dataset.test, request.sample)
    # the dataset's wording decides the stop word, before a server is told it
    request = request.worded(wording_for(dataset.language))
    target = request.target.open(request, engine_factory)
    try:
        plan = settle(request, target, _recorded_identity(request.out))
        for line in plan.lines:
            echo(line)
        return _run(plan, dataset, sample, target, echo, progress)
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
    plan: RunPlan,
    dataset: Dataset,
    sample: list[Question],
    target: Target,
    echo: Echo,
    progress: bool,
) -> RunOutcome:
    request = plan.request
    ident = plan.identity(target, dataset)
    with ResultsWriter(request.out, ident) as writer:
        warnings = [*writer.log.warnings, *plan.notes]
        short = shortfalls(dataset.test, request.sample)
        if short:
            warnings.append(short)
        answered = writer.log.results.keys() | writer.log.conflicts.keys()
        done = {q.question_id for q in sample if q.question_id in answered}
        todo = [q for q in sample if q.question_id not in done]
        echo(f"results: {request.out} ({len(done)} of {len(sample)} questions already there)")
        written, signum, failed = 0, 0, list[str]()
        if todo and writer.read_only_reason:
            raise StoreError(
                f"cannot write to {request.out}: {writer.read_only_reason}; {len(todo)} of "
                f"{len(sample)} questions are still to run. Make it writable or choose another --out."
            )
        if todo:
            ctx = target.context(request.ctx, warnings)
            # before loading: the weights and the smallest context
            target.check_memory(round_ctx(ctx or plan.budget_floor), warnings, plan.parallel)
            engine = target.start(plan)
            try:
                count = target.counts(engine)
                prompts, n_ctx = _prompts(plan, todo, dataset, target, ctx, count, warnings)
                target.check_memory(n_ctx, warnings, plan.parallel)
                target.check_cuts(max((p.text for p in prompts.values()), key=len), warnings)
                engine.open_context(n_ctx, plan.parallel)
                cache = None
                if request.prefix_cache and target.uses_prefix_cache:
                    cache = PrefixCache(prefix_cache_dir(), int(request.prefix_cache_gb * 2**30))
                    engine.use_prefix_cache(cache, target.key)
                header = _run_record(
                    plan,
                    dataset,
                    target,
                    ident,
                    engine,
                    len(sample),
                    warnings,
                    resumed=bool(writer.log.runs),
                )
                writer.append_run(header)
                for text in warnings:
                    echo(f"warning: {text}")
                jobs = [
                    _job(prompts[q.question_id], count.checkable(prompts[q.question_id].text))
                    for q in todo
                ]
                # the file's answers over every category its runs sampled, as the report
                counts = count_into({}, writer.log.results.values(), strict)
                written, signum, failed = _generate_all(
                    plan,
                    todo,
                    prompts,
                    jobs,
                    engine,
                    writer,
                    progress,
                    len(done),
                    len(sample),
                    population_sizes(
                        dataset.test,
                        categories_union(
                            [
                                *(r.sample.categories for r in writer.log.runs),
                                request.sample.categories,
                            ]
                        ),
                    ),
                    counts,
                )
                if cache is not None and cache.hits + cache.misses:
                    echo(_cache_summary(cache))
                new = [
                    writer.log.results[q.question_id]
                    for q in todo
                    if q.question_id in writer.log.results
                ]
                for line in target.after_run(new):
                    echo(line)
                used = target.used()
                if used and written:
                    writer.append_end(SessionEnd(finished=_now(), written=written, used=used))
            finally:
                engine.close()
        records = [
            writer.log.results[q.question_id] for q in sample if q.question_id in writer.log.results
        ]
    return RunOutcome(
        request.out, len(sample), len(done), written, records, warnings, signum, failed
    )


def _prompts(
    plan: RunPlan,
    todo: list[Question],
    dataset: Dataset,
    target: Target,
    ctx: int | None,
    count: Callable[[str], int],
    warnings: list[str],
) -> tuple[dict[int, Prompt], int]:
    request = plan.request
    render = target.renderer() if request.prompt.style == "chat" else None
    fitting = Fitting(
        budget=plan.budget,
        ctx=ctx,
        asked_ctx=request.ctx,
        render=render,
        trained_ctx=target.trained_ctx,
        count=count,
        warnings=warnings,
        pad=target.fixed_ctx is None,
        ctx_name="" if request.ctx else f"the server's context ({ctx} tokens)",
    )
    return request.answering.prepare(
        todo, dataset.validation, request.prompt, plan.answer.wording, fitting
    )


def _job(prompt: Prompt, tokens: int | None) -> Job:
    return Job(prompt.text, prompt.prefix_chars, prompt.messages, tokens, prompt.choices)


def _cache_summary(cache: PrefixCache) -> str:
    text = f"prefix cache: {cache.hits} loaded, {cache.misses} decoded, {cache.saved} saved"
    if cache.not_saved:
        reasons = sorted(set(cache.not_saved))
        text += f", {len(cache.not_saved)} not saved ({'; '.join(reasons)})"
    return text


def _run_record(
    plan: RunPlan,
    dataset: Dataset,
    target: Target,
    ident: Identity,
    engine: Engine,
    sample_size: int,
    warnings: list[str],
    *,
    resumed: bool,
) -> RunHeader:
    spec = plan.request.sample
    return RunHeader(
        identity=ident,
        model=target.record(),
        dataset={
            "name": dataset.name,
            "sha256": dataset.sha256,
            "source": dataset.meta.source,
            "revision": dataset.meta.revision,
            **({"language": dataset.language} if dataset.language else {}),
        },
        engine={
            **engine.describe(),
            **({"mode_chosen": plan.mode_reason} if plan.mode_reason else {}),
        },
        sample=SampleInfo(
            seed=spec.seed,
            per_category=spec.per_category,
            fraction=spec.fraction,
            categories=tuple(spec.categories),
            description=spec.describe(),
            size=sample_size,
            precision=plan.request.precision,
            max_questions=plan.request.max_questions,
        ),
        started=_now(),
        resumed=resumed,
        tool={"name": TOOL_NAME, "version": __version__},
        command=tuple(plan.request.command),
        warnings=tuple(warnings),
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _resume_hint(request: RunRequest, saved: int, total: int) -> str:
    again = shlex.join(request.command) if request.command else "the same command"
    return f"{saved} of {total} questions are saved in {request.out}. Resume with:\n  {again}"


def _generate_all(
    plan: RunPlan,
    todo: list[Question],
    prompts: dict[int, Prompt],
    jobs: list[Job],
    engine: Engine,
    writer: ResultsWriter,
    progress: bool,
    done: int,
    total: int,
    sizes: dict[str, int],
    counts: dict[str, tuple[int, int]],
) -> tuple[int, int, list[str]]:
    """Generate, score and append each answer as it comes; (written, signal, failures).
    The bar shows the estimated full score so far (post-stratified, from `counts`)."""
    failed: list[str] = []
    watchers = Watchers(plan.answer, [job.text for job in jobs])
    with (
        progress_bar(total, done, progress) as bar,
        first_interrupt_requests_stop() as stop,
        Acknowledged(writer, bar, sizes, counts) as saved,
    ):
        method = plan.request.answering
        cost = None
        if plan.thinks:  # said above the bar, on stderr with the rest
            cost = ThinkingCost(len(todo), plan.parallel, lambda t: bar.write(t, file=sys.stderr))
        answers = method.ask(
            engine, jobs, budget=plan.budget, watchers=watchers, should_stop=stop.is_set
        )
        try:
            for index, generation in answers:
                question = todo[index]
                watcher = watchers.made.pop(index, None)
                if generation.error:  # nothing written: a rerun asks again
                    failed.append(f"question {question.question_id}: {generation.error}")
                    bar.update(1)
                    continue
                record = method.record(
                    question,
                    prompts[question.question_id],
                    generation,
                    answer=plan.answer,
                    seed=plan.request.sample.seed,
                    watcher=watcher,
                )
                saved.add(record, generation)
                if cost is not None:
                    cost.add(record)
                if stop.is_set():
                    saved.flush()
                    return saved.written, stop.signum, failed
            saved.flush()
            score = load_report(plan.request.out).score if progress else None
            if score is not None:
                saved.finish(score.strict)
        except EngineError as exc:  # mid-run (a server gone): what is saved, how to go on
            saved.flush()
            if stop.is_set():  # a request cut short by the stop the user asked for
                return saved.written, stop.signum, failed
            exc.after = _resume_hint(plan.request, done + saved.written, total)
            raise
    return saved.written, stop.signum, failed
