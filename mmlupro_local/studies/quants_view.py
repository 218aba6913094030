"""What `quants` shows: the table (text, and the same cells on the page) and the page of
`--html`: the table and two scatter plots of the difference from the reference, with
its interval, against file size and against generation speed, the Pareto front marked.

The page is self-contained (inline CSS and SVG, no script, nothing fetched), and every
text in it goes through html.escape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from mmlupro_local.results.html_report import STYLE
from mmlupro_local.studies.quants import Interval, QuantRow

NO_FIGURE = "-"
HEAD = (
    "model",
    "type",
    "MiB",
    "bpw",
    "peak MiB",
    "prompt t/s",
    "gen t/s",
    "KL mean",
    "KL p99",
    "same top",
    "score %",
    "vs ref, points",
    "verdict",
)
FOOTNOTE = (
    "score: estimated full score with its 95 % interval, widened for the looks taken; "
    "(ref.): the reference's estimate plus the paired difference, narrower than the "
    "model's own; KL in nats per answer token along the reference's answers"
)
# the plots' frame, in pixels
PLOT_W, PLOT_H, PAD_L, PAD_R, PAD_T, PAD_B = 640, 330, 58, 150, 16, 44
FRONT, OTHER, REFERENCE, BAND = "#3b6fb6", "#9a9a9a", "#d9822b", "#e8f2e4"


def _points(i: Interval | None, signed: bool = False) -> str:
    if i is None:
        return NO_FIGURE
    sign = "+" if signed else ""
    return f"{i.value * 100:{sign}.1f} [{i.low * 100:{sign}.1f}, {i.high * 100:{sign}.1f}]"


def _number(value: float | None, spec: str) -> str:
    return NO_FIGURE if value is None else format(value, spec)


def verdict_text(row: QuantRow, margin: float) -> str:
    if row.reference:
        return "the reference"
    return row.settled.sentence(row.difference.value if row.difference else 0.0, margin)


def cells(rows: Sequence[QuantRow], margin: float) -> list[tuple[str, ...]]:
    """A row of text per model, in HEAD's order."""
    out: list[tuple[str, ...]] = []
    for r in rows:
        peak = None if r.peak_memory_bytes is None else r.peak_memory_bytes / 2**20
        predicted = " (ref.)" if r.estimator == "reference as predictor" else ""
        out.append(
            (
                r.name,
                r.quant_type,
                f"{r.size_bytes / 2**20:,.0f}",
                _number(r.bits_per_weight, ".2f"),
                ("<=" if r.peak_upper_bound else "") + _number(peak, ",.0f"),
                _number(r.prompt_tokens_per_s or None, ".1f"),
                _number(r.gen_tokens_per_s or None, ".1f"),
                _number(r.kl_mean, ".4f"),
                _number(r.kl_p99, ".3f"),
                _number(r.top1_agreement, ".1%"),
                _points(r.estimate) + predicted,
                NO_FIGURE if r.reference else _points(r.difference, signed=True),
                verdict_text(r, margin),
            )
        )
    return out


def _notes(rows: Sequence[QuantRow]) -> list[str]:
    notes = [
        f"{r.name}: no divergence figures: {r.divergence_note}" for r in rows if r.divergence_note
    ]
    notes += [
        f"{r.name}: the reference's own weights (the same sha256): not run again, its "
        "answers and figures are the reference's"
        for r in rows
        if r.same_weights
    ]
    if any(r.peak_upper_bound for r in rows):
        notes.append(
            "peak <=: the process's peak so far (this system cannot reset it between "
            "models), an upper bound of the model's own"
        )
    return notes


def render_table(rows: Sequence[QuantRow], margin: float) -> str:
    table = [HEAD, *cells(rows, margin)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEAD))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table]
    return "\n".join([*lines, *_notes(rows), FOOTNOTE])


@dataclass(frozen=True)
class Point:
    """A model on a plot: x (size or speed), the difference from the reference and its
    interval (points), and whether it is the reference."""

    label: str
    x: float
    y: float
    low: float
    high: float
    reference: bool = False


def pareto_front(points: Sequence[Point], *, smaller_is_better: bool) -> set[int]:
    """Indexes of the points no other point beats: at least as good on both axes (x
    smaller or larger as said, the difference higher) and strictly better on one."""
    sign = -1.0 if smaller_is_better else 1.0

    def beats(a: Point, b: Point) -> bool:
        ax, bx = sign * a.x, sign * b.x
        return ax >= bx and a.y >= b.y and (ax > bx or a.y > b.y)

    return {i for i, p in enumerate(points) if not any(beats(q, p) for q in points)}


def plot_points(rows: Sequence[QuantRow], x: Callable[[QuantRow], float | None]) -> list[Point]:
    """The models that have the figure: the reference at a difference of 0; each
    labelled by its quant type, or by its file where another has the same type."""
    types = [r.quant_type for r in rows]
    out = []
    for r in rows:
        unique = r.reference or types.count(r.quant_type) == 1  # the reference is named so
        label = r.quant_type if r.quant_type and unique else r.name
        label = label.removesuffix(".gguf")
        value = x(r)
        if value is None or value <= 0:
            continue
        if r.reference:
            out.append(Point(label, value, 0.0, 0.0, 0.0, reference=True))
        elif r.difference is not None:
            d = r.difference
            out.append(Point(label, value, d.value * 100, d.low * 100, d.high * 100))
    return out


def _scale(low: float, high: float, size: float, flip: bool = False) -> Callable[[float], float]:
    span = (high - low) or 1.0
    if flip:
        return lambda v: size - (v - low) / span * size
    return lambda v: (v - low) / span * size


def _ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round values inside [low, high], about `count` steps apart (1, 2 or 5 times a
    power of ten)."""
    rough = (high - low) / count or 1.0
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def scatter(
    points: Sequence[Point],
    *,
    name: str,
    x_label: str,
    margin_points: float,
    smaller_is_better: bool,
) -> str:
    """One plot as inline SVG: a whisker per interval, the ±margin band, the front's
    points filled and joined, the others hollow."""
    if not points:
        return f"<p>No model has a figure for {escape(x_label)}.</p>"
    front = pareto_front(points, smaller_is_better=smaller_is_better)
    xs = [p.x for p in points]
    ys = [v for p in points for v in (p.low, p.high)] + [-margin_points, margin_points]
    x_lo, x_hi = 0.0, max(xs) * 1.12
    y_lo, y_hi = min(ys), max(ys)
    y_pad = (y_hi - y_lo) * 0.08 or 1.0
    y_lo, y_hi = y_lo - y_pad, y_hi + y_pad
    width, height = PLOT_W - PAD_L - PAD_R, PLOT_H - PAD_T - PAD_B
    sx = _scale(x_lo, x_hi, width)
    sy = _scale(y_lo, y_hi, height, flip=True)

    def at(x: float, y: float) -> tuple[str, str]:
        return f"{PAD_L + sx(x):.1f}", f"{PAD_T + sy(y):.1f}"

    svg = [
        f'<svg class="scatter" id="{escape(name)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{PLOT_W}" height="{PLOT_H}" role="img">',
        f"<title>{escape('difference from the reference against ' + x_label)}</title>",
    ]
    band_top, band_bottom = PAD_T + sy(margin_points), PAD_T + sy(-margin_points)
    svg.append(
        f'<rect class="margin" x="{PAD_L}" y="{band_top:.1f}" width="{width}" '
        f'height="{band_bottom - band_top:.1f}" fill="{BAND}"><title>within '
        f"+/-{margin_points:g} point(s): equivalent</title></rect>"
    )
    for tick in _ticks(y_lo, y_hi):
        _, y = at(x_lo, tick)
        svg.append(f'<line x1="{PAD_L}" x2="{PAD_L + width}" y1="{y}" y2="{y}" stroke="#eee"/>')
        mark = f"{tick:+g}" if tick else "0"
        svg.append(
            f'<text x="{PAD_L - 6}" y="{y}" font-size="11" text-anchor="end" '
            f'dominant-baseline="middle">{mark}</text>'
        )
    for tick in _ticks(x_lo, x_hi):
        x, _ = at(tick, y_lo)
        svg.append(
            f'<text x="{x}" y="{PAD_T + height + 16}" font-size="11" '
            f'text-anchor="middle">{tick:,.0f}</text>'
        )
    _, zero_y = at(x_lo, 0.0)
    svg.append(
        f'<line x1="{PAD_L}" x2="{PAD_L + width}" y1="{zero_y}" y2="{zero_y}" stroke="#888"/>'
    )
    svg.append(
        f'<text x="{PAD_L + width / 2}" y="{PLOT_H - 6}" font-size="12" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    svg.append(
        f'<text x="14" y="{PAD_T + height / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {PAD_T + height / 2})">points vs the reference</text>'
    )
    line = sorted((p.x, p.y) for i, p in enumerate(points) if i in front)
    if len(line) > 1:
        path = " ".join("{},{}".format(*at(x, y)) for x, y in line)
        svg.append(
            f'<polyline class="front" points="{path}" fill="none" stroke="{FRONT}" '
            'stroke-dasharray="5,3"/>'
        )
    labels: dict[tuple[str, str], int] = {}  # labels at one place go one under another
    # the reference last, on top of a model at its very place (a copy of it)
    for i, p in sorted(enumerate(points), key=lambda item: item[1].reference):
        x, y = at(p.x, p.y)
        on = i in front
        what = "the reference" if p.reference else f"{p.y:+.1f} [{p.low:+.1f}, {p.high:+.1f}]"
        tip = escape(
            f"{p.label}: {what} at {p.x:,.1f} {x_label}" + (", on the front" if on else "")
        )
        if not p.reference:
            _, top = at(p.x, p.high)
            _, bottom = at(p.x, p.low)
            svg.append(
                f'<line class="whisker" x1="{x}" x2="{x}" y1="{top}" y2="{bottom}" '
                'stroke="#333" stroke-width="1.2"/>'
            )
        color = REFERENCE if p.reference else (FRONT if on else OTHER)
        fill = color if on else "white"
        css = "point front-point" if on else "point"
        svg.append(
            f'<circle class="{css}" cx="{x}" cy="{y}" r="5.5" fill="{fill}" stroke="{color}" '
            f'stroke-width="2"><title>{tip}</title></circle>'
        )
        stacked = labels.get((x, y), 0)
        labels[(x, y)] = stacked + 1
        name = p.label + (" (reference)" if p.reference else "")
        svg.append(
            f'<text x="{float(x) + 8:.1f}" y="{float(y) - 8 + 13 * stacked:.1f}" '
            f'font-size="11">{escape(name)}</text>'
        )
    svg.append("</svg>")
    return "".join(svg)


def render_page(rows: Sequence[QuantRow], margin: float) -> str:
    reference = rows[0]
    title = f"Which quantization: {reference.name} and {len(rows) - 1} other(s)"
    margin_points = margin * 100
    table = (
        "<table id='quants'><tr>"
        + "".join(f"<th>{escape(h)}</th>" for h in HEAD)
        + "</tr>"
        + "".join(
            "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
            for row in cells(rows, margin)
        )
        + "</table>"
    )
    notes = "".join(f"<p>{escape(n)}</p>" for n in [*_notes(rows), FOOTNOTE])
    by_size = scatter(
        plot_points(rows, lambda r: r.size_bytes / 2**20),
        name="by-size",
        x_label="file size (MiB)",
        margin_points=margin_points,
        smaller_is_better=True,
    )
    # letter choice generates nothing: its speed is the prompt's
    generated = any(r.gen_tokens_per_s for r in rows)
    by_speed = scatter(
        plot_points(
            rows, lambda r: (r.gen_tokens_per_s if generated else r.prompt_tokens_per_s) or None
        ),
        name="by-speed",
        x_label=f"{'generation' if generated else 'prompt'} speed on this machine (tokens/s)",
        margin_points=margin_points,
        smaller_is_better=False,
    )
    legend = (
        f'<p class="legend"><span style="color:{FRONT}">filled, joined: the Pareto front (no '
        "other model is both at least as small or fast and at least as accurate)</span>"
        f'<span style="color:{REFERENCE}">orange: the reference</span>'
        "<span>black: the difference's 95 % interval, widened for the looks</span>"
        f"<span>green band: within +/-{margin_points:g} point(s)</span></p>"
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
            f"<h1>{escape(title)}</h1>",
            table,
            notes,
            "<h2>Accuracy against size</h2>",
            by_size,
            "<h2>Accuracy against speed</h2>",
            by_speed,
            legend,
            "</body></html>",
        ]
    )
