"""The memory estimate from GGUF metadata, and the refusal it drives."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from fakes import (
    gguf_bytes,
    invoke,
)
from mmlupro_local.model.gguf import read_gguf
from mmlupro_local.model.memory import (
    GIB,
    MachineMemory,
    MemoryTooSmallError,
    check_fits,
    estimate,
    machine_memory,
)


def test_kv_cache_follows_the_models_shape(smollm2: Path) -> None:
    info = read_gguf(smollm2)  # 30 layers, 3 KV heads of 64
    per_token = 30 * 3 * (64 + 64)
    assert estimate(info, 1000).kv_cache == per_token * 2 * 1000
    assert estimate(info, 1000, "q8_0").kv_cache == int(per_token * 34 / 32 * 1000)
    assert estimate(info, 1000).weights == info.data_end
    assert estimate(info, 1000).weights > 90 * 2**20


def test_grouped_query_attention_shrinks_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    meta = {
        "general.architecture": "llama",
        "llama.block_count": 2,
        "llama.embedding_length": 64,
        "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2,
    }
    path.write_bytes(gguf_bytes(meta))
    assert estimate(read_gguf(path), 10).kv_cache == 2 * 2 * (16 + 16) * 2 * 10


def test_too_large_is_refused_and_tight_is_a_warning(smollm2: Path, tmp_path: Path) -> None:
    info = read_gguf(smollm2)
    need = estimate(info, 4096)
    with pytest.raises(MemoryTooSmallError, match=r"needs about .* but this machine has 0\.1 GiB"):
        check_fits(info, need, MachineMemory(total=GIB // 10, available=GIB // 10))
    swapping = MachineMemory(total=64 * GIB, available=need.total - 1, swap_free=GIB)
    warning = check_fits(info, need, swapping)
    assert warning and "will swap" in warning
    assert check_fits(info, need, MachineMemory(total=64 * GIB, available=64 * GIB)) is None
    assert check_fits(info, need, None) is None


def test_this_machine_reports_its_memory() -> None:
    found = machine_memory()
    assert found is not None
    assert 0 < found.available <= found.total


def test_no_swap_means_the_oom_killer_so_it_is_refused(smollm2: Path) -> None:
    """Issue 13 #14: past free memory with no swap, the run would be killed, not slowed."""
    info = read_gguf(smollm2)
    need = estimate(info, 4096)
    no_swap = MachineMemory(total=64 * GIB, available=need.total - 1, swap_free=0)
    with pytest.raises(MemoryTooSmallError, match="no swap: the system would kill the run"):
        check_fits(info, need, no_swap)
    short_swap = MachineMemory(total=64 * GIB, available=need.total // 2, swap_free=10)
    with pytest.raises(MemoryTooSmallError, match="of swap: the system would kill"):
        check_fits(info, need, short_swap)


VM_STAT = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               10000.
Pages active:                            200000.
Pages inactive:                           30000.
Pages speculative:                         5000.
Pages throttled:                              0.
Pages wired down:                        100000.
Pages purgeable:                           1000.
"""


def test_macos_reads_free_memory_not_total(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13 #14: on macOS, available memory was read as the total, so the
    warning never fired on the Apple machines the README targets."""
    import mmlupro_local.model.memory as memory

    outputs = {
        "hw.memsize": str(16 * GIB),
        "vm_stat": VM_STAT,
        "vm.swapusage": "total = 2048.00M  used = 1536.00M  free = 512.00M  (encrypted)",
    }
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    monkeypatch.setattr(memory, "_run", lambda command: outputs[command[-1]])
    found = machine_memory()
    assert found == MachineMemory(16 * GIB, (10000 + 30000 + 5000 + 1000) * 16384, 512 * 2**20)


def test_model_info_counts_the_context_as_run_does(smollm2: Path) -> None:
    """Issue 13, case 13."""
    result = invoke("model", "info", str(smollm2), "--ctx", "4096", "--parallel", "4", "--json")
    facts = json.loads(result.output)
    from mmlupro_local.model.gguf import read_gguf

    assert facts["memory_needed"]["kv_cache"] == estimate(read_gguf(smollm2), 4096).kv_cache
    default = json.loads(invoke("model", "info", str(smollm2), "--parallel", "4", "--json").output)
    assert default["ctx_estimated"] and default["ctx"] == 2048 + 4 * (512 + 2048)


def test_the_advice_names_the_budgets(smollm2: Path) -> None:
    """Issue 26, case 17: a huge --think-budget was refused with advice that did not name it."""
    info = read_gguf(smollm2)
    need = estimate(info, 1_000_000, "f16")  # a think budget of a million tokens
    with pytest.raises(MemoryTooSmallError, match="--max-tokens or --think-budget"):
        check_fits(info, need, MachineMemory(total=8 * GIB, available=8 * GIB))


def test_a_draft_model_counts_in_what_must_fit(
    smollm2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--draft: the draft's weights and its KV streams are held beside the model's."""
    from mmlupro_local.run.targets import gguf

    spec = gguf.GgufSpec(path=smollm2, gpu_layers=0)
    alone = estimate(read_gguf(smollm2), spec.rule.kv_cells(4096, 1))
    # room for the model alone, not for it and a draft as large
    room = MachineMemory(total=alone.total + GIB // 20, available=alone.total + GIB // 20)
    monkeypatch.setattr(gguf, "machine_memory", lambda: room)
    gguf.LocalModel(spec, lambda *_: None).check_memory(4096, [], 1)  # type: ignore[arg-type]
    drafted = gguf.LocalModel(replace(spec, draft=smollm2), lambda *_: None)  # type: ignore[arg-type]
    with pytest.raises(MemoryTooSmallError):
        drafted.check_memory(4096, [], 1)
