"""`mmlupro-local model`: fetch a model from the hub ahead of time, and see what one
needs (architecture, quantization, context, memory) before running it."""

from __future__ import annotations

import json

import click

from mmlupro_local.engine import KV_TYPES, EngineSettings, KvType, round_ctx
from mmlupro_local.engine.devices import gpu_memory
from mmlupro_local.model.gguf import read_gguf
from mmlupro_local.model.memory import GIB, estimate, machine_memory
from mmlupro_local.model.source import model_path
from mmlupro_local.run.targets.gguf import GgufSpec
from mmlupro_local.task.settings import MAX_TOKENS

# what run's automatic context holds besides the budgets: the longest 5-shot prefix
# (under 2,000 tokens in the embedded set for common tokenizers) and one question's text
PREFIX_ALLOWANCE = 2048
QUESTION_ALLOWANCE = 512


@click.group("model")
def model() -> None:
    """Get and inspect GGUF models."""


@model.command("fetch")
@click.argument("ref")
def fetch_cmd(ref: str) -> None:
    """Download REF (hf://OWNER/REPO[@REVISION]/FILE.gguf; FILE may be a pattern such
    as '*Q4_K_M.gguf') into the Hugging Face cache, and print its local path. Later runs,
    also offline (HF_HUB_OFFLINE=1), use the cached file.

    \b
    Example:
      mmlupro-local model fetch 'hf://bartowski/SmolLM2-135M-Instruct-GGUF/*Q4_K_M.gguf'
    """
    path = model_path(ref)
    read_gguf(path)  # a download that is not a usable GGUF says so now, not at run time
    click.echo(str(path))


@model.command("info")
@click.argument("ref")
@click.option(
    "--ctx",
    type=click.IntRange(256),
    help="The context the run opens, shared by all --parallel questions (as run's "
    "--ctx) [default: an estimate of what run opens for --parallel].",
)
@click.option(
    "--parallel",
    type=click.IntRange(1, GgufSpec.max_parallel),
    default=1,
    show_default=True,
    help="Questions decoded together; sets the default --ctx.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    default=MAX_TOKENS,
    show_default=True,
    help="Generation budget; sets the default --ctx.",
)
@click.option(
    "--kv-type", type=click.Choice(KV_TYPES), default=EngineSettings.kv_type, show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info_cmd(
    ref: str, ctx: int | None, parallel: int, max_tokens: int, kv_type: KvType, as_json: bool
) -> None:
    """What REF (a GGUF path or hf://...) is, and the memory a run needs with a context
    of --ctx tokens (all parallel questions share it, as in run), against this machine's."""
    info = read_gguf(model_path(ref))
    estimated = ctx is None
    if ctx is None:
        ctx = round_ctx(PREFIX_ALLOWANCE + parallel * (QUESTION_ALLOWANCE + max_tokens))
    need = estimate(info, ctx, kv_type)
    machine = machine_memory()
    gpu = gpu_memory()
    facts = {
        "file": str(info.path),
        "size": info.size,
        "architecture": info.architecture,
        "quantization": info.quantization,
        "name": info.metadata.get("general.name"),
        "ctx": ctx,
        "ctx_estimated": estimated,
        "n_ctx_train": info.get_int("context_length"),
        "chat_template": info.chat_template is not None,
        "memory_needed": {
            "weights": need.weights,
            "kv_cache": need.kv_cache,
            "overhead": need.overhead,
            "total": need.total,
        },
        "machine_memory": machine and {"total": machine.total, "available": machine.available},
        "gpu_memory": gpu
        and {"name": gpu.name, "total": gpu.total, "free": gpu.free, "metal_budget": gpu.unified},
    }
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    click.echo(
        f"{info.path.name}: {info.architecture}, {info.quantization}, "
        f"{info.size / GIB:.2f} GiB, trained context {facts['n_ctx_train'] or 'unknown'}"
    )
    click.echo(f"chat template: {'yes' if info.chat_template else 'no (use --style completion)'}")
    opened = (
        f"about {ctx:,} tokens, the context run opens for --parallel {parallel} with "
        f"--max-tokens {max_tokens} (it prints the exact one)"
        if estimated
        else f"{ctx:,} tokens"
    )
    click.echo(f"a run with a context of {opened} and --kv-type {kv_type} needs {need.describe()}")
    if machine:
        verdict = (
            "fits"
            if need.total <= machine.available
            else "fits, but not in what is free now"
            if need.total <= machine.total
            else "does NOT fit"
        )
        click.echo(
            f"this machine: {machine.total / GIB:.1f} GiB, {machine.available / GIB:.1f} GiB "
            f"free now: {verdict}"
        )
    if gpu:
        offloaded = "fits" if need.total <= gpu.total else "does NOT fit (see --gpu-layers)"
        what = (
            f"Metal's working-set budget {gpu.total / GIB:.1f} GiB of the "
            f"{machine.total / GIB if machine else 0:.1f} GiB above (raise it with "
            "'sudo sysctl iogpu.wired_limit_mb=N')"
            if gpu.unified
            else f"{gpu.name}: {gpu.total / GIB:.1f} GiB"
        )
        click.echo(f"GPU: {what}: {offloaded}")
