"""`mmlupro-local prompt`: print exactly what the model sees for given questions."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mmlupro_local.cli.options import dataset_option, prompt_options, prompt_settings
from mmlupro_local.datasets.dataset import load_dataset
from mmlupro_local.engine.chat import Thinking
from mmlupro_local.errors import MmluProError
from mmlupro_local.model.source import model_path
from mmlupro_local.run.request import RunRequest
from mmlupro_local.task.methods import METHOD_NAMES, MethodName, method_named
from mmlupro_local.task.prompt import ChatRenderer, Style
from mmlupro_local.task.settings import MAX_TOKENS
from mmlupro_local.task.wording import wording_for


@click.command("prompt")
@click.argument("question_ids", nargs=-1, required=True, type=int)
@click.option(
    "--method",
    type=click.Choice(METHOD_NAMES),
    default=RunRequest.method,
    show_default=True,
    help="logprob: the letter-choice prompt, each letter scored right after its end.",
)
@prompt_options
@click.option(
    "--model",
    "model_ref",
    help="GGUF model (a path or hf://OWNER/REPO/FILE.gguf): its chat template and tokenizer.",
)
@click.option(
    "--chat-template",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A Jinja chat template file to use instead of the model's (--style chat), as run "
    "takes it.",
)
@click.option(
    "--ctx",
    type=click.IntRange(256),
    help="With --model: drop exemplars until the prompt fits this context.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    default=MAX_TOKENS,
    show_default=True,
    help="Generation budget for --ctx.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per line: question_id, prompt, shots."
)
@dataset_option
def prompt(
    question_ids: tuple[int, ...],
    method: MethodName,
    style: Style,
    shots: int,
    strip_options: bool,
    thinking: Thinking | None,
    model_ref: str | None,
    chat_template: Path | None,
    ctx: int | None,
    max_tokens: int,
    as_json: bool,
    dataset_name: str,
) -> None:
    """Print the exact prompt for QUESTION_IDS (test split).

    \b
    Examples:
      mmlupro-local prompt 70
      mmlupro-local prompt 70 71 --json
      mmlupro-local prompt 70 --style chat --model SmolLM2-135M-Instruct.Q4_1.gguf
      mmlupro-local prompt 70 --method logprob --json
      mmlupro-local prompt 70 --style chat --model M.gguf --chat-template t.jinja --thinking off
    """
    model = model_path(model_ref) if model_ref else None
    data = load_dataset(dataset_name)
    by_id = {q.question_id: q for q in data.test}
    missing = [i for i in question_ids if i not in by_id]
    if missing:
        raise MmluProError(
            f"no test question with id {', '.join(map(str, missing))} in {data.name!r}"
        )
    settings = prompt_settings(
        {"style": style, "shots": shots, "strip_options": strip_options, "thinking": thinking}
    )
    if (chat_template or thinking) and model is None:
        raise click.UsageError("--chat-template and --thinking need --model (the chat's model)")
    render: ChatRenderer | None = None
    if model is not None and style == "chat":
        from mmlupro_local.run.targets.gguf import run_renderer

        render = run_renderer(model, chat_template, thinking)
    answering = method_named(method)
    if not answering.generates and ctx is not None:
        raise click.UsageError("--ctx is for --method cot: letter-choice prompts are never cut")
    if ctx is not None and model is None:
        raise MmluProError("--ctx needs --model, to count tokens with its tokenizer")
    if ctx is not None and ctx <= max_tokens:
        raise click.UsageError(
            f"--ctx {ctx} leaves no room for a prompt after the --max-tokens {max_tokens} budget; "
            f"raise --ctx above {max_tokens} or lower --max-tokens"
        )
    count = None
    if ctx is not None and model is not None:
        from mmlupro_local.engine.tokenizer import load_token_counter

        count = load_token_counter(model)
    for qid in question_ids:
        built = answering.build(
            by_id[qid],
            data.validation,
            settings,
            wording=wording_for(data.language),
            render=render,
            count=count,
            limit=None if ctx is None else ctx - max_tokens,
        )
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "question_id": qid,
                        "prompt": built.text,
                        "shots": built.shots,
                        **({"choices": list(built.choices)} if built.choices else {}),
                    },
                    ensure_ascii=False,
                )
            )
        else:
            click.echo(built.text)
            if built.choices:  # what is scored comes right after the text, on stderr
                click.echo(f"(scored right after the text: {' '.join(built.choices)})", err=True)
