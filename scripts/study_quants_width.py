"""How wide a quant's estimated full score is, from its own answers and with its
reference as predictor, as the quant answers more questions (issue 34).

Reads a reference's and a quant's results files of one seeded sample (as `quants`
writes them: the quant's nested samples lie inside the reference's); takes the
reference's answers on all its questions and the quant's on the nested subsample of k
per category, for each k, and prints both 95 % intervals and the ratio of their widths.

  .venv/bin/python scripts/study_quants_width.py REF.jsonl QUANT.jsonl
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from mmlupro_local.datasets.dataset import load_dataset
from mmlupro_local.datasets.sampling import SampleSpec, draw
from mmlupro_local.results.equivalence import predicted, settle
from mmlupro_local.results.estimates import paired, strict
from mmlupro_local.results.report import estimate_full_score, load_report
from mmlupro_local.results.stats import Z95

MARGIN = 0.01  # quants' default equivalence margin


def main(reference_path: Path, quant_path: Path) -> None:
    reference, quant = load_report(reference_path), load_report(quant_path)
    dataset = load_dataset(reference.first.dataset.get("name"))
    sizes = reference.sizes or {}
    seed = reference.latest.sample.seed
    ref_by_id = {r.question_id: r for r in reference.records}

    def nested(k: int) -> list[int]:
        return sorted(
            q.question_id for q in draw(dataset.test, SampleSpec(per_category=k, seed=seed))
        )

    # the reference's largest complete nested sample: its estimate stands on that
    most = 1
    while all(i in ref_by_id for i in nested(most + 1)):
        most += 1
    by_category: dict[str, list[bool]] = {}
    for i in nested(most):
        by_category.setdefault(ref_by_id[i].category, []).append(ref_by_id[i].correct)
    quant_by_id = {r.question_id: r for r in quant.records}
    print(
        f"reference: {reference.label}, {most} per category ({most * len(by_category)} questions)"
    )
    print(f"quant:     {quant.label}")
    print(
        f"{'k/cat':>5} {'n':>5}  {'own estimate':<22} {'width':>6}  "
        f"{'reference as predictor':<22} {'width':>6}  {'ratio':>5}"
    )
    k = 5
    while k <= most:
        ids = nested(k)
        mine = [quant_by_id[i] for i in ids if i in quant_by_id]
        if len(mine) < len(ids):
            break  # the quant's file stops short of this sample
        score = estimate_full_score(mine, dataset, sizes)
        assert score is not None
        own = score.strict
        outcomes: dict[str, list[tuple[bool, bool]]] = {}
        for r in mine:
            outcomes.setdefault(r.category, []).append(
                (ref_by_id[r.question_id].correct, r.correct)
            )
        guess = predicted(by_category, outcomes, sizes)
        assert guess is not None
        low, high = guess.interval()
        own_w, pred_w = own.high - own.low, high - low
        print(
            f"{k:>5} {len(mine):>5}  {own.value:6.1%} [{own.low:5.1%}, {own.high:5.1%}] "
            f"{own_w * 100:5.1f}  {guess.value:6.1%} [{low:5.1%}, {high:5.1%}] "
            f"{pred_w * 100:5.1f}  {pred_w / own_w:5.2f}"
        )
        k *= 2
    print(f"own: {own.method}; widths in points, of 95 % intervals")
    # the difference: at which nested size one look, planned alone, would settle it
    settled = None
    for k in range(1, most + 1):
        ids = nested(k)
        pairs = [(ref_by_id[i], quant_by_id[i]) for i in ids if i in quant_by_id]
        if len(pairs) < len(ids):
            break
        diff = paired(pairs, sizes, strict)
        assert diff is not None
        half = Z95 * math.sqrt(diff.variance)
        verdict = settle(diff.value, diff.value - half, diff.value + half, MARGIN, len(pairs), 1)
        if verdict.verdict != "unsettled":
            settled = (k, len(pairs), verdict.verdict, diff.value)
            break
    if settled is None:
        print(f"one look planned alone settles no verdict within {most} per category")
    else:
        k, n, verdict, value = settled
        print(
            f"one look planned alone settles it at {k} per category ({n} questions): "
            f"{verdict}, {value * 100:+.1f} points (margin +/-{MARGIN * 100:g})"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
