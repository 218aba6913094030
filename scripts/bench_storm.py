"""How long a short 429 storm costs a server run (issue 32, case 1): a fake vLLM on
127.0.0.1 (tests/vllmfake.py) refuses every completion for --storm seconds, then answers
instantly. Prints the run's seconds against the storm's, the refusals, and how far the
window fell and grew back.

    python scripts/bench_storm.py [--storm 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from click.testing import CliRunner  # noqa: E402

from mmlupro_local.cli import main as cli  # noqa: E402
from vllmfake import FakeVllm, serve, url  # noqa: E402

CASES = ((20, 256), (5, 64))  # (per category, --parallel): 280 and 70 questions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storm", type=float, default=5.0, help="seconds of refusals")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        os.environ.setdefault("MMLUPRO_LOCAL_CACHE", str(Path(scratch) / "cache"))
        print(f"{'questions':>9} {'parallel':>8} {'seconds':>8} {'refused':>8}  window")
        for per, parallel in CASES:
            out = Path(scratch) / f"storm-{parallel}.jsonl"
            with serve(FakeVllm(refuse_for=args.storm)) as fake:
                began = time.monotonic()
                result = CliRunner().invoke(cli, ["run", "--server", url(fake), "--per-category",
                                                  str(per), "--parallel", str(parallel),
                                                  "--no-progress", "--out", str(out)])  # fmt: skip
                took = time.monotonic() - began
            if result.exit_code != 0:
                sys.exit(result.output)
            window = json.loads(out.read_text().splitlines()[-1])["used"]["servers"][0]["parallel"]
            print(
                f"{per * 14:>9} {parallel:>8} {took:>8.1f} {fake.refused:>8}  lowest "
                f"{window['lowest']}, final {window['final']} of {window['limit']}"
            )
        print(f"(the storm lasted {args.storm:g} s; the answers after it are instant)")


if __name__ == "__main__":
    main()
