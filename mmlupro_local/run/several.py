"""Several models in one run, as data: the same sample and settings for each, one engine
mode for all, then one report comparing each with the first."""

from __future__ import annotations

from pathlib import Path

from mmlupro_local.results.compare import compare, render_comparison
from mmlupro_local.results.report import load_report, mode_note, render, unique_labels
from mmlupro_local.run.targets import TargetSpec


def check_all(targets: list[TargetSpec]) -> None:
    """Every model checked before the first runs: a wrong second file is named at once,
    not after the first model's whole run (issue 26, case 15)."""
    for target in targets:
        target.check()


def share_mode(targets: list[TargetSpec]) -> list[TargetSpec]:
    """Several model files share one engine mode, chosen for the largest, so that their
    comparison is not confounded by it."""
    largest = max(t.rule_size for t in targets)
    return [t.sized(largest) for t in targets]


def summary(paths: list[Path], names: list[str]) -> str:
    """One report, a column per model, and each model compared with the first."""
    labels = names if len(set(names)) == len(names) else unique_labels(tuple(paths))
    reports = [load_report(p, label=label) for p, label in zip(paths, labels, strict=True)]
    lines = [
        f"\n== all {len(reports)} models (reference: {reports[0].label})",
        render(reports, "table"),
    ]
    note = mode_note(reports)
    if note:
        lines.append(f"note: {note}")
    for other in reports[1:]:
        lines.append(f"\n== {other.label} against {reports[0].label}")
        lines.append(render_comparison(compare(reports[0], other)))
    return "\n".join(lines)
