"""The engine against a plain llama-cpp-python `create_completion` loop, same prompts.

    python scripts/bench_engine.py [MODEL.gguf] [--per-category 2] [--max-tokens 512] [--lookup 16]

Both see the same official 5-shot prompts (2 questions per category, seed 0) in the same
order, greedy, stop "Question:", the same budget, context and threads. Prints questions
per minute, generated tokens per second, the speed-up and how many predictions agree.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from demo_model import smollm2
from mmlupro_local.datasets.dataset import load_dataset
from mmlupro_local.datasets.sampling import SampleSpec, draw
from mmlupro_local.engine import round_ctx
from mmlupro_local.model.hardware import physical_cores
from mmlupro_local.run.request import RunRequest
from mmlupro_local.run.targets.gguf import GgufSpec
from mmlupro_local.studies.bench import TimedRun, private_cache, timed_run
from mmlupro_local.task.extract import extract_answer
from mmlupro_local.task.prompt import PromptSettings, build_prompt


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", type=Path, default=None)
    parser.add_argument("--per-category", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--lookup", type=int, default=16, help="also time --lookup N (0: skip)")
    args = parser.parse_args()
    model = args.model or smollm2()
    threads = physical_cores()
    data = load_dataset()
    sample = draw(data.test, SampleSpec(per_category=args.per_category))
    prompts = [build_prompt(q, data.validation, PromptSettings()).text for q in sample]
    print(
        f"model {model.name}, {len(sample)} questions, budget {args.max_tokens}, {threads} threads"
    )

    def engine_run(lookup: int) -> TimedRun:
        with private_cache() as tmp:
            target = GgufSpec(path=model, threads=threads, lookup=lookup)
            request = RunRequest(
                target=target,
                out=tmp / "r.jsonl",
                parallel=1,
                sample=SampleSpec(per_category=args.per_category),
                max_tokens=args.max_tokens,
            )
            return timed_run("engine", request)

    engine = engine_run(0)
    engine_seconds, engine_preds = engine.wall, [r.pred for r in engine.records]
    n_ctx = round_ctx(max(r.prompt_tokens for r in engine.records) + args.max_tokens)
    n = len(sample)
    print(f"{'':<40}{'seconds':>9}{'q/min':>8}{'gen tok':>9}{'tok/s':>8}{'agree':>7}")

    def row(name: str, seconds: float, tokens: int, preds: list[str | None]) -> None:
        agree = sum(a == b for a, b in zip(engine_preds, preds, strict=True))
        print(
            f"{name:<40}{seconds:>9.1f}{n / seconds * 60:>8.2f}{tokens:>9}{tokens / seconds:>8.1f}{agree:>4}/{n}"
        )

    row("engine (defaults, cold prefix cache)", engine_seconds, engine.generated, engine_preds)
    lookup_seconds = 0.0
    if args.lookup:
        guessing = engine_run(args.lookup)
        lookup_seconds = guessing.wall
        row(
            f"engine --lookup {args.lookup} (cold cache)",
            lookup_seconds,
            guessing.generated,
            [r.pred for r in guessing.records],
        )
    import llama_cpp

    from mmlupro_local.engine import llamalog

    llamalog.install()
    for flash in (False, True):
        llm = llama_cpp.Llama(model_path=str(model), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                              n_batch=512, n_gpu_layers=-1, flash_attn=flash, verbose=False)  # fmt: skip
        began = time.perf_counter()
        tokens = 0
        preds = []
        for prompt in prompts:
            out = llm.create_completion(
                prompt, max_tokens=args.max_tokens, temperature=0.0, stop=["Question:"]
            )
            tokens += out["usage"]["completion_tokens"]
            preds.append(extract_answer(out["choices"][0]["text"]).letter)
        seconds = time.perf_counter() - began
        del llm
        name = "plain create_completion" + (", flash_attn=True" if flash else " (its defaults)")
        row(name, seconds, tokens, preds)
        with_lookup = f", with --lookup: {seconds / lookup_seconds:.2f}x" if lookup_seconds else ""
        print(f"  engine speed-up over it: {seconds / engine_seconds:.2f}x{with_lookup}")
    print(f"engine time inside llama_decode: {1 - engine.outside_decode:.1%}")


if __name__ == "__main__":
    main()
