"""`dataset fetch` through the real CLI and huggingface_hub, against a hub on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hubserver import HubRepo, hub_env, run_cli, serve

TEST_FILE = "data/test-00000-of-00001.parquet"
VAL_FILE = "data/validation-00000-of-00001.parquet"
COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


@pytest.fixture
def edited_test_file(parquet_dir: Path, tmp_path: Path) -> Path:
    """The test split with one answer changed and one row dropped: a 'newer revision'."""
    table = pq.read_table(parquet_dir / "test-00000-of-00001.parquet")
    rows = table.to_pylist()
    rows[0]["answer"], rows[0]["answer_index"] = "A", 0
    del rows[-1]
    out = tmp_path / "edited.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out)
    return out


@pytest.fixture
def hub_repo(parquet_dir: Path, edited_test_file: Path) -> HubRepo:
    repo = HubRepo("datasets", "TIGER-Lab/MMLU-Pro")
    stable = {
        TEST_FILE: parquet_dir / "test-00000-of-00001.parquet",
        VAL_FILE: parquet_dir / "validation-00000-of-00001.parquet",
    }
    repo.add(COMMIT_A, stable, "stable")
    repo.add(COMMIT_B, {**stable, TEST_FILE: edited_test_file}, "main")
    return repo


def test_fetch_pinned_revision_equals_embedded(hub_repo: HubRepo, tmp_path: Path) -> None:
    with serve(hub_repo) as hub:
        result = run_cli("dataset", "fetch", "--revision", "stable", env=hub_env(hub.url, tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"at {COMMIT_A} as 'hub-aaaaaaaaaaaa'" in result.stdout
    assert "identical to the embedded copy" in result.stdout
    assert any(r.startswith("GET /datasets/TIGER-Lab/MMLU-Pro/resolve/") for r in hub.requests)
    info = run_cli(
        "dataset", "info", "--json", "--dataset", "hub-aaaaaaaaaaaa", env=hub_env(hub.url, tmp_path)
    )
    assert json.loads(info.stdout)["revision"] == COMMIT_A


def test_fetch_latest_reports_the_difference(hub_repo: HubRepo, tmp_path: Path) -> None:
    with serve(hub_repo) as hub:
        result = run_cli("dataset", "fetch", "--name", "latest", env=hub_env(hub.url, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "differs from the embedded copy: 1 rows changed, 0 added, 1 removed" in result.stdout
    assert "answer 1, answer_index 1" in result.stdout
    assert "12,031 test" in result.stdout


def test_fetch_offline_names_import(hub_repo: HubRepo, tmp_path: Path) -> None:
    with serve(hub_repo) as hub:
        result = run_cli("dataset", "fetch", env=hub_env(hub.url, tmp_path, HF_HUB_OFFLINE="1"))
    assert result.returncode == 1
    assert "dataset import" in result.stderr
    assert "Traceback" not in result.stderr
    assert not hub.requests


def test_fetch_unreachable_hub_names_import(tmp_path: Path) -> None:
    env = hub_env(
        "http://127.0.0.1:9", tmp_path, HF_HUB_ETAG_TIMEOUT="2", HF_HUB_DOWNLOAD_TIMEOUT="2"
    )
    result = run_cli("dataset", "fetch", env=env)
    assert result.returncode == 1
    assert "dataset import" in result.stderr
    assert "Traceback" not in result.stderr


def test_fetch_unknown_revision(hub_repo: HubRepo, tmp_path: Path) -> None:
    with serve(hub_repo) as hub:
        result = run_cli("dataset", "fetch", "--revision", "v9", env=hub_env(hub.url, tmp_path))
    assert result.returncode == 1
    assert "revision 'v9' not found" in result.stderr
    assert not (tmp_path / "cache" / "datasets").exists() or not any(
        (tmp_path / "cache" / "datasets").iterdir()
    )
