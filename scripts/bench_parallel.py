"""Parallel decoding and the prefix cache, measured in one invocation.

    python scripts/bench_parallel.py [MODEL.gguf] [--per-category 2] [--max-tokens 512]

1. Raw llama_decode throughput: prompt tokens/s, and generation tokens/s with N
   sequences sharing a 1,300-token prefix, N = 1, 2, 4, 8.
2. The fixed stratified sample (2 per category, seed 0, budget 512, early stop) run
   three ways: --parallel 1 without the prefix cache; the best N with a cold cache
   (filling it); the best N with the warm cache. Prints wall time, questions per
   minute, the speed-up, the share of time outside llama_decode, peak memory and how
   many predictions agree with --parallel 1.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import llama_cpp as L

from demo_model import smollm2
from mmlupro_local.engine import EngineSettings, GenerationSettings
from mmlupro_local.engine.llama import LlamaEngine
from mmlupro_local.hardware import physical_cores
from mmlupro_local.runner import RunConfig, run
from mmlupro_local.sampling import SampleSpec


def raw_throughput(model: Path, threads: int) -> int:
    prefix = [100 + i % 500 for i in range(1300)]
    best, best_rate = 1, 0.0
    for n in (1, 2, 4, 8):
        engine = LlamaEngine(model, EngineSettings(threads=threads, flash_attn=n > 1))
        engine.open_context(2048 + 256 * n, max(n, 2))
        batched = engine._batched
        assert batched is not None
        began = time.perf_counter()
        batched._decode_prefix(prefix)
        prompt_rate = len(prefix) / (time.perf_counter() - began)
        memory = L.llama_get_memory(engine._ctx)
        for seq in range(n):
            L.llama_memory_seq_cp(memory, batched.template, seq, -1, -1)
        began = time.perf_counter()
        for step in range(24):
            batched._decode([(200 + step, len(prefix) + step, seq, True) for seq in range(n)])
        rate = n * 24 / (time.perf_counter() - began)
        engine.close()
        print(f"  N={n}: generation {rate:6.1f} tok/s   (prompt {prompt_rate:.0f} tok/s)")
        if rate > best_rate * 1.05:
            best, best_rate = n, rate
    return best


def timed_run(
    model: Path, out: Path, threads: int, parallel: int, cache: bool, spec: SampleSpec, budget: int
) -> dict[str, Any]:
    config = RunConfig(model=model, out=out, sample=spec, generation=GenerationSettings(max_tokens=budget),
                       threads=threads, parallel=parallel, flash_attn=parallel > 1, prefix_cache=cache)  # fmt: skip
    began = time.perf_counter()
    outcome = run(config, echo=lambda _: None, progress=False)
    wall = time.perf_counter() - began
    decode = sum(r["decode_seconds"] for r in outcome.records)
    return {"wall": wall, "decode": decode, "records": outcome.records}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", type=Path, default=None)
    parser.add_argument("--per-category", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--parallel", type=int, default=None, help="skip part 1 and use this N")
    args = parser.parse_args()
    model = args.model or smollm2()
    threads = physical_cores()
    print(f"model {model.name}, {threads} threads")
    if args.parallel is None:
        print("1. raw llama_decode throughput, 1,300-token shared prefix")
        best = raw_throughput(model, threads)
    else:
        best = args.parallel
    print(
        f"2. {args.per_category} per category, budget {args.max_tokens}, early stop; best N = {best}"
    )
    spec = SampleSpec(per_category=args.per_category)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MMLUPRO_LOCAL_CACHE"] = str(Path(tmp) / "cache")  # an empty prefix cache
        base = timed_run(model, Path(tmp) / "p1.jsonl", threads, 1, False, spec, args.max_tokens)
        cold = timed_run(
            model, Path(tmp) / "cold.jsonl", threads, best, True, spec, args.max_tokens
        )
        warm = timed_run(
            model, Path(tmp) / "warm.jsonl", threads, best, True, spec, args.max_tokens
        )
    n = len(base["records"])
    print(f"{'':<36}{'seconds':>9}{'q/min':>8}{'speed-up':>9}{'outside decode':>16}")
    for name, result in (("--parallel 1, no prefix cache", base), (f"--parallel {best}, cold prefix cache", cold),
                         (f"--parallel {best}, warm prefix cache", warm)):  # fmt: skip
        outside = 1 - result["decode"] / result["wall"]
        print(
            f"{name:<36}{result['wall']:>9.1f}{n / result['wall'] * 60:>8.2f}{base['wall'] / result['wall']:>8.2f}x{outside:>15.1%}"
        )
    by_id = {r["question_id"]: r["pred"] for r in base["records"]}
    agree = sum(by_id[r["question_id"]] == r["pred"] for r in warm["records"])
    print(f"predictions that agree with --parallel 1: {agree} of {n}")
    print(
        f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
