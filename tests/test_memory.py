"""The memory estimate from GGUF metadata, and the refusal it drives."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import gguf_bytes
from mmlupro_local.gguf import read_gguf
from mmlupro_local.memory import (
    GIB,
    MachineMemory,
    MemoryTooSmallError,
    check_fits,
    estimate,
    machine_memory,
)
from test_prompt import smollm2_path


def test_kv_cache_follows_the_models_shape() -> None:
    info = read_gguf(smollm2_path())  # 30 layers, 3 KV heads of 64
    per_token = 30 * 3 * (64 + 64)
    assert estimate(info, 1000).kv_cache == per_token * 2 * 1000
    assert estimate(info, 1000, "q8_0").kv_cache == int(per_token * 34 / 32 * 1000)
    assert estimate(info, 1000).weights == info.data_end
    assert estimate(info, 1000).weights > 90 * 2**20


def test_grouped_query_attention_shrinks_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    meta = {"general.architecture": "llama", "llama.block_count": 2, "llama.embedding_length": 64,
            "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2}  # fmt: skip
    path.write_bytes(gguf_bytes(meta))
    assert estimate(read_gguf(path), 10).kv_cache == 2 * 2 * (16 + 16) * 2 * 10


def test_too_large_is_refused_and_tight_is_a_warning(tmp_path: Path) -> None:
    info = read_gguf(smollm2_path())
    need = estimate(info, 4096)
    with pytest.raises(MemoryTooSmallError, match=r"needs about .* but this machine has 0\.1 GiB"):
        check_fits(info, need, MachineMemory(total=GIB // 10, available=GIB // 10))
    warning = check_fits(info, need, MachineMemory(total=64 * GIB, available=need.total - 1))
    assert warning and "may swap" in warning
    assert check_fits(info, need, MachineMemory(total=64 * GIB, available=64 * GIB)) is None
    assert check_fits(info, need, None) is None


def test_this_machine_reports_its_memory() -> None:
    found = machine_memory()
    assert found is not None
    assert 0 < found.available <= found.total
