from __future__ import annotations

import pytest

from mmlupro_local.bench import Throughput, TimedRun, best_width
from test_e2e_run import cli
from test_prompt import smollm2_path


def test_best_width_needs_a_real_gain() -> None:
    rates = [
        Throughput(1, 100, 36.0),
        Throughput(2, 100, 54.0),
        Throughput(4, 100, 56.0),
        Throughput(8, 100, 112.0),
    ]
    assert best_width(rates) == 8
    assert best_width(rates[:3]) == 2  # 4 is under 5 % better than 2
    assert best_width([Throughput(1, 100, 40.0), Throughput(2, 100, 30.0)]) == 1


def test_outside_decode_share() -> None:
    records = [{"decode_seconds": 4.0}, {"decode_seconds": 5.5}]
    assert TimedRun("x", 10.0, records).outside_decode == pytest.approx(0.05)


@pytest.mark.e2e
def test_bench_quick_measures_every_width() -> None:
    done = cli("bench", str(smollm2_path()), "--quick", "--threads", "2")
    assert done.returncode == 0, done.stderr
    for n in (1, 2, 4, 8):
        assert f"--parallel {n}: generation" in done.stdout
    assert "best --parallel for generation here:" in done.stdout
