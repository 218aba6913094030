"""Prints the time to import the package and load the embedded dataset (best of 5)."""

from __future__ import annotations

import subprocess
import sys
import time

CODE = "import time; t=time.perf_counter(); from mmlupro_local.datasets.dataset import load_dataset; d=load_dataset(); print(time.perf_counter()-t)"


def main() -> None:
    cold = [float(subprocess.check_output([sys.executable, "-c", CODE])) for _ in range(5)]
    from mmlupro_local.datasets.dataset import embedded_dir, load_dataset, read_dataset

    warm, again = [], []
    for _ in range(5):
        start = time.perf_counter()
        dataset = read_dataset(embedded_dir())  # read, decompress and hash-check again
        warm.append(time.perf_counter() - start)
        start = time.perf_counter()
        load_dataset()  # remembered while the files are unchanged
        again.append(time.perf_counter() - start)
    print(f"embedded dataset: {len(dataset.test)} test + {len(dataset.validation)} validation rows")
    print(f"load in a fresh process (import + load), best of 5: {min(cold) * 1000:.0f} ms")
    print(f"read again in a warm process, best of 5:           {min(warm) * 1000:.0f} ms")
    print(f"load_dataset again (remembered), best of 5:        {min(again) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
