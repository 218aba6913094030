"""Token counts with the model's own vocabulary (weights not loaded)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mmlupro_local.model.gguf import read_gguf

TokenCounter = Callable[[str], int]


def load_token_counter(model: Path) -> TokenCounter:
    """Count tokens as the engine will: special tokens parsed, BOS as the model wants."""
    info = read_gguf(model)  # clear errors for a wrong or truncated file first
    import llama_cpp

    from mmlupro_local.engine import llamalog

    llamalog.install()
    vocab = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    add_bos = bool(info.metadata.get("tokenizer.ggml.add_bos_token", True))

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    return count
