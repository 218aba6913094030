from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from mmlupro_local.dataset import Dataset, load_dataset

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMLUPRO_SHARED", REPO.parent / "shared"))
PARQUET_DIR = SHARED / "data" / "mmlu-pro"
SAMPLE_DATA = REPO / "sample_data"
# Module- and session-scoped fixtures run before the per-test cache below is set:
# give them a throwaway cache too, so no test ever reads or fills the user's own.
os.environ["MMLUPRO_LOCAL_CACHE"] = tempfile.mkdtemp(prefix="mmlupro-test-cache-")


@pytest.fixture(autouse=True)
def user_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty user cache, never the real one."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("MMLUPRO_LOCAL_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def embedded() -> Dataset:
    return load_dataset()


@pytest.fixture(scope="session")
def parquet_dir() -> Path:
    if not (PARQUET_DIR / "test-00000-of-00001.parquet").exists():
        pytest.fail(f"shared data not found at {PARQUET_DIR}; set MMLUPRO_SHARED")
    return PARQUET_DIR
