"""The darwin branches, without a Mac (issue 27, points 5, 7 and 9): core counting,
the backend and its defaults, Metal's memory budget through ggml's device API, the sed
hint and peak memory, under a patched sys.platform / platform.machine and patched
sysctl and ctypes answers, each asserting the figure or the call made."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fakes import invoke
from mmlupro_local.engine import devices, handles
from mmlupro_local.engine.shapes import CPU_RULE
from mmlupro_local.model import hardware
from mmlupro_local.model.gguf import read_gguf
from mmlupro_local.model.memory import (
    GIB,
    GpuMemory,
    MemoryTooSmallError,
    check_gpu_fits,
    estimate,
)
from mmlupro_local.run.targets.gguf import GgufSpec


def mac(monkeypatch: pytest.MonkeyPatch, machine: str) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(hardware.platform, "machine", lambda: machine)


def sysctl(monkeypatch: pytest.MonkeyPatch, answers: dict[str, str]) -> list[str]:
    asked: list[str] = []

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert command[:2] == ["sysctl", "-n"]
        asked.append(command[2])
        if command[2] not in answers:  # as sysctl says of a name it does not know
            raise subprocess.CalledProcessError(1, command)
        return subprocess.CompletedProcess(command, 0, answers[command[2]] + "\n", "")

    monkeypatch.setattr(hardware.subprocess, "run", run)
    return asked


def test_physical_cores_on_apple_silicon_are_the_performance_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mac(monkeypatch, "arm64")
    asked = sysctl(monkeypatch, {"hw.perflevel0.physicalcpu": "8", "hw.physicalcpu": "12"})
    assert hardware.physical_cores() == 8 and asked == ["hw.perflevel0.physicalcpu"]


def test_physical_cores_on_an_intel_mac_leave_out_hyper_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mac(monkeypatch, "x86_64")
    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 8)  # the hyper-threads
    asked = sysctl(monkeypatch, {"hw.physicalcpu": "4"})
    assert hardware.physical_cores() == 4
    assert asked == ["hw.perflevel0.physicalcpu", "hw.physicalcpu"]


def test_an_intel_mac_gets_the_cpu_rule_and_llama_cpps_own_flash_attention(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(handles.L, "llama_supports_gpu_offload", lambda: True)  # a Metal build
    mac(monkeypatch, "x86_64")
    spec = GgufSpec(path=tmp_path / "m.gguf")
    assert spec.layers == 0 and spec.attention is True and handles.backend(spec.layers) == "cpu"
    asked = GgufSpec(path=tmp_path / "m.gguf", gpu_layers=-1)  # offload, asked for
    assert handles.backend(asked.layers) == "gpu" and asked.attention is None
    assert GgufSpec(path=tmp_path / "m.gguf", gpu_layers=-1, flash_attn=True).attention is True
    mac(monkeypatch, "arm64")
    spec = GgufSpec(path=tmp_path / "m.gguf")
    assert spec.layers == -1 and spec.attention is True and handles.backend(-1) == "metal"
    monkeypatch.setattr(sys, "platform", "linux")
    assert handles.backend(-1) == "gpu" and handles.backend(0) == "cpu"


def test_llama_cpps_own_flash_attention_choice_is_what_the_context_asks_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mmlupro_local.engine import EngineError, EngineSettings

    asked: list[int] = []

    class NoModel:
        handle = None

    def init(model: object, params: Any) -> None:
        asked.append(params.flash_attn_type)

    monkeypatch.setattr(handles.L, "llama_init_from_model", init)
    for choice in (None, True, False):
        with pytest.raises(EngineError):  # the patched init makes no context
            handles.LlamaContext(NoModel, EngineSettings(threads=1, flash_attn=choice), 1, CPU_RULE)  # type: ignore[arg-type]
    L = handles.L
    assert asked == [
        L.LLAMA_FLASH_ATTN_TYPE_AUTO,
        L.LLAMA_FLASH_ATTN_TYPE_ENABLED,
        L.LLAMA_FLASH_ATTN_TYPE_DISABLED,
    ]


class FakeGgml:
    """ggml's device API as the wheel exports it, answering as a 16 GB M2 does."""

    devices = ((b"CPU", 0, 0), (b"MTL0", 1, 11_453_251_584))  # name, type, working set

    def ggml_backend_dev_count(self) -> int:
        return len(self.devices)

    def ggml_backend_dev_get(self, index: int) -> int:
        return index

    def ggml_backend_dev_type(self, device: int) -> int:
        return self.devices[device][1]

    def ggml_backend_dev_name(self, device: int) -> bytes:
        return self.devices[device][0]

    def ggml_backend_dev_memory(self, device: int, free: Any, total: Any) -> None:
        assert isinstance(free.contents, ctypes.c_size_t)
        total.contents.value = self.devices[device][2]
        free.contents.value = self.devices[device][2] - 2**30


def test_metals_budget_is_read_through_ggmls_device_api(monkeypatch: pytest.MonkeyPatch) -> None:
    mac(monkeypatch, "arm64")
    found = devices.gpu_memory(FakeGgml())
    assert found == GpuMemory("MTL0", 11_453_251_584, 11_453_251_584 - 2**30, unified=True)
    assert devices.gpu_memory() is None  # this machine: a CPU build, no GPU device


def test_a_model_past_metals_budget_is_refused_naming_the_budget_and_the_sysctl(
    smollm2: Path,
) -> None:
    info = read_gguf(smollm2)
    need = estimate(info, 4096)
    budget = GpuMemory("MTL0", need.total - 1, 0, unified=True)
    with pytest.raises(MemoryTooSmallError) as refused:
        check_gpu_fits(info, need, budget, -1, 16 * GIB)
    message = str(refused.value)
    assert "recommendedMaxWorkingSetSize" in message and "of this Mac's 16.0 GiB" in message
    assert "sudo sysctl iogpu.wired_limit_mb=N" in message and "--gpu-layers N" in message
    check_gpu_fits(info, need, budget, 0, 16 * GIB)  # nothing offloaded
    blocks = info.get_int("block_count")
    assert blocks
    check_gpu_fits(info, need, budget, blocks // 2, 16 * GIB)  # half the blocks: fits
    with pytest.raises(MemoryTooSmallError, match="but MTL0 has"):
        check_gpu_fits(info, need, GpuMemory("MTL0", 1, 0, unified=False), -1, None)


def test_model_info_shows_ram_and_metals_budget(
    smollm2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmlupro_local.cli.commands import model

    budget = GpuMemory("MTL0", 11_453_251_584, 10 * GIB, unified=True)
    monkeypatch.setattr(model, "gpu_memory", lambda: budget)
    shown = invoke("model", "info", str(smollm2))
    assert shown.exit_code == 0, shown.output
    assert "this machine:" in shown.output
    assert "GPU: Metal's working-set budget 10.7 GiB" in shown.output
    assert "iogpu.wired_limit_mb" in shown.output
    facts = invoke("model", "info", str(smollm2), "--json").output
    assert '"metal_budget": true' in facts and '"total": 11453251584' in facts


def test_the_sed_hint_and_peak_memory_are_right_on_macos(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmlupro_local.results.store import delete_line
    from mmlupro_local.studies import bench, peak

    monkeypatch.setattr(
        peak.resource, "getrusage", lambda who: type("R", (), {"ru_maxrss": 300 * 2**20})
    )
    monkeypatch.setattr(sys, "platform", "darwin")
    assert delete_line(7, Path("/r s.jsonl")) == "sed -i '' '7d' '/r s.jsonl'"
    assert bench.peak_memory_mib() == 300.0  # bytes on macOS
    monkeypatch.setattr(sys, "platform", "linux")
    assert delete_line(7, Path("/r.jsonl")) == "sed -i '7d' /r.jsonl"
    assert bench.peak_memory_mib() == 300 * 1024  # KiB on Linux


@pytest.mark.parametrize(
    ("machine", "layers", "mode", "reason"),
    [("x86_64", 0, (4, 0), "auto: CPU"), ("arm64", -1, (8, 16), "auto: metal")],
)
def test_run_bench_and_divergence_take_one_engine_setting(
    monkeypatch: pytest.MonkeyPatch, machine: str, layers: int, mode: tuple[int, int], reason: str
) -> None:
    """Issue 33: on an Intel Mac `bench` timed the GPU rule (--parallel 8 --lookup 16) as
    "run's defaults" while `run` used --gpu-layers 0 and the CPU rule. Now all three ask
    the model's spec, which decides layers, attention, threads and the rule once."""
    mac(monkeypatch, machine)
    monkeypatch.setattr(handles.L, "llama_supports_gpu_offload", lambda: True)
    spec = GgufSpec(path=Path("m.gguf"), threads=4, rule_bytes=500 * 2**20)
    rule = spec.rule_mode()
    assert ((rule.parallel, rule.lookup), rule.reason.startswith(reason)) == (mode, True)
    settings = spec.engine_settings()
    assert (settings.threads, settings.gpu_layers, settings.flash_attn) == (4, layers, True)
