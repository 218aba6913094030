"""What the commands share: option groups declared once, their defaults read from the
dataclasses they fill; number-or-auto values; options from a YAML file; and the state a
program embedding the CLI may pass in. Commands import this module, never each other."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from mmlupro_local.config import ConfigError, load_run_config
from mmlupro_local.datasets.dataset import EMBEDDED_NAME
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.engine import KV_TYPES, MAX_LOOKUP, EngineSettings
from mmlupro_local.engine.chat import THINKING
from mmlupro_local.engine.server import ServerSettings
from mmlupro_local.run.request import MAX_PARALLEL, RESULTS_DIR, RunRequest
from mmlupro_local.run.targets import EngineFactory
from mmlupro_local.run.targets.gguf import GgufSpec
from mmlupro_local.task.extract import EXTRACT_MODES
from mmlupro_local.task.methods import METHOD_NAMES
from mmlupro_local.task.prompt import MAX_SHOTS, STYLES, PromptError, PromptSettings
from mmlupro_local.task.settings import MAX_TOKENS, THINK_BUDGET, AnswerSettings

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    """What the commands share. A program embedding the CLI, or a test, may pass one
    as `main(obj=CliState(...))`: `engine_factory` then makes the in-process engine."""

    engine_factory: EngineFactory | None = None


def engine_factory() -> EngineFactory | None:
    state = click.get_current_context().find_object(CliState)
    return state.engine_factory if state else None


# -- naming what the user gave


def where(name: str, flag: str) -> str:
    """How to name an option in an error: the flag, or the config file and key it came from."""
    ctx = click.get_current_context()
    if ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT_MAP:
        return str(ctx.meta.get("config_keys", {}).get(name, flag))
    return flag


def first_given(names: Sequence[str]) -> str | None:
    """How to name the first of these options the user gave (its flag, or the config key
    it came from); None when all were left to their defaults."""
    ctx = click.get_current_context()
    for name in names:
        source = ctx.get_parameter_source(name)
        if source is not None and source != click.core.ParameterSource.DEFAULT:
            param = next(p for p in ctx.command.params if p.name == name)
            return where(name, param.opts[0])
    return None


# -- value types


class NumberOrAuto(click.ParamType):  # type: ignore[type-arg]
    """A whole number in a range, or 'auto' (None: the run decides)."""

    name = "N|auto"

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            number = value
        elif str(value).strip().lower() == "auto":
            return None
        else:
            try:
                number = int(value)
            except ValueError:
                self.fail(f"{value!r} is not a number or 'auto'", param, ctx)
        if number is not None and not self.low <= number <= self.high:
            self.fail(f"must be between {self.low} and {self.high}", param, ctx)
        return number


class FiniteFloat(click.FloatRange):
    """A number in a range, never NaN or infinity: they pass any bound, and a results file
    that records one is no JSON its readers take (issue 32, case 3)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number is not None and not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def categories_callback(ctx: click.Context, param: click.Parameter, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = tuple(str(item).strip() for item in items if str(item).strip())
    if not names:
        raise click.BadParameter(
            f"{value!r} names no category; give names such as 'math,law', or leave it out "
            "for all categories",
            param_hint=where("categories", "--categories"),
        )
    return names


def show_progress(options: dict[str, Any]) -> bool:
    """--progress as given, else only on a terminal: a log file gets no bar frames."""
    given = options.get("progress")
    return bool(given) if given is not None else sys.stderr.isatty()


def out_path(text: str) -> Path:
    """--out as a file path: an empty value, '-', a directory, a pipe or a device is a
    mistake to name."""
    hint = where("out", "--out")
    if not text.strip():
        raise click.BadParameter(
            "is empty; give a file path such as results.jsonl", param_hint=hint
        )
    if text.strip() == "-":  # results are appended to and resumed: no stream will do
        raise click.BadParameter(
            "'-' is no file: results are saved to a file a rerun resumes; give a path such "
            "as results.jsonl (then `report` prints it)",
            param_hint=hint,
        )
    path = Path(text).expanduser()
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise click.BadParameter(
            f"{text!r} is a directory; give a file path such as {path / 'results.jsonl'}",
            param_hint=hint,
        )
    if path.exists() and not path.is_file():  # /dev/stdout, /dev/null, a pipe
        raise click.BadParameter(
            f"{text!r} is not a regular file (a pipe or device): results are saved to a "
            "file a rerun resumes; give a path such as results.jsonl (then `report` prints it)",
            param_hint=hint,
        )
    return path


# -- option groups


class OptionGroup:
    """Options declared once and applied to every command that takes them; `names` are
    their parameter names, for rules about the group (what a server refuses)."""

    def __init__(self, *options: tuple[tuple[str, ...], dict[str, Any]]) -> None:
        self.options = options
        self.names = tuple(str(click.Option(list(d), **a).name) for d, a in options)

    def __call__(self, f: F) -> F:
        for decls, attrs in reversed(self.options):
            f = click.option(*decls, **attrs)(f)
        return f


def opt(*decls: str, **attrs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return decls, attrs


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
        target = next(p for p in ctx.command.params if p.name == name)
        if target.multiple or target.nargs == -1:  # lists arrive comma-joined
            raw = [part.strip() for part in str(raw).split(",") if part.strip()]
        flag = isinstance(target, click.Option) and target.is_flag
        if isinstance(raw, bool) and not flag:  # YAML's true is no count (issue 26, case 12)
            raise ConfigError(f"{value}: {key}: {str(raw).lower()} is not a value for it")
        try:
            target.type_cast_value(ctx, raw)
        except click.BadParameter as exc:
            raise ConfigError(f"{value}: {key}: {exc.message}") from None
        defaults[name] = raw
    ctx.meta["config_keys"] = {name: f"{value}: {key}" for name, (key, _) in options.items()}
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


config_option = click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="YAML file of options (keys as below); flags given here win.",
)

dataset_option = click.option(
    "--dataset",
    "dataset_name",
    default=EMBEDDED_NAME,
    show_default=True,
    envvar="MMLUPRO_DATASET",
    help="Dataset name: the embedded copy or one added with 'dataset import' / 'dataset fetch'.",
)

sample_options = OptionGroup(
    opt("--per-category", type=int, help="Questions per category (seeded random draw)."),
    opt(
        "--fraction",
        type=FiniteFloat(),
        help="Fraction of each category (exact total, largest remainder).",
    ),
    opt("--full", is_flag=True, help="All 12,032 test questions."),
    opt(
        "--categories",
        callback=categories_callback,
        help="Only these categories (comma-separated).",
    ),
    opt(
        "--seed",
        type=int,
        default=SampleSpec.seed,
        show_default=True,
        help="Sample seed (also seeds guesses).",
    ),
)


def sample_spec(options: dict[str, Any]) -> SampleSpec:
    per_category, fraction = options["per_category"], options["fraction"]
    if sum((per_category is not None, fraction is not None, options["full"])) != 1:
        raise click.UsageError("choose exactly one of --per-category N, --fraction F or --full")
    return SampleSpec(
        seed=options["seed"],
        per_category=per_category,
        fraction=fraction,
        categories=options["categories"],
    )


method_option = click.option(
    "--method",
    type=click.Choice(METHOD_NAMES),
    default=RunRequest.method,
    show_default=True,
    help="cot: the official chain of thought, generated (the reference). logprob: the Open "
    "LLM Leaderboard v2's 5-shot letter choice, each letter scored in one forward pass "
    "(fast; comparable with the leaderboard's MMLU-Pro figures, not with cot's).",
)

prompt_options = OptionGroup(
    opt(
        "--style",
        type=click.Choice(STYLES),
        default=PromptSettings.style,
        show_default=True,
        help="completion: official prompt; chat: the model's chat template.",
    ),
    opt(
        "--shots",
        type=click.IntRange(0, MAX_SHOTS),
        default=PromptSettings.shots,
        show_default=True,
    ),
    opt(
        "--strip-options/--no-strip-options",
        default=PromptSettings.strip_options,
        show_default=True,
        help="Strip whitespace around options (hides the answer leak; not official).",
    ),
    opt(
        "--thinking",
        type=click.Choice(THINKING),
        help="--style chat: set the chat template's thinking switch (on, off) or effort "
        "(low, medium, high), as its own variables (enable_thinking, reasoning_effort...); "
        "refused where the template has no such switch [default: the template's own].",
    ),
)


def prompt_settings(options: dict[str, Any]) -> PromptSettings:
    try:
        return PromptSettings(
            style=options["style"],
            shots=options["shots"],
            strip_options=options["strip_options"],
            thinking=options["thinking"],
        )
    except PromptError as exc:
        raise click.UsageError(str(exc)) from None


answer_options = OptionGroup(
    opt(
        "--extract",
        "extract_mode",
        type=click.Choice(EXTRACT_MODES),
        default=AnswerSettings.extract_mode,
        show_default=True,
        help="Level-1 match to use: first (official) or last.",
    ),
    opt(
        "--strip-thinking/--keep-thinking",
        default=AnswerSettings.strip_thinking,
        show_default=True,
        help="Ignore <think> blocks when extracting the answer.",
    ),
    opt(
        "--max-tokens",
        type=click.IntRange(1),
        help=f"Generation budget [default: {MAX_TOKENS}, plus the think budget when there is one].",
    ),
    opt(
        "--think-budget",
        type=click.IntRange(0),
        metavar="N",
        help="Close a <think> block after N tokens and force the answer ('</think>', then 'The "
        f"answer is ('); 0: never [default: {THINK_BUDGET} when the chat template thinks, else never].",
    ),
    opt(
        "--early-stop/--no-early-stop",
        default=AnswerSettings.early_stop,
        show_default=True,
        help="End generation once 'answer is (X)' appeared (same prediction, less time).",
    ),
)


def answer_settings(options: dict[str, Any]) -> AnswerSettings:
    return AnswerSettings(
        early_stop=options["early_stop"],
        extract_mode=options["extract_mode"],
        strip_thinking=options["strip_thinking"],
    )


model_options = OptionGroup(
    opt(
        "--chat-template",
        type=click.Path(dir_okay=False, path_type=Path),
        help="A Jinja chat template file to use instead of the model's (--style chat).",
    ),
    opt("--hf-repo", help="A hub model repository (OWNER/REPO[@REVISION]), with --hf-file."),
    opt("--hf-file", help="The GGUF file in --hf-repo, or a pattern such as '*Q4_K_M.gguf'."),
)

threads_option = opt(
    "--threads", type=click.IntRange(1), help="CPU threads [default: physical cores]."
)
gpu_layers_option = opt(
    "--gpu-layers",
    type=int,
    default=None,
    help="Layers to offload to the GPU or Metal (-1: all) [default: -1; 0 on an Intel Mac].",
)
kv_type_option = opt(
    "--kv-type",
    type=click.Choice(KV_TYPES),
    default=EngineSettings.kv_type,
    show_default=True,
    help="KV cache type: q8_0 halves its memory (slower on CPU, measured); needs flash attention.",
)


def _batch_is_gone(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value is not None:
        raise click.UsageError(
            "--batch is gone: every decode now has a canonical shape, so that answers do not "
            "depend on batching (README, 'Exact in every mode'); drop the flag"
        )


engine_options = OptionGroup(
    threads_option,
    gpu_layers_option,
    opt(
        "--batch",
        type=int,
        default=None,
        hidden=True,
        expose_value=False,
        callback=_batch_is_gone,
    ),
    opt(
        "--flash-attn/--no-flash-attn",
        default=None,
        help="Flash attention: on CPU it reads prompts faster but generates slower, above all "
        "with --parallel or --lookup ('bench' measures both). Results differ slightly without it. "
        "[default: on; llama.cpp's own choice on an Intel Mac's GPU, which has none]",
    ),
    kv_type_option,
    opt(
        "--lookup",
        type=NumberOrAuto(0, MAX_LOOKUP),
        default="auto",
        show_default=True,
        help=f"Prompt-lookup decoding: check up to N (0-{MAX_LOOKUP}) guessed tokens per step "
        "(copied from where the last tokens occurred before); fast on repetitive answers. "
        "'auto': the same rule as --parallel.",
    ),
    opt(
        "--draft",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="Speculative decoding: a smaller GGUF of the same vocabulary proposes the next "
        "tokens in place of prompt lookup (up to --lookup a step, else 8); the model checks "
        "them as it checks lookup's, so every answer is the same as without it.",
    ),
    opt(
        "--prefix-cache/--no-prefix-cache",
        default=RunRequest.prefix_cache,
        show_default=True,
        help="Save each category prefix's KV state in the user cache and reuse it.",
    ),
    opt(
        "--memory-check/--no-memory-check",
        default=GgufSpec.memory_check,
        show_default=True,
        help="Refuse a model whose weights and KV cache (estimated from its metadata) exceed this machine's memory.",
    ),
)

parallel_option = click.option(
    "--parallel",
    type=NumberOrAuto(1, MAX_PARALLEL),
    default="auto",
    show_default=True,
    help="Questions decoded together: a number, or 'auto' (a rule on backend, cores, model "
    "size and questions per category; a server's slots; a resumed file keeps what it recorded).",
)

server_options = OptionGroup(
    opt(
        "--server",
        metavar="URL",
        multiple=True,
        help="Evaluate the model an OpenAI-compatible server serves (vLLM, SGLang, llama-server, "
        "Ollama), e.g. http://127.0.0.1:8080/v1; the API key, if any, from MMLUPRO_API_KEY or "
        "OPENAI_API_KEY. Give it again for more servers of the same model: the questions are "
        "shared among them (each keeps its categories), and one that fails leaves its "
        "questions to the others.",
    ),
    opt("--server-model", metavar="NAME", help="The served model (when it serves several)."),
    opt(
        "--request-timeout",
        type=FiniteFloat(0, min_open=True),
        default=ServerSettings.timeout,
        show_default=True,
        help="Seconds a server request may go without sending anything.",
    ),
    opt(
        "--retries",
        type=click.IntRange(0, 20),
        default=ServerSettings.retries,
        show_default=True,
        help="Further attempts after a transient server failure (doubling backoff from 1 s).",
    ),
)


progress_option = opt(
    "--progress/--no-progress",
    default=None,
    help="Show the progress bars [default: when stderr is a terminal].",
)
table_or_json_option = opt(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)

output_options = OptionGroup(
    opt("--out", help="Results JSONL file (one model)."),
    opt(
        "--out-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path(RESULTS_DIR),
        show_default=True,
        help="Where results files are named after their model, when --out is not given.",
    ),
    progress_option,
)
