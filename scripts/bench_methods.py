"""--method logprob against --method cot on the same questions, in one invocation.

    python scripts/bench_methods.py [MODEL.gguf] [--per-category 10] [--max-tokens N]

Each run starts from an empty prefix cache, at the run defaults otherwise (--max-tokens
left out means the official 2048). Prints each method's wall time, questions per minute,
the time a full run of the 12,032 test questions would take at that rate, and the
accuracy with its 95 % Wilson interval.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from demo_model import smollm2
from mmlupro_local.datasets.dataset import load_dataset
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.model.hardware import physical_cores
from mmlupro_local.results.stats import wilson
from mmlupro_local.run.request import RunRequest
from mmlupro_local.run.targets.gguf import GgufSpec
from mmlupro_local.studies.bench import TimedRun, private_cache, timed_run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", type=Path, default=None)
    parser.add_argument("--per-category", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=None, help="cot's budget")
    args = parser.parse_args()
    model = args.model or smollm2()
    threads = physical_cores()
    full = len(load_dataset().test)
    spec = SampleSpec(per_category=args.per_category)
    budget = args.max_tokens or "the official 2048"
    print(
        f"model {model.name}, {args.per_category} per category, {threads} threads, "
        f"cot budget {budget}"
    )
    runs: list[TimedRun] = []
    for method in ("logprob", "cot"):
        with private_cache() as tmp:
            target = GgufSpec(path=model, threads=threads, lookup=0)
            request = RunRequest(
                target=target,
                out=tmp / "r.jsonl",
                sample=spec,
                method=method,
                max_tokens=args.max_tokens if method == "cot" else None,
                parallel=1,
            )
            runs.append(timed_run(f"--method {method}", request))
            print(f"  {method} done in {runs[-1].wall:.1f} s", flush=True)
    head = f"{'':<18}{'questions':>10}{'seconds':>9}{'q/min':>8}{'full run':>10}{'accuracy':>10}  95% CI"
    print(head)
    for run in runs:
        n = len(run.records)
        correct = sum(r.correct for r in run.records)
        low, high = wilson(correct, n)
        hours = run.wall / n * full / 3600
        print(
            f"{run.name:<18}{n:>10}{run.wall:>9.1f}{n / run.wall * 60:>8.1f}{hours:>9.1f}h"
            f"{correct / n:>10.1%}  {low:.1%}-{high:.1%}"
        )
    print(
        f"logprob is {runs[1].wall / runs[0].wall:.1f}x faster than cot here; "
        f"generated tokens: cot {sum(r.generated_tokens for r in runs[1].records)}, logprob 0"
    )


if __name__ == "__main__":
    main()
