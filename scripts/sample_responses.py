"""Writes tests/data/official-responses-sample.jsonl.gz: a fixed sample of the released
official responses in ../shared, so the extraction conformance test runs on a clone
with no ../shared beside it. Every level-2 and level-3 row (the rare paths), and a
seeded draw of level-1 and unextracted rows. `make dataset-check` checks all 29,000."""

from __future__ import annotations

import gzip
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "official-outputs" / "responses.jsonl.gz"
TARGET = ROOT / "tests" / "data" / "official-responses-sample.jsonl.gz"
KEEP = {1: 1000, 0: 500}  # rows drawn per level; levels 2 and 3 are kept whole


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    rng = random.Random(20261130)
    chosen = []
    for level in (1, 2, 3, 0):
        group = [r for r in rows if r["level"] == level]
        chosen += rng.sample(group, KEEP[level]) if level in KEEP else group
    chosen.sort(key=lambda r: (r["model"], r["question_id"]))
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chosen)
    with open(TARGET, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    print(f"wrote {len(chosen)} rows to {TARGET} ({TARGET.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
