"""The quants table and page without a model: the Pareto front, the plots' points and
the page's escaping."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from fakes import invoke, write_fake_model
from mmlupro_local.results.equivalence import Settled
from mmlupro_local.studies.quants import Interval, QuantRow
from mmlupro_local.studies.quants_view import (
    Point,
    _ticks,
    pareto_front,
    plot_points,
    render_page,
    render_table,
)


def point(x: float, y: float) -> Point:
    return Point("q", x, y, y - 1, y + 1)


def test_the_front_holds_the_points_no_other_beats_on_both_axes() -> None:
    # (size, difference): the reference, a smaller one a little worse, a much smaller one
    # much worse, and one beaten by the much smaller one (larger and worse still)
    points = [point(100, 0), point(70, -1), point(50, -5), point(80, -6)]
    assert pareto_front(points, smaller_is_better=True) == {0, 1, 2}
    # by speed, larger is better: (tokens/s, difference)
    fast = [point(10, 0), point(14, -1), point(12, -2), point(20, -1)]
    assert pareto_front(fast, smaller_is_better=False) == {0, 3}
    # a tie beats neither: a copy of the reference sits on the front with it
    assert pareto_front([point(100, 0), point(100, 0)], smaller_is_better=True) == {0, 1}


def row(
    name: str,
    size: int,
    diff: tuple[float, float, float] | None,
    *,
    reference: bool = False,
    speed: float = 10.0,
) -> QuantRow:
    return QuantRow(
        name=name,
        path=Path(name),
        reference=reference,
        size_bytes=size,
        quant_type=name.upper(),
        bits_per_weight=4.5,
        gen_tokens_per_s=speed,
        estimate=Interval(0.3, 0.2, 0.4),
        difference=None if diff is None else Interval(*diff),
        settled=Settled("worse", 0) if diff and diff[2] < -0.01 else Settled("unsettled", 300),
    )


ROWS = [
    row("q4_k_m", 400 * 2**20, None, reference=True),
    row("q3_k_s", 300 * 2**20, (-0.01, -0.03, 0.01), speed=12.0),
    row("q2_k", 250 * 2**20, (-0.06, -0.09, -0.03), speed=11.0),
    row("<b>odd</b>", 350 * 2**20, None, speed=9.0),  # no difference: on no plot
]


def test_the_plots_carry_the_models_with_a_difference_the_reference_at_zero() -> None:
    by_size = plot_points(ROWS, lambda r: r.size_bytes / 2**20)
    assert [(p.label, p.x, p.y, p.reference) for p in by_size] == [
        ("Q4_K_M", 400, 0.0, True),
        ("Q3_K_S", 300, -1.0, False),
        ("Q2_K", 250, -6.0, False),
    ]
    assert (by_size[2].low, by_size[2].high) == (-9.0, -3.0)


def test_the_page_has_the_table_two_plots_and_escapes_what_it_shows() -> None:
    page = render_page(ROWS, 0.01)
    assert page.count('<svg class="scatter"') == 2
    assert page.count("<tr>") == 1 + len(ROWS)
    # three models on each plot; by size all three are on the front, by speed Q2_K is
    # beaten by Q3_K_S (faster and less worse)
    size_plot, speed_plot = re.findall(r'<svg class="scatter".*?</svg>', page, re.S)
    assert size_plot.count("<circle") == 3 and size_plot.count("front-point") == 3
    assert speed_plot.count("<circle") == 3 and speed_plot.count("front-point") == 2
    assert size_plot.count('class="whisker"') == 2  # the reference has no interval
    assert "<b>odd</b>" not in page and "&lt;b&gt;odd&lt;/b&gt;" in page
    assert "loses 6.0 points" in page and "http" not in page.replace("http://www.w3.org", "")
    text = render_table(ROWS, 0.01)
    assert text.splitlines()[1].startswith("q4_k_m") and "the reference" in text
    assert "peak <=" not in text


def test_a_peak_that_could_not_be_reset_is_shown_as_an_upper_bound() -> None:
    """On macOS the process's high-water mark cannot be reset between models, so a
    later model's figure may be an earlier one's (studies.peak)."""
    rows = [replace(ROWS[0], peak_memory_bytes=900 * 2**20, peak_upper_bound=True), ROWS[1]]
    text = render_table(rows, 0.01)
    assert "<=900" in text.splitlines()[1] and "peak <=: the process's peak so far" in text
    assert rows[0].to_json()["peak_memory_upper_bound"] is True


def test_a_page_into_a_missing_folder_is_refused_before_any_model_runs(tmp_path: Path) -> None:
    a, b = write_fake_model(tmp_path / "a.gguf"), write_fake_model(tmp_path / "b.gguf")
    result = invoke("quants", str(a), str(b), "--html", str(tmp_path / "no" / "page.html"))
    assert result.exit_code == 2
    assert "is not a folder" in result.output and "--html" in result.output


@pytest.mark.parametrize(
    ("low", "high", "ticks"),
    [
        (-3.9, 1.4, [-3, -2, -1, 0, 1]),
        (0, 525, [0, 100, 200, 300, 400, 500]),
        (-0.5, 0.5, [-0.4, -0.2, 0.0, 0.2, 0.4]),
    ],
)
def test_the_axes_are_marked_at_round_values(low: float, high: float, ticks: list[float]) -> None:
    assert _ticks(low, high) == ticks
