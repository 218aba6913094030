"""`mmlupro-local run`: evaluate models, resumably: options -> requests -> runs -> print."""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from mmlupro_local.cli import options as o
from mmlupro_local.engine.server import redact_command
from mmlupro_local.results.figures import category_figures, render_table
from mmlupro_local.results.report import headline, load_report
from mmlupro_local.run.interrupts import Terminated, signals_interrupt
from mmlupro_local.run.precision import run_to_precision
from mmlupro_local.run.request import RunRequest, default_out
from mmlupro_local.run.runner import run
from mmlupro_local.run.several import check_all, share_mode, summary
from mmlupro_local.run.targets import TargetOptionError, TargetSpec, specs_from_options
from mmlupro_local.task.methods import method_named

# what is about generating, which --method logprob does not do (nor a server's model)
GENERATION_ONLY = (*o.answer_options.names, "lookup", "parallel", *o.server_options.names)


@click.command("run")
@click.argument("models", nargs=-1)
@o.config_option
@o.sample_options
@o.method_option
@o.prompt_options
@o.model_options
@o.answer_options
@click.option(
    "--ctx",
    type=click.IntRange(256),
    help="Context size [default: fits the longest prompt + budget].",
)
@o.engine_options
@o.parallel_option
@click.option(
    "--reference",
    is_flag=True,
    help="One question at a time without lookup (--parallel 1 --lookup 0): on a CPU the "
    "same answers as any mode, only slower.",
)
@click.option(
    "--precision",
    type=o.FiniteFloat(0, min_open=True),
    metavar="POINTS",
    help="Extend the seeded sample until the estimated full score's 95 % interval "
    "is within +/- POINTS (e.g. 2.5); resumable.",
)
@click.option(
    "--max-questions",
    type=click.IntRange(1),
    help="With --precision: never more questions than this.",
)
@o.server_options
@o.output_options
@o.dataset_option
def run_cmd(models: tuple[str, ...], **options: Any) -> None:
    """Evaluate MODELS (GGUF files, or hf://OWNER/REPO/FILE.gguf) on MMLU-Pro, or the
    model a --server serves; results are saved as they come. Several models run one
    after another on the same sample, then one report compares each with the first.

    Run the same command again to resume: finished questions are skipped.
    Ctrl-C stops after the current question.

    \b
    Examples:
      mmlupro-local run model.gguf --per-category 10
      mmlupro-local run model.gguf --fraction 0.1 --style chat
      mmlupro-local run model.gguf --per-category 50 --method logprob
      mmlupro-local run qwen3.gguf --per-category 5 --style chat --think-budget 2048
      mmlupro-local run model.gguf --full --out full.jsonl
      mmlupro-local run q8_0.gguf q4_k_m.gguf --per-category 20 --out-dir quant/
      mmlupro-local run hf://bartowski/SmolLM2-135M-Instruct-GGUF/*Q4_K_M.gguf --per-category 2
      mmlupro-local run --server http://127.0.0.1:8080/v1 --per-category 10 --parallel auto
      mmlupro-local run --config run.yaml
    """
    sample = o.sample_spec(options)
    _refuse_contradictions(options)
    if options["reference"]:
        options.update(parallel=1, lookup=0)
    targets = _targets(models, options)
    check_all(targets)
    outs = _outs(targets, options, sample.seed)
    requests = [
        RunRequest(
            target=target,
            out=out,
            dataset=options["dataset_name"],
            sample=sample,
            prompt=o.prompt_settings(options),
            answer=o.answer_settings(options),
            method=options["method"],
            max_tokens=options["max_tokens"],
            think_budget=options["think_budget"],
            ctx=options["ctx"],
            parallel=options["parallel"],
            precision=options["precision"],
            max_questions=options["max_questions"],
            prefix_cache=options["prefix_cache"],
            command=redact_command(sys.argv),
        )
        for target, out in zip(share_mode(targets), outs, strict=True)
    ]
    for i, request in enumerate(requests):
        if len(requests) > 1:
            click.echo(f"== model {i + 1} of {len(requests)}: {request.target.label}", err=True)
        _run_one(request, o.show_progress(options))
    if len(requests) > 1:
        click.echo(summary([r.out for r in requests], [t.stem for t in targets]))


def _outs(targets: list[TargetSpec], options: dict[str, Any], seed: int) -> list[Path]:
    if options["out"] is not None:
        if len(targets) > 1:
            raise click.UsageError(
                f"--out names one file and {len(targets)} models were given; leave it out and "
                "each gets its own file in --out-dir"
            )
        return [o.out_path(options["out"])]
    outs = [
        default_out(
            t.stem, options["style"], options["shots"], seed, options["out_dir"], options["method"]
        )
        for t in targets
    ]
    clash = {out for out in outs if outs.count(out) > 1}
    if clash:
        raise click.UsageError(
            f"two models would write to {sorted(clash)[0]}: give files with different names"
        )
    return outs


def _refuse_contradictions(options: dict[str, Any]) -> None:
    if not method_named(options["method"]).generates:
        given = o.first_given(GENERATION_ONLY)
        if given:
            raise click.UsageError(
                f"{given} is about generating answers; --method logprob generates nothing (it "
                "scores each letter in one forward pass, in-process, one question at a time). "
                "Leave it out, or use --method cot"
            )
    if options["max_questions"] is not None and options["precision"] is None:
        raise click.UsageError("--max-questions caps --precision; give --precision POINTS")
    if options["precision"] is not None and options["full"]:
        raise click.UsageError("--precision grows a sample: give --per-category N or --fraction F")
    if options["reference"]:
        given = o.first_given(("parallel", "lookup"))
        if given:
            raise click.UsageError(f"--reference is --parallel 1 --lookup 0: leave out {given}")
    template = options["chat_template"]
    if template is not None and options["style"] != "chat":
        raise click.UsageError(f"{o.where('chat_template', '--chat-template')} is for --style chat")
    if template is not None and not template.is_file():
        raise click.BadParameter(
            f"{template} is not a file", param_hint=o.where("chat_template", "--chat-template")
        )


def _targets(models: tuple[str, ...], options: dict[str, Any]) -> list[TargetSpec]:
    """What the run evaluates: the registered kind its options name (run.targets)."""
    try:
        return specs_from_options(models, options, o.first_given)
    except TargetOptionError as exc:
        raise click.UsageError(str(exc)) from None


def _run_one(request: RunRequest, progress: bool) -> None:
    try:
        with signals_interrupt():
            go = run if request.precision is None else run_to_precision
            outcome = go(
                request,
                echo=lambda text: click.echo(text, err=True),
                progress=progress,
                engine_factory=o.engine_factory(),
            )
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        _interrupted(request.out, None, None, signum)
    rows, overall = category_figures(outcome.records)
    if outcome.records:
        click.echo(render_table(rows, overall))
        sentence = headline(load_report(outcome.path))
        if sentence:
            click.echo(sentence)
    if outcome.interrupted:
        _interrupted(outcome.path, len(outcome.records), outcome.sample_size, outcome.signum)
    if outcome.failed:
        for line in outcome.failed[:5]:
            click.echo(f"error: {line}", err=True)
        more = f" (and {len(outcome.failed) - 5} more)" if len(outcome.failed) > 5 else ""
        raise click.ClickException(
            f"{len(outcome.failed)} questions have no answer{more}; nothing was recorded for "
            f"them, so the same command asks again once the cause is fixed"
        )
    if outcome.written == 0 and outcome.already_done == outcome.sample_size:
        click.echo(f"all {outcome.sample_size} questions were already in {outcome.path}", err=True)


def _interrupted(path: Path, saved: int | None, size: int | None, signum: int) -> NoReturn:
    """Say what is saved and how to go on, then exit as a program killed by `signum`
    would (130 for Ctrl-C, 143 for SIGTERM)."""
    again = shlex.join(redact_command(sys.argv)) if sys.argv else "the same command"
    name = "Interrupted" if signum == signal.SIGINT else f"Stopped by {signal.Signals(signum).name}"
    if saved is None:
        held = f"{path} keeps the results it had" if path.exists() else "no results were written"
        where = f"before any question was answered; {held}"
    else:
        where = f"{saved} of {size} questions are saved in {path}"
    click.echo(f"\n{name}: {where}. Resume with:\n  {again}", err=True)
    raise SystemExit(128 + signum)
