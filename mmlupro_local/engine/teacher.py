"""Teacher forcing: a model's next-token log-probabilities along a given text, position
by position, streamed so that at most one batch of full-vocabulary rows is held."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from mmlupro_local.engine import EngineError, EngineSettings
from mmlupro_local.engine.handles import (
    LlamaContext,
    LlamaModel,
    backend,
    common_prefix,
    log_softmax,
)
from mmlupro_local.engine.shapes import rule_for
from mmlupro_local.model.gguf import read_gguf


class TeacherForcing:
    def __init__(self, path: Path, settings: EngineSettings) -> None:
        self.info = read_gguf(path)
        self.settings = settings
        self.rule = rule_for(backend(settings.gpu_layers), settings.flash_attn)
        self.model = LlamaModel(
            path,
            settings.gpu_layers,
            architecture=self.info.architecture,
            bos_text=self.info.token("bos"),
            rule=self.rule,
        )
        self.n_vocab = self.model.n_vocab
        self.ctx: LlamaContext | None = None
        self._kv: list[int] = []  # the tokens whose keys and values the context holds

    def vocabulary_digest(self) -> str:
        """A hash of every token's text: two models share a vocabulary when these match."""
        digest = hashlib.sha256()
        for token in range(self.n_vocab):
            digest.update(self.model.piece(token) + b"\0")
        return digest.hexdigest()

    def split(self, prompt: str, answer: str) -> tuple[list[int], int]:
        """The tokens of prompt + answer, and where the answer's tokens begin."""
        return self.model.split_prompt(prompt + answer, len(prompt))

    def reserve(self, n_tokens: int) -> None:
        """A context for texts of up to n_tokens (the longest, so that none resets it)."""
        if self.ctx is not None:
            self.ctx.close()
        n_ctx = self.rule.stream_cells(n_tokens + 1)
        self.ctx = LlamaContext(self.model, replace(self.settings, n_ctx=n_ctx), 1, self.rule)
        self._kv = []

    def log_probs(self, tokens: list[int], start: int) -> Iterator[tuple[int, Any]]:
        """For each position from `start` on: the token there, and the model's log-probs
        (float64, the whole vocabulary) for it given everything before."""
        if start < 1:
            raise EngineError("teacher forcing needs at least one token before the answer")
        if self.ctx is None or self.ctx.n_ctx < len(tokens) + self.rule.max_stream_rows:
            self.reserve(len(tokens))
        ctx = self.ctx
        assert ctx is not None
        # texts of one category share their exemplars: keep the common part decoded
        # (both models see the same sequence of calls, so a model against itself is exact)
        keep = common_prefix(self._kv, tokens[: start - 1])
        ctx.remove(0, keep)
        self._kv = tokens[:-1]
        step = self.rule.max_stream_rows
        for begin in range(keep, len(tokens) - 1, step):
            entries = [
                (tokens[p], p, 0, p >= start - 1)
                for p in range(begin, min(begin + step, len(tokens) - 1))
            ]
            ctx.decode(entries, keep_logits=True)
            for row, (_, position, _, wanted) in enumerate(entries):
                if wanted:
                    yield tokens[position + 1], log_softmax(ctx.logits(row))

    def close(self) -> None:
        if self.ctx is not None:
            self.ctx.close()
            self.ctx = None
        self.model.close()
