"""A single self-contained HTML report: settings, a chart, the comparison, every answer.

No network, no external assets: inline CSS, inline SVG, and an inline script
(report.js) that shows the questions a page at a time and unpacks a response only when
it is opened (html_data.py packs them). Text in the markup goes through html.escape and
text the script shows through textContent, so a response holding markup shows as text.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from importlib.resources import files

from mmlupro_local.results.compare import Comparison, render_comparison
from mmlupro_local.results.estimates import Estimate
from mmlupro_local.results.figures import NO_FIGURE, Figures, percent
from mmlupro_local.results.html_data import packed_responses, question_rows, script_json, status
from mmlupro_local.results.report import RunReport, headline

OVERALL = "estimated full score"
COLORS = ("#3b6fb6", "#d9822b", "#3a9a5b", "#a4508b", "#7a7a7a")
ROW, BAR, LEFT, WIDTH = 30, 9, 150, 560

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; } td, th { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
pre { white-space: pre-wrap; margin: 0; max-height: 20em; overflow: auto; background: #f6f6f6; padding: 6px; }
.correct { color: #2a7a3b; } .wrong { color: #b33; } .guessed { color: #a66b00; }
.estimate { font-size: 1.25em; margin: 0.4em 0; }
.legend span { display: inline-block; margin-right: 1.5em; } .swatch { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
"""

SCRIPT = files("mmlupro_local.results").joinpath("report.js").read_text(encoding="utf-8")


def render_html(reports: list[RunReport], comparison: Comparison | None = None) -> str:
    title = "MMLU-Pro report: " + ", ".join(r.label for r in reports)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        _headlines(reports),
        _warnings(reports),
        _settings(reports),
        "<h2>Accuracy by category</h2>",
        _chart(reports),
    ]
    if comparison is not None:
        parts += ["<h2>Comparison</h2>", f"<pre>{escape(render_comparison(comparison))}</pre>"]
        parts.append(_flips(reports, comparison))
    parts += [_questions(reports), f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(p for p in parts if p)


def _headlines(reports: list[RunReport]) -> str:
    """What the page leads with: each run's estimated full score and its interval."""
    items = []
    for r in reports:
        sentence = headline(r)
        if sentence:
            who = f"<b>{escape(r.label)}</b>: " if len(reports) > 1 else ""
            items.append(f"<p class='estimate'>{who}{escape(sentence)}</p>")
    return "".join(items)


def _warnings(reports: list[RunReport]) -> str:
    items = [w for r in reports for w in r.warnings]
    if not items:
        return ""
    return "<ul class='warnings'>" + "".join(f"<li>{escape(w)}</li>" for w in items) + "</ul>"


def _settings(reports: list[RunReport]) -> str:
    keys = (
        "model",
        "quantization",
        "architecture",
        "style",
        "thinking",
        "shots",
        "strip_options",
        "extract",
        "max_tokens",
        "early_stop",
        "seed",
        "sample",
        "dataset",
        "language",
        "dataset_sha256",
        "tool_version",
    )
    head = "".join(f"<th>{escape(r.label)}</th>" for r in reports)
    rows = "".join(
        f"<tr><th>{escape(k)}</th>"
        + "".join(f"<td>{escape(str(r.settings.get(k)))}</td>" for r in reports)
        + "</tr>"
        for k in keys
    )
    summaries: list[tuple[str, Callable[[RunReport], str]]] = [
        ("estimated full score", lambda r: _estimate(r.score.strict if r.score else None)),
        ("estimator", lambda r: r.score.strict.method if r.score else NO_FIGURE),
        ("sample mean (pooled)", lambda r: _pct(r.overall)),
        ("with guesses credited", lambda r: _rate(r.overall, r.overall.official_accuracy)),
        ("chance level", lambda r: _rate(r.overall, r.overall.chance)),
        ("questions", lambda r: f"{r.overall.n} of {r.sample_size}"),
    ]
    figures = "".join(
        f"<tr><th>{escape(name)}</th>"
        + "".join(f"<td>{escape(value(r))}</td>" for r in reports)
        + "</tr>"
        for name, value in summaries
    )
    return f"<h2>Runs</h2><table id='settings'><tr><th></th>{head}</tr>{rows}{figures}</table>"


def _estimate(e: Estimate | None) -> str:
    if e is None:
        return NO_FIGURE
    if e.exact:
        return f"{e.value:.1%} (exact)"
    return f"{e.value:.1%} (95% CI {e.low:.1%} to {e.high:.1%})"


def _rate(f: Figures, value: float) -> str:
    return percent(value if f.n else None)


def _pct(f: Figures) -> str:
    if not f.n:
        return NO_FIGURE
    low, high = f.interval
    return f"{f.accuracy:.1%} (95% CI {low:.1%} to {high:.1%})"


def _bar(report: RunReport, name: str) -> tuple[float, float, float, float, str] | None:
    """(value, low, high, chance, what it is) of a row: a category, or the full score."""
    if name == OVERALL:
        if report.score is None:
            pooled = report.overall
            low, high = pooled.interval
            what = f"pooled sample mean ({pooled.correct}/{pooled.n})"
            return pooled.accuracy, low, high, pooled.chance, what
        e = report.score.strict
        return (
            e.value,
            e.low,
            e.high,
            report.overall.chance,
            f"{e.method}, {e.questions}/{e.population}",
        )
    f = next((c for c in report.categories if c.name == name), None)
    if f is None or f.n == 0:
        return None
    low, high = f.interval
    weight = (
        f", weight {report.sizes[name] / sum(report.sizes.values()):.1%}"
        if report.sizes and name in report.sizes
        else ""
    )
    return f.accuracy, low, high, f.chance, f"{f.correct}/{f.n}{weight}"


def _row_label(reports: list[RunReport], name: str) -> str:
    """A category with its weight in the estimate (the first run's sizes)."""
    sizes = reports[0].sizes
    if name == OVERALL or not sizes or name not in sizes:
        return name
    return f"{name} ({sizes[name] / sum(sizes.values()):.0%})"


def _chart(reports: list[RunReport]) -> str:
    names = [*sorted({f.name for r in reports for f in r.categories}), OVERALL]
    height = ROW * len(names) + 40
    out = [
        f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{LEFT + WIDTH + 40}" height="{height}" role="img">'
    ]
    for tick in range(0, 101, 20):
        x = LEFT + WIDTH * tick / 100
        out.append(f'<line x1="{x}" y1="0" x2="{x}" y2="{height - 25}" stroke="#eee"/>')
        out.append(
            f'<text x="{x}" y="{height - 10}" font-size="11" text-anchor="middle">{tick}%</text>'
        )
    for i, name in enumerate(names):
        top = i * ROW + 4
        out.append(
            f'<text x="{LEFT - 8}" y="{top + ROW / 2}" font-size="12" text-anchor="end">{escape(_row_label(reports, name))}</text>'
        )
        chance = None
        for j, report in enumerate(reports):
            bar = _bar(report, name)
            if bar is None:
                continue
            value, low, high, chance, what = bar
            y = top + j * (BAR + 2)
            color = COLORS[j % len(COLORS)]
            label = escape(
                f"{report.label}, {name}: {value:.1%} ({what}), 95% CI {low:.1%}-{high:.1%}"
            )
            out.append(
                f'<rect class="bar" x="{LEFT}" y="{y}" width="{WIDTH * value:.1f}" height="{BAR}" fill="{color}"><title>{label}</title></rect>'
            )
            out.append(
                f'<line class="whisker" x1="{LEFT + WIDTH * low:.1f}" x2="{LEFT + WIDTH * high:.1f}" y1="{y + BAR / 2}" y2="{y + BAR / 2}" stroke="#111" stroke-width="1.2"/>'
            )
            out.append(
                f'<text x="{LEFT + WIDTH * high + 4:.1f}" y="{y + BAR - 1}" font-size="10">{value:.1%}</text>'
            )
        if chance is not None:
            x = LEFT + WIDTH * chance
            out.append(
                f'<line class="chance" x1="{x:.1f}" x2="{x:.1f}" y1="{top - 2}" y2="{top + ROW - 6}" stroke="#c00" stroke-dasharray="3,2"><title>chance {chance:.1%}</title></line>'
            )
    out.append("</svg>")
    legend = "".join(
        f'<span><i class="swatch" style="background:{COLORS[j % len(COLORS)]}"></i>{escape(r.label)}</span>'
        for j, r in enumerate(reports)
    )
    return (
        "\n".join(out)
        + f'<p class="legend">{legend}<span>black: 95% interval</span><span style="color:#c00">dashed: chance level</span></p>'
        + "<p>Each category's share of the questions (in brackets) is its weight in the estimated "
        "full score, the last row; a per-category sample's pooled mean would count every "
        "category equally.</p>"
    )


def _flips(reports: list[RunReport], comparison: Comparison) -> str:
    """Each question the two runs answered with different letters; both responses a
    click away, unpacked from the runs' own blocks (not written out again)."""
    if not comparison.flips:
        return ""
    a, b = ({r.question_id: (i, r) for i, r in enumerate(report.records)} for report in reports[:2])
    rows = []
    for f in comparison.flips:
        (ia, ra), (ib, rb) = a[f.question_id], b[f.question_id]
        rows.append(
            f"<tr data-flip><td>{f.question_id}</td><td>{escape(f.category)}</td>"
            f"<td>{escape(f.answer)}</td>"
            f'<td class="{status(ra)}">{escape(f.pred_a or "-")} ({status(ra)})</td>'
            f'<td class="{status(rb)}">{escape(f.pred_b or "-")} ({status(rb)})</td>'
            f'<td><details class="response" data-runs="0 1" data-index="{ia} {ib}">'
            "<summary>both responses</summary></details></td></tr>"
        )
    return (
        f"<h2>Flipped predictions ({len(comparison.flips)})</h2>"
        '<table id="flips"><thead><tr><th>id</th><th>category</th><th>answer</th>'
        f"<th>{escape(comparison.a)}</th><th>{escape(comparison.b)}</th>"
        "<th>responses</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _questions(reports: list[RunReport]) -> str:
    """The table's frame and its data; report.js fills in a page of rows at a time."""
    categories = sorted({r.category for report in reports for r in report.records})
    labels = [r.label for r in reports]
    data = {"runs": labels, "rows": question_rows([r.records for r in reports])}

    def choices(values: list[tuple[str, str]]) -> str:
        return '<option value="">all</option>' + "".join(
            f'<option value="{escape(v)}">{escape(text)}</option>' for v, text in values
        )

    runs = choices([(str(i), label) for i, label in enumerate(labels)])
    packed = "".join(
        f'<script type="application/octet-stream" id="responses-{i}">'
        f"{packed_responses(r.records)}</script>"
        for i, r in enumerate(reports)
    )
    return (
        "<h2>Questions</h2><p>"
        f'<label>Run <select id="filter-run">{runs}</select></label> '
        f'<label>Category <select id="filter-category">'
        f"{choices([(c, c) for c in categories])}</select></label> "
        '<label>Result <select id="filter-status">'
        f"{choices([(s, s) for s in ('correct', 'wrong', 'guessed')])}</select></label> "
        '<span id="shown"></span> shown, <span id="page"></span> '
        '<button id="previous" type="button">previous</button> '
        '<button id="next" type="button">next</button></p>'
        '<table id="questions"><thead><tr><th>run</th><th>id</th><th>category</th><th>answer</th>'
        "<th>prediction</th><th>result</th><th>level</th><th>response</th></tr></thead>"
        "<tbody></tbody></table>"
        "<noscript><p>The questions table and the responses need JavaScript; the results "
        "file holds them, one JSON record a line.</p></noscript>"
        f'<script type="application/json" id="rows">{script_json(data)}</script>{packed}'
    )
