"""Speculative decoding with a draft model against plain decoding, on the same
questions, in one invocation (issue 35).

    python scripts/bench_draft.py MODEL.gguf DRAFT.gguf [--per-category 2] [--max-tokens N]

Both runs go one question at a time (--parallel 1), each in a process of its own, on a
private prefix cache a first pass (two tokens per answer) has filled, so neither pays
for reading the category prefixes (the draft's included); the plain run checks no
guesses (--lookup 0), the drafted one checks up to 8 of the draft's a step. Prints each
run's wall time, generated tokens and tokens/s, the draft's acceptance, the peak
resident memory of each, and whether every response is the same.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.model.hardware import physical_cores
from mmlupro_local.run.request import RunRequest
from mmlupro_local.run.targets.gguf import GgufSpec
from mmlupro_local.studies.bench import private_cache, timed_run
from mmlupro_local.studies.peak import peak_rss_bytes


def _one(args: tuple[str, Path, Path | None, Path, SampleSpec, int | None]) -> dict[str, Any]:
    """A run in a process of its own, so that its peak memory is its own."""
    name, model, draft, out, sample, budget = args
    target = GgufSpec(path=model, threads=physical_cores(), lookup=0, draft=draft)
    request = RunRequest(target=target, out=out, sample=sample, max_tokens=budget, parallel=1)
    run = timed_run(name, request)
    last = json.loads(out.read_text().splitlines()[-1])
    used = last.get("used", {}) if last.get("type") == "end" else {}
    return {
        "name": name,
        "wall": run.wall,
        "responses": {r.question_id: r.response for r in run.records},
        "generated": sum(r.generated_tokens for r in run.records),
        "decode": sum(r.decode_seconds - r.prompt_seconds for r in run.records),
        "draft": used.get("draft"),
        "peak": peak_rss_bytes(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path)
    parser.add_argument("draft", type=Path)
    parser.add_argument("--per-category", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--categories", default="", help="comma-separated (default: all)")
    args = parser.parse_args()
    chosen = tuple(c for c in args.categories.split(",") if c)
    sample = SampleSpec(per_category=args.per_category, categories=chosen)
    print(
        f"model {args.model.name}, draft {args.draft.name}, {args.per_category} per "
        f"category, {physical_cores()} threads, one question at a time"
    )
    with private_cache() as tmp:
        plan = [  # the warm-up answers two tokens: it fills the prefix cache for both models
            ("warm-up", args.model, args.draft, tmp / "warm.jsonl", 2),
            ("plain", args.model, None, tmp / "plain.jsonl", args.max_tokens),
            ("draft", args.model, args.draft, tmp / "draft.jsonl", args.max_tokens),
        ]
        runs = []
        for name, model, draft, out, budget in plan:
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(1, mp_context=spawn) as pool:  # a fresh process each
                runs.append(pool.submit(_one, (name, model, draft, out, sample, budget)).result())
            print(f"  {name} done in {runs[-1]['wall']:.1f} s", flush=True)
    plain, drafted = runs[1], runs[2]
    print(f"{'':<8}{'seconds':>9}{'generated':>11}{'gen tok/s':>11}{'peak MiB':>10}")
    for run in (plain, drafted):
        rate = run["generated"] / run["decode"] if run["decode"] else 0.0
        print(
            f"{run['name']:<8}{run['wall']:>9.1f}{run['generated']:>11,}{rate:>11.1f}"
            f"{run['peak'] / 2**20:>10,.0f}"
        )
    d = drafted["draft"] or {}
    share = d.get("kept", 0) / d["proposed"] if d.get("proposed") else 0.0
    same = plain["responses"] == drafted["responses"]
    print(
        f"draft: {d.get('kept', 0):,} of {d.get('proposed', 0):,} proposed tokens kept "
        f"({share:.1%}), {d.get('seconds', 0.0):.1f} s drafting"
    )
    print(
        f"speed-up {plain['wall'] / drafted['wall']:.2f}x in wall time "
        f"({plain['wall']:.1f} s against {drafted['wall']:.1f} s); responses "
        f"{'identical' if same else 'DIFFERENT'} on {len(plain['responses'])} questions"
    )


if __name__ == "__main__":
    main()
