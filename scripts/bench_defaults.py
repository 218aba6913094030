"""run's defaults (--parallel auto --lookup auto) against --reference and the modes around
them, on the same questions, in one invocation.

    python scripts/bench_defaults.py [MODEL.gguf] [--per-category 5] [--seed 7] [--max-tokens 512] [--warm]

Every run starts from an empty prefix cache; with --warm, every run finds the category
prefixes in the cache (one untimed run fills it first), as a rerun or a resumed run
does. Prints each mode's wall time, generated tokens and speed-up over --reference, and
how far the defaults are from the fastest of --parallel 4/8 with and without --lookup 16.
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from demo_model import smollm2
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.model.hardware import physical_cores
from mmlupro_local.run.request import RunRequest
from mmlupro_local.run.targets.gguf import GgufSpec
from mmlupro_local.studies.bench import TimedRun, private_cache, timed_run

MODES = [
    ("--parallel 4", 4, 0),
    ("--parallel 8", 8, 0),
    ("--parallel 4 --lookup 16", 4, 16),
    ("--parallel 8 --lookup 16", 8, 16),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", type=Path, default=None)
    parser.add_argument("--per-category", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument(
        "--warm", action="store_true", help="time every run with a warm prefix cache"
    )
    args = parser.parse_args()
    model = args.model or smollm2()
    threads = physical_cores()
    spec = SampleSpec(seed=args.seed, per_category=args.per_category)
    print(
        f"model {model.name}, {args.per_category} per category (seed {args.seed}), "
        f"budget {args.max_tokens}, {threads} threads, "
        f"{'warm' if args.warm else 'cold'} prefix cache each"
    )
    plans: list[tuple[str, int, int, bool]] = [
        ("defaults", 1, 0, True),
        ("--reference", 1, 0, False),
    ]
    plans += [(name, width, lookup, False) for name, width, lookup in MODES]
    runs: list[TimedRun] = []
    with private_cache() as shared:
        if args.warm:  # the prefixes' KV states do not depend on --parallel or --lookup
            fill = GgufSpec(path=model, threads=threads, lookup=0)
            timed_run(
                "fill",
                RunRequest(
                    target=fill, out=shared / "fill.jsonl", sample=spec, max_tokens=1, parallel=1
                ),
            )
        for name, width, lookup, auto in plans:
            with _cache(args.warm) as tmp:
                target = GgufSpec(path=model, threads=threads, lookup=None if auto else lookup)
                request = RunRequest(
                    target=target,
                    out=tmp / f"{len(runs)}.jsonl",
                    sample=spec,
                    max_tokens=args.max_tokens,
                    parallel=None if auto else width,
                )
                run = timed_run(name, request)
            runs.append(run)
            print(f"  {name}: {run.wall:.1f} s", flush=True)
    reference = runs[1]
    print(f"{'':<28}{'seconds':>9}{'gen tokens':>12}{'vs --reference':>16}{'agree':>8}")
    for run in runs:
        agree = sum(reference.predictions.get(q) == p for q, p in run.predictions.items())
        print(
            f"{run.name:<28}{run.wall:>9.1f}{run.generated:>12}{reference.wall / run.wall:>15.2f}x"
            f"{agree:>5}/{len(reference.records)}"
        )
    best = min(runs[2:], key=lambda r: r.wall)
    print(
        f"defaults: {reference.wall / runs[0].wall:.2f}x --reference; "
        f"{runs[0].wall / best.wall - 1:+.1%} against the fastest of the others ({best.name})"
    )


def _cache(warm: bool) -> AbstractContextManager[Path]:
    """The shared (warm) cache, or a private empty one for this run alone."""
    return nullcontext(Path(tempfile.mkdtemp())) if warm else private_cache()


if __name__ == "__main__":
    main()
