"""`mmlupro-local run`: evaluate a GGUF model, resumably."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import click

from mmlupro_local.cli.app import CliState
from mmlupro_local.cli.dataset_cmds import dataset_option
from mmlupro_local.cli.report_cmds import unique_labels
from mmlupro_local.config import ConfigError, load_run_config
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.engine import KV_TYPES, EngineSettings, KvType
from mmlupro_local.engine.server import ServerSettings
from mmlupro_local.interrupts import Terminated, signals_interrupt
from mmlupro_local.model.hardware import physical_cores
from mmlupro_local.model.source import resolve_model
from mmlupro_local.results.compare import compare, render_comparison
from mmlupro_local.results.figures import category_figures, render_table
from mmlupro_local.results.report import load_report, mode_note, render
from mmlupro_local.run_config import AutoSetting
from mmlupro_local.runner import MAX_PARALLEL, EngineFactory, RunConfig, run
from mmlupro_local.task.extract import EXTRACT_MODES, ExtractMode
from mmlupro_local.task.prompt import MAX_SHOTS, STYLES, PromptSettings, Style
from mmlupro_local.task.settings import MAX_TOKENS, METHODS, THINK_BUDGET, AnswerSettings, Method


def _load_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Options from YAML become defaults (flags given win), each checked here so that a
    bad value names the file and the key the user wrote, not a flag they never typed."""
    if value is None:
        return value
    names: dict[str, str] = {}
    for p in ctx.command.params:
        if p.name and p.name != "config":
            names[p.name] = p.name
            names.update((o.lstrip("-"), p.name) for o in p.opts if o.startswith("--"))
    names["model"] = "models"  # one model or a list, as 'model:' or 'models:'
    options = load_run_config(value, names)
    defaults = {}
    for name, (key, raw) in options.items():
        if name == "models":  # lists arrive comma-joined
            raw = [part.strip() for part in str(raw).split(",") if part.strip()]
        target = next(p for p in ctx.command.params if p.name == name)
        try:
            target.type_cast_value(ctx, raw)
        except click.BadParameter as exc:
            raise ConfigError(f"{value}: {key}: {exc.message}") from None
        defaults[name] = raw
    ctx.meta["config_keys"] = {name: f"{value}: {key}" for name, (key, _) in options.items()}
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _where(name: str, flag: str) -> str:
    """How to name an option in an error: the flag, or the config file and key it came from."""
    ctx = click.get_current_context()
    if ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT_MAP:
        return str(ctx.meta.get("config_keys", {}).get(name, flag))
    return flag


def categories_callback(ctx: click.Context, param: click.Parameter, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = tuple(str(item).strip() for item in items if str(item).strip())
    if not names:
        raise click.BadParameter(
            f"{value!r} names no category; give names such as 'math,law', or leave it out "
            "for all categories",
            param_hint=_where("categories", "--categories"),
        )
    return names


def number_or_auto(value: str, name: str, low: int, high: int) -> int | None:
    """An option's number, or None for 'auto' (the run decides)."""
    if str(value).strip().lower() == "auto":
        return None
    flag = "--" + name
    try:
        number = int(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a number or 'auto'", param_hint=_where(name, flag)
        ) from None
    if not low <= number <= high:
        raise click.BadParameter(f"must be between {low} and {high}", param_hint=_where(name, flag))
    return number


def parallel_value(value: str) -> int | None:
    return number_or_auto(value, "parallel", 1, MAX_PARALLEL)


def engine_mode(parallel: str, lookup: str, threads: int | None, reference: bool,
                server: bool) -> tuple[int, int, frozenset[AutoSetting]]:  # fmt: skip
    """(parallel, lookup, the settings left to the run) from the flags; --reference is
    one question at a time without lookup."""
    n_parallel: int | None
    n_lookup: int | None
    if reference:
        given = _first_given(("parallel", "lookup"))
        if given:
            raise click.UsageError(f"--reference is --parallel 1 --lookup 0: leave out {given}")
        n_parallel, n_lookup = 1, 0
    else:
        n_parallel, n_lookup = parallel_value(parallel), number_or_auto(lookup, "lookup", 0, 64)
    if server:  # 'auto' parallel (0) is its slots; threads and lookup mean nothing to it
        return n_parallel or 0, 0, frozenset()
    auto = set[AutoSetting]()
    if threads is None:  # physical cores, or what a resumed file used
        auto.add("threads")
    if n_parallel is None:
        auto.add("parallel")
    if n_lookup is None:
        auto.add("lookup")
    return n_parallel or 1, n_lookup or 0, frozenset(auto)


def _engine_factory() -> EngineFactory | None:
    state = click.get_current_context().find_object(CliState)
    return state.engine_factory if state else None


def _interrupted(path: Path, saved: int | None, size: int | None, signum: int) -> NoReturn:
    """Say what is saved and how to go on, then exit as a program killed by `signum`
    would (130 for Ctrl-C, 143 for SIGTERM)."""
    again = shlex.join(sys.argv) if sys.argv else "the same command"
    name = "Interrupted" if signum == signal.SIGINT else f"Stopped by {signal.Signals(signum).name}"
    if saved is None:
        held = f"{path} keeps the results it had" if path.exists() else "no results were written"
        where = f"before any question was answered; {held}"
    else:
        where = f"{saved} of {size} questions are saved in {path}"
    click.echo(f"\n{name}: {where}. Resume with:\n  {again}", err=True)
    raise SystemExit(128 + signum)


def _out_path(text: str) -> Path:
    """--out as a file path: an empty value or a directory is a mistake to name."""
    if not text.strip():
        raise click.BadParameter("is empty; give a file path such as results.jsonl",
                                 param_hint=_where("out", "--out"))  # fmt: skip
    path = Path(text).expanduser()
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise click.BadParameter(
            f"{text!r} is a directory; give a file path such as {path / 'results.jsonl'}",
            param_hint=_where("out", "--out"),
        )
    return path


RESULTS_DIR = "mmlupro-results"


def default_out(
    model: Path,
    style: str,
    shots: int,
    seed: int,
    folder: Path = Path(RESULTS_DIR),
    method: str = "cot",
) -> Path:
    kind = "" if method == "cot" else f"{method}."
    return folder / f"{model.stem}.{kind}{style}.{shots}shot.seed{seed}.jsonl"


# options that shape the in-process engine; a server has its own flags for these
IN_PROCESS_ONLY = ("threads", "gpu_layers", "batch", "flash_attn", "kv_type", "lookup",
                   "prefix_cache", "memory_check", "hf_repo", "hf_file", "chat_template",
                   "think_budget")  # fmt: skip
# options of generation, which --method logprob does not do
GENERATION_ONLY = ("max_tokens", "extract_mode", "strip_thinking", "early_stop", "lookup",
                   "think_budget", "parallel", "server")  # fmt: skip


def _first_given(names: Sequence[str]) -> str | None:
    """How to name the first of these options the user gave (its flag, or the config key
    it came from); None when all were left to their defaults."""
    ctx = click.get_current_context()
    for name in names:
        if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT:
            param = next(p for p in ctx.command.params if p.name == name)
            return _where(name, param.opts[0])
    return None


def _refuse_for_logprob() -> None:
    given = _first_given(GENERATION_ONLY)
    if given:
        raise click.UsageError(
            f"{given} is about generating answers; --method logprob generates nothing (it "
            "scores each letter in one forward pass, in-process, one question at a time). "
            "Leave it out, or use --method cot"
        )


def _server_settings(url: str, models: tuple[str, ...], server_model: str | None, timeout: float,
                     retries: int) -> ServerSettings:  # fmt: skip
    if models:
        raise click.UsageError(f"give MODEL ({models[0]}) or --server, not both")
    given = _first_given(IN_PROCESS_ONLY)
    if given:
        raise click.UsageError(
            f"{given} applies to the in-process engine; with --server, set it on the server "
            "(its own flags decide threads, offload and batching)"
        )
    return ServerSettings(url=url, model=server_model or "", timeout=timeout, retries=retries)


def server_out(settings: ServerSettings, style: str, shots: int, seed: int, folder: Path,
               method: str = "cot") -> Path:  # fmt: skip
    """The default results file for a server: named after the model asked for, else the
    server's host and port."""
    if settings.model:
        name = Path(settings.model).name.removesuffix(".gguf")
    else:
        name = settings.root.split("://", 1)[1].replace(":", "-").replace("/", "-")
    return default_out(Path(f"{name}.gguf"), style, shots, seed, folder, method)


@click.command("run")
@click.argument("models", nargs=-1)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="YAML file of options (keys as below); flags given here win.",
)
@click.option("--per-category", type=int, help="Questions per category (seeded random draw).")
@click.option(
    "--fraction", type=float, help="Fraction of each category (exact total, largest remainder)."
)
@click.option("--full", is_flag=True, help="All 12,032 test questions.")
@click.option(
    "--categories", callback=categories_callback, help="Only these categories (comma-separated)."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Sample seed (also seeds guesses)."
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default=RunConfig.method,
    show_default=True,
    help="cot: the official chain of thought, generated (the reference). logprob: the Open "
    "LLM Leaderboard v2's 5-shot letter choice, each letter scored in one forward pass "
    "(fast; comparable with the leaderboard's MMLU-Pro figures, not with cot's).",
)
@click.option(
    "--style",
    type=click.Choice(STYLES),
    default=PromptSettings.style,
    show_default=True,
    help="completion: official prompt; chat: the model's chat template.",
)
@click.option(
    "--chat-template",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A Jinja chat template file to use instead of the model's (--style chat).",
)
@click.option("--shots", type=click.IntRange(0, MAX_SHOTS), default=MAX_SHOTS, show_default=True)
@click.option(
    "--strip-options/--no-strip-options",
    default=PromptSettings.strip_options,
    show_default=True,
    help="Strip whitespace around options (hides the answer leak; not official).",
)
@click.option(
    "--extract",
    "extract_mode",
    type=click.Choice(EXTRACT_MODES),
    default=AnswerSettings.extract_mode,
    show_default=True,
    help="Level-1 match to use: first (official) or last.",
)
@click.option(
    "--strip-thinking/--keep-thinking",
    default=AnswerSettings.strip_thinking,
    show_default=True,
    help="Ignore <think> blocks when extracting the answer.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    help=f"Generation budget [default: {MAX_TOKENS}, plus the think budget when there is one].",
)
@click.option(
    "--think-budget",
    type=click.IntRange(0),
    metavar="N",
    help="Close a <think> block after N tokens and force the answer ('</think>', then 'The "
    f"answer is ('); 0: never [default: {THINK_BUDGET} when the chat template thinks, else never].",
)
@click.option(
    "--early-stop/--no-early-stop",
    default=AnswerSettings.early_stop,
    show_default=True,
    help="End generation once 'answer is (X)' appeared (same prediction, less time).",
)
@click.option(
    "--ctx",
    type=click.IntRange(256),
    help="Context size [default: fits the longest prompt + budget].",
)
@click.option("--threads", type=click.IntRange(1), help="CPU threads [default: physical cores].")
@click.option(
    "--gpu-layers",
    type=int,
    default=EngineSettings.gpu_layers,
    show_default=True,
    help="Layers to offload (-1: all; Metal).",
)
@click.option(
    "--batch",
    type=click.IntRange(32),
    default=EngineSettings.batch,
    show_default=True,
    help="Prompt batch size.",
)
@click.option(
    "--flash-attn/--no-flash-attn",
    default=EngineSettings.flash_attn,
    show_default=True,
    help="Flash attention: on CPU it reads prompts faster but generates slower, above all "
    "with --parallel or --lookup ('bench' measures both). Results differ slightly without it.",
)
@click.option(
    "--kv-type",
    type=click.Choice(KV_TYPES),
    default=EngineSettings.kv_type,
    show_default=True,
    help="KV cache type: q8_0 halves its memory (slower on CPU, measured); needs flash attention.",
)
@click.option(
    "--parallel",
    default="auto",
    show_default=True,
    help="Questions decoded together: a number, or 'auto' (a rule on backend, cores, model "
    "size and questions per category; a resumed file keeps what it recorded).",
)
@click.option(
    "--lookup",
    default="auto",
    show_default=True,
    metavar="N|auto",
    help="Prompt-lookup decoding: check up to N (0-64) guessed tokens per step (copied from "
    "where the last tokens occurred before); fast on repetitive answers. 'auto': the same "
    "rule as --parallel.",
)
@click.option(
    "--reference",
    is_flag=True,
    help="One question at a time without lookup (--parallel 1 --lookup 0): bit-stable with "
    "files of releases before the fast defaults.",
)
@click.option(
    "--prefix-cache/--no-prefix-cache",
    default=RunConfig.prefix_cache,
    show_default=True,
    help="Save each category prefix's KV state in the user cache and reuse it.",
)
@click.option(
    "--memory-check/--no-memory-check",
    default=RunConfig.memory_check,
    show_default=True,
    help="Refuse a model whose weights and KV cache (estimated from its metadata) exceed this machine's memory.",
)
@click.option(
    "--server",
    metavar="URL",
    help="Evaluate the model an OpenAI-compatible server serves (vLLM, SGLang, llama-server, "
    "Ollama), e.g. http://127.0.0.1:8080/v1; the API key, if any, from MMLUPRO_API_KEY or "
    "OPENAI_API_KEY.",
)
@click.option("--server-model", metavar="NAME", help="The served model (when it serves several).")
@click.option(
    "--request-timeout",
    type=click.FloatRange(0, min_open=True),
    default=ServerSettings.timeout,
    show_default=True,
    help="Seconds a server request may go without sending anything.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 20),
    default=ServerSettings.retries,
    show_default=True,
    help="Further attempts after a transient server failure (doubling backoff from 1 s).",
)
@click.option("--hf-repo", help="A hub model repository (OWNER/REPO[@REVISION]), with --hf-file.")
@click.option("--hf-file", help="The GGUF file in --hf-repo, or a pattern such as '*Q4_K_M.gguf'.")
@click.option("--out", help="Results JSONL file (one model).")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(RESULTS_DIR),
    show_default=True,
    help="Where results files are named after their model, when --out is not given.",
)
@click.option("--progress/--no-progress", default=True, help="Show the progress bar.")
@dataset_option
def run_cmd(models: tuple[str, ...], per_category: int | None, fraction: float | None, full: bool,
            categories: tuple[str, ...], seed: int, method: Method, style: Style, chat_template: Path | None, shots: int, strip_options: bool,
            extract_mode: ExtractMode, strip_thinking: bool, max_tokens: int | None, think_budget: int | None, early_stop: bool, ctx: int | None,
            threads: int | None, gpu_layers: int, batch: int, flash_attn: bool, kv_type: KvType, parallel: str, lookup: str, reference: bool, prefix_cache: bool, memory_check: bool, server: str | None, server_model: str | None, request_timeout: float, retries: int, hf_repo: str | None, hf_file: str | None, out: str | None, out_dir: Path, progress: bool,
            dataset_name: str) -> None:  # fmt: skip
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
    chosen = sum(x for x in (per_category is not None, fraction is not None, full))
    if chosen != 1:
        raise click.UsageError("choose exactly one of --per-category N, --fraction F or --full")
    if method == "logprob":
        _refuse_for_logprob()
    if chat_template is not None and style != "chat":
        raise click.UsageError(f"{_where('chat_template', '--chat-template')} is for --style chat")
    if chat_template is not None and not chat_template.is_file():
        raise click.BadParameter(f"{chat_template} is not a file",
                                 param_hint=_where("chat_template", "--chat-template"))  # fmt: skip
    remote, targets = None, list[tuple[Path | None, str]]()  # (model file, its hub source)
    if server is not None:
        remote = _server_settings(server, models, server_model, request_timeout, retries)
        targets.append((None, ""))
    else:
        if server_model:
            raise click.UsageError("--server-model names a model of --server; give --server URL")
        targets = _model_files(models, hf_repo, hf_file)
    if out is not None and len(targets) > 1:
        raise click.UsageError(
            f"--out names one file and {len(targets)} models were given; leave it out and "
            "each gets its own file in --out-dir"
        )
    outs = [_out_path(out) if out is not None else
            (server_out(remote, style, shots, seed, out_dir, method) if remote is not None
             else default_out(p or Path(), style, shots, seed, out_dir, method))
            for p, _ in targets]  # fmt: skip
    clash = {o for o in outs if outs.count(o) > 1}
    if clash:
        raise click.UsageError(
            f"two models would write to {sorted(clash)[0]}: give files with different names"
        )
    path = targets[0][0]
    n_parallel, n_lookup, auto = engine_mode(
        parallel, lookup, threads, reference, remote is not None
    )
    config = RunConfig(
        model=path,
        server=remote,
        model_source=targets[0][1],
        out=outs[0],
        dataset=dataset_name,
        sample=SampleSpec(seed=seed, per_category=per_category, fraction=fraction, categories=categories),
        prompt=PromptSettings(style=style, shots=shots, strip_options=strip_options),
        answer=AnswerSettings(early_stop=early_stop, extract_mode=extract_mode,
                              strip_thinking=strip_thinking, think_budget=think_budget),
        max_tokens=max_tokens,
        method=method,
        chat_template=chat_template,
        engine=EngineSettings(threads=threads or physical_cores(), gpu_layers=gpu_layers,
                              batch=batch, flash_attn=flash_attn, kv_type=kv_type,
                              lookup=n_lookup),
        ctx=ctx,
        parallel=n_parallel,
        auto=auto,
        prefix_cache=prefix_cache,
        memory_check=memory_check,
        command=tuple(sys.argv),
    )  # fmt: skip
    # several models share one engine mode, chosen for the largest, so that their
    # comparison is not confounded by it
    largest = max((p.stat().st_size for p, _ in targets if p and p.is_file()), default=0)
    configs = [replace(config, model=p, model_source=source, out=o, rule_bytes=largest)
               for (p, source), o in zip(targets, outs, strict=True)]  # fmt: skip
    for i, one in enumerate(configs):
        if len(configs) > 1:
            click.echo(f"== model {i + 1} of {len(configs)}: {one.model}", err=True)
        _run_one(one, progress)
    if len(configs) > 1:
        names = [one.model.stem if one.model else str(one.out) for one in configs]
        _summarize([one.out for one in configs], names)


def _model_files(models: tuple[str, ...], hf_repo: str | None,
                 hf_file: str | None) -> list[tuple[Path | None, str]]:  # fmt: skip
    """Each MODEL as a local file (hub references downloaded), with the hub reference."""
    if hf_repo or hf_file or len(models) <= 1:
        model = models[0] if models else None
        if len(models) > 1:
            raise click.UsageError("--hf-repo/--hf-file name one model; give hf:// references")
        path = resolve_model(model, hf_repo, hf_file)
        if path is None:
            raise click.UsageError(
                "give MODEL (a .gguf file or hf://OWNER/REPO/FILE.gguf), here or as 'model:' in "
                "--config, or --hf-repo and --hf-file, or --server URL"
            )
        source = model if model and model.startswith("hf://") else (
            f"hf://{hf_repo}/{hf_file}" if hf_repo else "")  # fmt: skip
        return [(path, source)]
    found: list[tuple[Path | None, str]] = []
    for model in models:
        path = resolve_model(model, None, None)
        assert path is not None
        found.append((path, model if model.startswith("hf://") else ""))
    return found


def _run_one(config: RunConfig, progress: bool) -> None:
    try:
        with signals_interrupt():
            outcome = run(config, echo=lambda text: click.echo(text, err=True), progress=progress,
                          engine_factory=_engine_factory())  # fmt: skip
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        _interrupted(config.out, None, None, signum)
    rows, overall = category_figures(outcome.records)
    if outcome.records:
        click.echo(render_table(rows, overall))
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


def _summarize(paths: list[Path], names: list[str]) -> None:
    """One report, a column per model, and each model compared with the first."""
    labels = names if len(set(names)) == len(names) else unique_labels(tuple(paths))
    reports = [load_report(p, label=label) for p, label in zip(paths, labels, strict=True)]
    click.echo(f"\n== all {len(reports)} models (reference: {reports[0].label})")
    click.echo(render(reports, "table"))
    note = mode_note(reports)
    if note:
        click.echo(f"note: {note}")
    for other in reports[1:]:
        click.echo(f"\n== {other.label} against {reports[0].label}")
        click.echo(render_comparison(compare(reports[0], other)))
