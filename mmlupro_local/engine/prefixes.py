"""Prefix KV states in the persistent cache: saved from a context's sequence after the
prefix was decoded, loaded into a sequence instead of decoding it again."""

from __future__ import annotations

from collections.abc import Sequence

import llama_cpp as L

from mmlupro_local.engine import EngineSettings
from mmlupro_local.engine.handles import LlamaContext
from mmlupro_local.engine.prefix_cache import PrefixCache, cache_key
from mmlupro_local.engine.shapes import ShapeRule


class SavedPrefixes:
    """`identity` names everything that shapes a state besides the tokens, the engine
    settings and the shape rule (the model file); no cache: nothing saved or loaded."""

    def __init__(
        self, cache: PrefixCache | None, identity: str, settings: EngineSettings, rule: ShapeRule
    ) -> None:
        self.cache = cache
        self.identity = identity
        self.settings = settings
        self.rule = rule

    def _key(self, tokens: Sequence[int]) -> str:
        s = self.settings
        return cache_key(
            self.identity,
            L.__version__,
            self.rule.name,
            s.threads,
            s.flash_attn,
            s.gpu_layers,
            s.kv_type,
            list(tokens),
        )

    def load(self, ctx: LlamaContext, tokens: Sequence[int], seq: int) -> bool:
        if self.cache is None or not tokens:
            return False
        payload = self.cache.load(self._key(tokens))
        # a state llama.cpp refuses is ignored (and rewritten next time)
        return payload is not None and ctx.load_state(seq, payload)

    def save(self, ctx: LlamaContext, tokens: Sequence[int], seq: int) -> None:
        if self.cache is None or not tokens:
            return
        payload = ctx.save_state(seq)
        if payload:
            self.cache.save(self._key(tokens), payload)
