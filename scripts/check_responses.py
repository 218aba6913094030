"""Checks the answer extraction against all 29,000 released official responses in
../shared (the tests use a fixed sample of them). Exits 1 on any disagreement."""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter
from pathlib import Path

from mmlupro_local.task.extract import extract_answer

SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "official-outputs"


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE / "responses.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    levels: Counter[int] = Counter()
    wrong = 0
    for row in rows:
        got = extract_answer(row["text"], strip_thinking=False)
        levels[got.level] += 1
        if (got.letter, got.level) != (row["expected"], row["level"]):
            wrong += 1
            print(f"disagrees: {row['model']} question {row['question_id']}", file=sys.stderr)
    print(f"{len(rows):,} official responses, {wrong} disagreements; levels {dict(levels)}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
