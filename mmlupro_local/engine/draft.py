"""Speculative decoding with a draft model (issue 35): a smaller model of the same
vocabulary proposes the next tokens greedily, and the evaluated model checks them in its
batched decode exactly as it checks prompt-lookup guesses (engine.batched): a guess is
kept only where greedy decoding chooses the very same token, and under the canonical
decode shapes each token is computed as it would be alone. So the draft changes how
fast an answer comes, never what it is.

The draft model keeps a KV stream per question slot, beside one holding the category
prefix, which each slot copies when its question starts (as the evaluated model does);
the prefix is saved to and loaded from the prefix cache under the draft's own hash.
Its own arithmetic needs no canonical shapes: it only guesses.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from mmlupro_local.engine import EngineError, EngineSettings
from mmlupro_local.engine.handles import LlamaContext, LlamaModel, common_prefix
from mmlupro_local.engine.lookup import FIRST_DRAFT
from mmlupro_local.engine.prefixes import SavedPrefixes
from mmlupro_local.engine.shapes import ShapeRule
from mmlupro_local.model.gguf import GgufInfo, read_gguf

DRAFT_MAX = 8  # most tokens a draft proposes per step, when --lookup does not say


def check_vocabulary(model: GgufInfo, draft: GgufInfo) -> None:
    """The draft must propose the evaluated model's tokens: the same token list."""
    if not model.tokens or not model.shares_vocabulary(draft):
        raise EngineError(
            f"the draft {draft.path.name} does not share {model.path.name}'s vocabulary "
            "(their token lists differ): give a smaller model of the same family",
            setting="draft",
        )


class DraftModel:
    """The draft's weights and context: streams 0..parallel-1 for the slots, the last
    for the category prefix."""

    def __init__(self, path: Path, settings: EngineSettings, parallel: int, rule: ShapeRule):
        self.info = read_gguf(path)
        self.model = LlamaModel(
            path,
            settings.gpu_layers,
            architecture=self.info.architecture,
            bos_text=self.info.token("bos"),
            rule=rule,
        )
        self.template = parallel
        self.settings = replace(settings, lookup=0, draft=None)
        self.ctx = LlamaContext(self.model, self.settings, parallel + 1, rule)
        self.template_tokens: list[int] = []
        # its category prefixes in the prefix cache too (LlamaEngine.use_prefix_cache)
        self.prefixes = SavedPrefixes(None, "", self.settings, rule)
        self.seconds = 0.0  # spent drafting, all slots
        self.proposed = self.kept = 0

    def drafter(self, seq: int, tokens: Sequence[int], boundary: int, limit: int) -> ModelDrafter:
        return ModelDrafter(self, seq, tokens, boundary, limit)

    def place(self, seq: int, prefix: list[int]) -> None:
        """Stream `seq` becomes a copy of the prefix's (read once per prefix)."""
        if self.template_tokens != prefix:
            self.ctx.remove(self.template)
            self.template_tokens = []
            if prefix and not self.prefixes.load(self.ctx, prefix, self.template):
                self.ctx.read([(t, i, self.template, False) for i, t in enumerate(prefix)])
                self.prefixes.save(self.ctx, prefix, self.template)
            self.template_tokens = list(prefix)
        self.ctx.remove(seq)
        if prefix:
            self.ctx.copy(self.template, seq)

    def close(self) -> None:
        self.ctx.close()
        self.model.close()


class ModelDrafter:
    """Drafts for one question, with lookup.Drafter's interface: `extend` with the
    tokens the answer took, `draft` the next guesses, `accepted` to adapt their number
    (doubling after a draft kept whole, down to what was kept plus one after a miss)."""

    def __init__(
        self, owner: DraftModel, seq: int, tokens: Sequence[int], boundary: int, limit: int
    ) -> None:
        self.owner, self.seq, self.boundary = owner, seq, boundary
        self.tokens = list(tokens)
        self.limit = limit
        self.size = min(FIRST_DRAFT, limit)
        self.cached: list[int] | None = None  # what the draft's stream holds (None: nothing)

    def extend(self, tokens: Iterable[int]) -> None:
        self.tokens.extend(tokens)

    def draft(self, room: int) -> list[int]:
        want = min(room, self.size)
        if want <= 0:
            return []
        began = time.perf_counter()
        owner, ctx, seq = self.owner, self.owner.ctx, self.seq
        if self.cached is None:
            owner.place(seq, self.tokens[: self.boundary])
            self.cached = self.tokens[: self.boundary]
        # keep what the stream holds as far as it agrees (the guesses the answer took)
        keep = common_prefix(self.cached, self.tokens[:-1])
        ctx.remove(seq, keep)
        rest = self.tokens[keep:]
        entries = [(t, keep + i, seq, i == len(rest) - 1) for i, t in enumerate(rest)]
        (ctx.read if len(rest) > ctx.rule.max_stream_rows else ctx.decode)(entries)
        guesses = [ctx.sample(len(entries) - 1)]
        position = len(self.tokens)
        while len(guesses) < want:
            ctx.decode([(guesses[-1], position, seq, True)])
            guesses.append(ctx.sample(0))
            position += 1
        self.cached = self.tokens + guesses[:-1]
        owner.seconds += time.perf_counter() - began
        owner.proposed += len(guesses)
        return guesses

    def accepted(self, drafted: int, kept: int) -> None:
        if drafted == 0:
            return
        self.owner.kept += kept
        self.size = min(self.limit, self.size * 2) if kept == drafted else max(1, kept + 1)
