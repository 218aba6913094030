"""Build (or check) the MMLU-Pro copy shipped inside the package from the hub's parquet files.

    python scripts/build_dataset.py [--source DIR] [--check]

--check rebuilds in memory and fails if the shipped files differ, so CI can prove the
embedded copy is what the parquet files say.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from mmlupro_local.datasets.dataset import EMBEDDED_NAME, build_dataset, embedded_dir, write_dataset
from mmlupro_local.datasets.formats import read_sources

# sha256 of the hub's "stable version" files (see shared/REFERENCE.md)
EXPECTED = {
    "test-00000-of-00001.parquet": "2bd1ae25ec6c21d94ccc6d29be57cd489c4983e376f12531a968f61f666d8e5c",
    "validation-00000-of-00001.parquet": "bc621c6682fd99d9817e14b57efe0501e682283b47b117d3b6541a14e8b6a69f",
}
DEFAULT_SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mmlu-pro"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    questions, hashes, _, _ = read_sources([args.source / name for name in EXPECTED])
    if hashes != EXPECTED:
        print(f"source files differ from the stable version: {hashes}", file=sys.stderr)
        return 1
    dataset = build_dataset(
        questions,
        name=EMBEDDED_NAME,
        source="TIGER-Lab/MMLU-Pro, stable version (hub parquet files)",
        source_files=hashes,
    )
    target = embedded_dir()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            write_dataset(dataset, Path(tmp) / EMBEDDED_NAME)
            for name in ("dataset.jsonl.gz", "meta.json"):
                if (Path(tmp) / EMBEDDED_NAME / name).read_bytes() != (target / name).read_bytes():
                    print(
                        f"{target / name} is out of date: run scripts/build_dataset.py",
                        file=sys.stderr,
                    )
                    return 1
        print(f"embedded dataset matches its sources (content sha256 {dataset.sha256})")
        return 0
    write_dataset(dataset, target)
    print(f"wrote {target} (content sha256 {dataset.sha256})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
