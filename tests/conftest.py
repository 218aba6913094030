from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from mmlupro_local.datasets.dataset import Dataset, load_dataset

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
SAMPLE_DATA = REPO / "sample_data"
PARQUET_NAMES = {"test": "test-00000-of-00001.parquet",
                 "validation": "validation-00000-of-00001.parquet"}  # fmt: skip
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
def parquet_dir(embedded: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset's parquet files as the hub lays them out, written from the embedded
    copy (upstream's columns and types), so no test needs ../shared. The byte-level
    check against the upstream files is `make dataset-check`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = tmp_path_factory.mktemp("parquet")
    schema = pa.schema([("question_id", pa.int64()), ("question", pa.string()),
                        ("options", pa.list_(pa.string())), ("answer", pa.string()),
                        ("answer_index", pa.int64()), ("cot_content", pa.string()),
                        ("category", pa.string()), ("src", pa.string())])  # fmt: skip
    for split, rows in (("test", embedded.test), ("validation", embedded.validation)):
        columns = {name: [q.as_row()[name] for q in rows] for name in schema.names}
        pq.write_table(pa.table(columns, schema=schema), directory / PARQUET_NAMES[split])
    return directory
