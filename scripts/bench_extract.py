"""Times extract_answer on the 29,000 released responses and on a 20,000-character text."""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

from mmlupro_local.task.extract import extract_answer

DEFAULT = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "official-outputs"
    / "responses.jsonl.gz"
)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line in handle]
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for text in texts:
            extract_answer(text)
        runs.append(time.perf_counter() - start)
    print(
        f"{len(texts):,} responses ({sum(map(len, texts)):,} characters): best of 5 {min(runs) * 1000:.0f} ms, "
        f"median {sorted(runs)[2] * 1000:.0f} ms"
    )
    # the official level 2 and 3 patterns are quadratic on texts like these
    cases = {
        "letters, no 'answer'": ("x B y " * 4000)[:20000],
        "no letter at all": "x" * 20000,
        "'answer:' with no letter": ("answer: x " * 2000)[:20000],
        "capitals, none standalone": "ABCDEFGHIJ" * 2000,
    }
    for name, text in cases.items():
        start = time.perf_counter()
        for _ in range(100):
            extract_answer(text)
        print(f"20,000 characters, {name}: {(time.perf_counter() - start) * 10:.3f} ms each")


if __name__ == "__main__":
    main()
