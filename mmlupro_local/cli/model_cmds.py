"""`mmlupro-local model`: fetch a model from the hub ahead of time, and see what one
needs (architecture, quantization, context, memory) before running it."""

from __future__ import annotations

import json

import click

from mmlupro_local.engine import KV_TYPES
from mmlupro_local.gguf import read_gguf
from mmlupro_local.memory import GIB, estimate, machine_memory
from mmlupro_local.models import model_path


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
@click.option("--ctx", type=click.IntRange(256), default=4096, show_default=True,
              help="Context per question for the memory estimate.")  # fmt: skip
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--kv-type", type=click.Choice(KV_TYPES), default="f16", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info_cmd(ref: str, ctx: int, parallel: int, kv_type: str, as_json: bool) -> None:
    """What REF (a GGUF path or hf://...) is, and the memory a run needs with --ctx
    tokens for each of --parallel questions, against this machine's."""
    info = read_gguf(model_path(ref))
    need = estimate(info, ctx * parallel, kv_type)
    machine = machine_memory()
    facts = {
        "file": str(info.path),
        "size": info.size,
        "architecture": info.architecture,
        "quantization": info.quantization,
        "name": info.metadata.get("general.name"),
        "n_ctx_train": info.get_int("context_length"),
        "chat_template": info.chat_template is not None,
        "memory_needed": {
            "weights": need.weights,
            "kv_cache": need.kv_cache,
            "overhead": need.overhead,
            "total": need.total,
        },
        "machine_memory": machine and {"total": machine.total, "available": machine.available},
    }
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    click.echo(f"{info.path.name}: {info.architecture}, {info.quantization}, "
               f"{info.size / GIB:.2f} GiB, trained context {facts['n_ctx_train'] or 'unknown'}")  # fmt: skip
    click.echo(f"chat template: {'yes' if info.chat_template else 'no (use --style completion)'}")
    click.echo(
        f"a run with --ctx {ctx} --parallel {parallel} --kv-type {kv_type} needs {need.describe()}"
    )
    if machine:
        verdict = ("fits" if need.total <= machine.available else
                   "fits, but not in what is free now" if need.total <= machine.total else "does NOT fit")  # fmt: skip
        click.echo(f"this machine: {machine.total / GIB:.1f} GiB, {machine.available / GIB:.1f} GiB "
                   f"free now: {verdict}")  # fmt: skip
