"""The top-level `mmlupro-local` group and its error handling."""

from __future__ import annotations

from typing import Any

import click

from mmlupro_local import __version__
from mmlupro_local.cli.commands.bench import bench_cmd
from mmlupro_local.cli.commands.cache import cache
from mmlupro_local.cli.commands.dataset import dataset
from mmlupro_local.cli.commands.divergence import divergence_cmd
from mmlupro_local.cli.commands.model import model
from mmlupro_local.cli.commands.prompt import prompt
from mmlupro_local.cli.commands.quants import quants_cmd
from mmlupro_local.cli.commands.report import compare_cmd, report_cmd
from mmlupro_local.cli.commands.run import run_cmd
from mmlupro_local.engine import EngineError
from mmlupro_local.engine.server import RAISE_CONTEXT
from mmlupro_local.errors import MmluProError

# what a user changes, by the engine setting an EngineError names
ENGINE_REMEDIES = {
    "n_ctx": "raise --ctx (or leave it unset: the default fits)",
    "flash_attn": "drop --no-flash-attn",
    "kv_type": "choose another --kv-type",
    "chat_template": "use --style completion",
    "server_url": "give --server the server's base URL, such as http://127.0.0.1:8080/v1 "
    "(without /chat/completions)",
    "server": "is the server running? Check --server",
    "server_model": "choose one with --server-model",
    "servers": "give --server only for servers of one model",
    "api_key": "set MMLUPRO_API_KEY (or OPENAI_API_KEY) to the server's API key",
    "timeout": "raise --request-timeout if the server is only slow",
    "server_ctx": RAISE_CONTEXT,
}


class ToolGroup(click.Group):
    """Turns the project's own exceptions into one-line errors with exit code 1; an
    engine error gets the flag that remedies it."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EngineError as exc:
            remedy = ENGINE_REMEDIES.get(exc.setting or "")
            text = f"{exc}; {remedy}" if remedy else str(exc)
            raise click.ClickException(f"{text}\n{exc.after}" if exc.after else text) from exc
        except MmluProError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=ToolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mmlupro-local")
def main() -> None:
    """Run the MMLU-Pro benchmark against GGUF models on your own machine, offline, or
    against a model an OpenAI-compatible server serves (--server).

    \b
    Examples:
      mmlupro-local run model.gguf --per-category 10
      mmlupro-local report mmlupro-results/*.jsonl
      mmlupro-local compare q4.jsonl q8.jsonl
      mmlupro-local divergence q8.gguf q4.gguf --per-category 2
      mmlupro-local run --server http://127.0.0.1:8080/v1 --per-category 10
      mmlupro-local dataset info
    """


for command in (
    dataset,
    model,
    prompt,
    run_cmd,
    report_cmd,
    compare_cmd,
    divergence_cmd,
    quants_cmd,
    cache,
    bench_cmd,
):
    main.add_command(command)
