"""Fit the item-response model that the assisted estimate of the full MMLU-Pro score uses
(issue 24), and write it into the package: mmlupro_local/data/mmlu-pro/items.bin.

Input: ../shared/data/official-runs/correct.csv.gz, and nothing else: which of the 12,032
test questions each of 20 released official 5-shot CoT runs answered correctly. So that
what ships can be checked on runs it has never seen, no other run may be added here.

Model: a two-parameter logistic (2PL), P(run i answers question j) = sigmoid(a_j * theta_i
+ c_j), fitted by maximum a posteriori with alternating Newton steps (theta ~ N(0, 1);
a ~ N(1, 1) kept at or above 0.05; c ~ N(0, 2^2), since 20 runs cannot pin down an item
that all or none answered). The parameters are stored as half floats in the order of the
embedded dataset's test question ids, with the dataset's sha256 to check against.

    python scripts/fit_items.py [--runs PATH] [--out PATH] [--leave-out MODEL]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmlupro_local.datasets.dataset import load_dataset  # noqa: E402
from mmlupro_local.datasets.items import ItemModel, write_items  # noqa: E402

RUNS = ROOT.parent / "shared" / "data" / "official-runs" / "correct.csv.gz"
OUT = ROOT / "mmlupro_local" / "data" / "mmlu-pro" / "items.bin"
A_PRIOR, A_SD, C_SD, A_MIN = 1.0, 1.0, 2.0, 0.05


def read_runs(path: Path) -> tuple[list[int], list[str], list[str], np.ndarray]:
    """(question ids, categories, run names, a runs x questions 0/1 matrix)."""
    with gzip.open(path, "rt", newline="") as handle:
        rows = list(csv.reader(handle))
    names = rows[0][2:]
    ids = [int(r[0]) for r in rows[1:]]
    categories = [r[1] for r in rows[1:]]
    matrix = np.array([[int(v) for v in r[2:]] for r in rows[1:]], dtype=np.float64).T
    return ids, categories, names, matrix


def fit(y: np.ndarray, iterations: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MAP estimates (theta per run, a and c per question) of the 2PL for y."""
    _, items = y.shape
    theta = (y.mean(axis=1) - y.mean()) / (y.mean(axis=1).std() + 1e-9)
    a = np.full(items, A_PRIOR)
    c = np.zeros(items)
    for _ in range(iterations):
        p = _sigmoid(theta[:, None] * a[None, :] + c[None, :])
        w = p * (1 - p)
        r = y - p
        # items: a 2-D Newton step each, vectorised
        g_a = (theta[:, None] * r).sum(0) - (a - A_PRIOR) / A_SD**2
        g_c = r.sum(0) - c / C_SD**2
        h_aa = -(theta[:, None] ** 2 * w).sum(0) - 1 / A_SD**2
        h_ac = -(theta[:, None] * w).sum(0)
        h_cc = -w.sum(0) - 1 / C_SD**2
        det = h_aa * h_cc - h_ac**2
        a = np.maximum(a - (h_cc * g_a - h_ac * g_c) / det, A_MIN)
        c = c - (h_aa * g_c - h_ac * g_a) / det
        # runs: a 1-D Newton step each
        p = _sigmoid(theta[:, None] * a[None, :] + c[None, :])
        g_t = ((y - p) * a[None, :]).sum(1) - theta
        h_t = -((p * (1 - p)) * a[None, :] ** 2).sum(1) - 1
        theta = theta - g_t / h_t
    return theta, a, c


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--leave-out",
        action="append",
        default=[],
        help="fit without this run (the study's leave-one-model-out)",
    )
    args = parser.parse_args()
    ids, _, names, y = read_runs(args.runs)
    dataset = load_dataset()
    if ids != sorted(q.question_id for q in dataset.test):
        raise SystemExit(f"{args.runs} does not list the embedded dataset's test questions")
    keep = [i for i, name in enumerate(names) if name not in args.leave_out]
    theta, a, c = fit(y[keep])
    model = ItemModel(
        dataset.sha256, tuple(a.tolist()), tuple(c.tolist()), tuple(names[i] for i in keep)
    )
    write_items(args.out, model)
    p = _sigmoid(theta[:, None] * a[None, :] + c[None, :])
    print(
        f"fitted on {len(keep)} runs, {len(ids)} questions; wrote {args.out} "
        f"({args.out.stat().st_size:,} bytes)"
    )
    print(f"mean |predicted - observed| per run: {np.abs(p.mean(1) - y[keep].mean(1)).mean():.4f}")
    print(f"a: median {np.median(a):.2f}, c: median {np.median(c):.2f}")


if __name__ == "__main__":
    main()
