"""What exactness costs (issue 31), in one invocation, on the same questions with a warm
prefix cache: run's defaults against --parallel 1 --lookup 0 (one question at a time,
under the same canonical shapes), and against the defaults of the last release before
canonical shapes (a git worktree of BEFORE, run with this venv), whose answers depended
on batching.

    python scripts/bench_exact.py MODEL.gguf [--per-category 2] [--seed 7] [--max-tokens 512]
        [--before aa7454a] [--mode "--parallel 4 --lookup 16" ...]

Each engine fills its own prefix cache first (a run of budget 1: the release before keyed
its cache otherwise), then every timed run finds its prefixes there. Prints each run's wall
time, generated and guessed tokens, its speed against --parallel 1 --lookup 0 and against
the release before, and how many responses are identical to --parallel 1 --lookup 0's.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "aa7454a"  # the last release whose engine batched without canonical shapes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path)
    parser.add_argument("--per-category", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--before", default=BEFORE, help="the release to compare with")
    parser.add_argument("--mode", action="append", default=[], help="more modes to time")
    args = parser.parse_args()
    sample = ["--per-category", str(args.per_category), "--seed", str(args.seed),
              "--max-tokens", str(args.max_tokens), "--no-progress"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        before = work / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before],
            check=True,
            capture_output=True,
        )
        try:
            engines = {"now": ROOT, "before": before}
            for name, tree in engines.items():  # fill each engine's prefix cache
                _run(tree, work, name, "fill", [str(args.model), *sample, "--max-tokens", "1"])
            plans = [
                ("now", "defaults", []),
                ("now", "--parallel 1 --lookup 0", ["--parallel", "1", "--lookup", "0"]),
                ("before", "defaults", []),
            ]
            plans += [("now", mode, shlex.split(mode)) for mode in args.mode]
            print(
                f"model {args.model.name}, {args.per_category} per category (seed "
                f"{args.seed}), budget {args.max_tokens}, warm prefix cache, one invocation"
            )
            runs = []
            for engine, name, flags in plans:
                wall, records = _run(
                    engines[engine], work, engine, name, [str(args.model), *sample, *flags]
                )
                runs.append((f"{engine}: {name}", wall, records))
                print(f"  {engine}: {name}: {wall:.1f} s", flush=True)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)],
                check=False,
                capture_output=True,
            )
    _table(runs)


def _run(
    tree: Path, work: Path, engine: str, name: str, args: list[str]
) -> tuple[float, dict[int, dict[str, object]]]:
    out = work / f"{engine}-{len(list(work.glob('*.jsonl')))}.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GGML_CPU_TILED")}
    env.update(PYTHONPATH=str(tree), MMLUPRO_LOCAL_CACHE=str(work / f"cache-{engine}"))
    began = time.perf_counter()
    # run from the tree itself: `python -m` puts the working directory before PYTHONPATH
    done = subprocess.run(
        [sys.executable, "-m", "mmlupro_local", "run", *args, "--out", str(out)],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"{engine} {name} failed:\n{done.stderr}")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    return wall, {r["question_id"]: r for r in records if r["type"] == "result"}


def _table(runs: list[tuple[str, float, dict[int, dict[str, object]]]]) -> None:
    one = next(r for r in runs if r[0] == "now: --parallel 1 --lookup 0")
    before = next(r for r in runs if r[0] == "before: defaults")
    print(
        f"{'':<36}{'seconds':>9}{'generated':>11}{'guessed':>9}{'vs one-at-a-time':>18}"
        f"{'vs before':>11}{'identical':>11}"
    )
    for name, wall, records in runs:
        generated = sum(int(str(r["generated_tokens"])) for r in records.values())
        guessed = sum(int(str(r.get("guessed_tokens", 0))) for r in records.values())
        same = sum(one[2][q]["response"] == r["response"] for q, r in records.items())
        print(
            f"{name:<36}{wall:>9.1f}{generated:>11,}{guessed:>9,}{one[1] / wall:>17.2f}x"
            f"{before[1] / wall:>10.2f}x{same:>6}/{len(records)}"
        )


if __name__ == "__main__":
    main()
