from __future__ import annotations

import re
from pathlib import Path

import pytest

from hubserver import run_cli
from mmlupro_local.results.records import ResultRecord
from mmlupro_local.studies.bench import Throughput, TimedRun, best_attention, best_width


def test_best_width_needs_a_real_gain() -> None:
    rates = {1: 36.0, 2: 54.0, 4: 56.0, 8: 112.0}
    assert best_width(rates) == 8
    assert best_width({n: rates[n] for n in (1, 2, 4)}) == 2  # 4 is under 5 % better than 2
    assert best_width({1: 40.0, 2: 30.0}) == 1


def _rates(flash: bool, prompt: float, generation: float) -> Throughput:
    return Throughput(flash, prompt, {1: generation}, generation)


def test_best_attention_weighs_prompt_reading_against_generation() -> None:
    def generation(t: Throughput) -> float:
        return t.generation[1]

    # this CPU: flash attention reads prompts faster and generates slower
    assert best_attention([_rates(True, 160, 30), _rates(False, 120, 80)], generation) is False
    assert best_attention([_rates(True, 160, 60), _rates(False, 60, 80)], generation) is True
    # within 5 %: the default (on) stays
    assert best_attention([_rates(True, 100, 50), _rates(False, 103, 51)], generation) is True
    # a quantized KV cache is measured with flash attention only
    assert best_attention([_rates(True, 100, 50)], generation) is True


def test_outside_decode_share() -> None:
    records = [
        ResultRecord(
            question_id=70 + i,
            category="law",
            answer="A",
            pred="A",
            level=1,
            correct=True,
            n_options=4,
            shots=5,
            decode_seconds=s,
        )
        for i, s in enumerate((4.0, 5.5))
    ]
    assert TimedRun("x", 10.0, records).outside_decode == pytest.approx(0.05)


@pytest.mark.e2e
def test_bench_quick_measures_every_width_both_ways(smollm2: Path) -> None:
    done = run_cli("bench", str(smollm2), "--quick", "--threads", "2", "--lookup", "8", env={})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.split() == ["flash", "attention", "on", "off"] for line in lines), done.stdout
    for label in [
        "prompt",
        *(f"--parallel {n}: generation" for n in (1, 2, 4, 8)),
        "8 guesses checked per step (--lookup)",
    ]:
        row = next(line for line in lines if line.strip().startswith(label))
        rates = [float(x) for x in row[len(row) - 16 :].split()]
        assert len(rates) == 2 and all(rate > 0 for rate in rates), row
    assert re.search(
        r"best here: --parallel (1|2|4|8) with flash attention (on|off) "
        r"\(with --lookup: (on|off)\)",
        done.stdout,
    )


@pytest.mark.parametrize("option", ["--per-category", "--max-tokens"])
def test_bench_checks_its_sample_before_the_throughput_phase(smollm2: Path, option: str) -> None:
    """Issue 32, case 16: `bench MODEL --per-category 0` failed only after minutes of
    throughput measurement."""
    done = run_cli("bench", str(smollm2), option, "0", env={})
    assert done.returncode == 2, done.stderr
    assert f"Invalid value for '{option}': 0 is not in the range x>=1" in done.stderr
    assert "raw llama_decode throughput" not in done.stdout
