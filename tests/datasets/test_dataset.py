from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from mmlupro_local.datasets.dataset import Dataset, load_dataset, read_dataset, write_dataset
from mmlupro_local.datasets.summary import chance_level
from mmlupro_local.datasets.verify import verify
from mmlupro_local.errors import CacheError, DatasetError


def test_embedded_matches_reference(embedded: Dataset, reference_counts: dict[str, int]) -> None:
    assert len(embedded.test) == 12032
    assert len(embedded.validation) == 70
    assert Counter(q.category for q in embedded.test) == reference_counts
    assert Counter(q.category for q in embedded.validation) == {c: 5 for c in reference_counts}
    assert round(chance_level(embedded.test), 4) == 0.1109
    assert embedded.test[0].question_id == 70
    assert Counter(len(q.choices) for q in embedded.test) == {
        10: 9982, 9: 801, 8: 320, 7: 158, 6: 92, 5: 52, 4: 607, 3: 20,
    }  # fmt: skip


def test_embedded_records_source_hashes(embedded: Dataset) -> None:
    assert embedded.meta.source_files == {
        "test-00000-of-00001.parquet": "2bd1ae25ec6c21d94ccc6d29be57cd489c4983e376f12531a968f61f666d8e5c",
        "validation-00000-of-00001.parquet": "bc621c6682fd99d9817e14b57efe0501e682283b47b117d3b6541a14e8b6a69f",
    }


def test_validation_keeps_padding_but_choices_drop_it(embedded: Dataset) -> None:
    padded = [q for q in embedded.validation if "N/A" in q.options]
    assert sum(q.options.count("N/A") for q in padded) == 51
    assert all("N/A" not in q.choices for q in padded)


def test_verify_findings(embedded: Dataset) -> None:
    findings = {f.check: f for f in verify(embedded)}
    assert findings["answer_mismatch"].question_ids == (3983,)
    assert len(findings["whitespace_leak"].question_ids) == 492
    assert (
        "chemistry 194, physics 152, math 145, computer science 1"
        in findings["whitespace_leak"].message
    )
    assert "51 'N/A' padding options" in findings["na_padding"].message
    assert not any(f.severity == "error" for f in findings.values())


def test_verify_finds_duplicates_and_missing_exemplars(embedded: Dataset, tmp_path: Path) -> None:
    broken = Dataset(
        meta=embedded.meta,
        test=embedded.test + embedded.test[:2],
        validation=tuple(q for q in embedded.validation if q.category != "law"),
    )
    findings = {f.check: f for f in verify(broken)}
    assert findings["duplicate_ids"].question_ids == (70, 71)
    assert "'law' has 0 validation exemplars" in findings["few_exemplars"].message


def test_write_then_read_round_trips(embedded: Dataset, tmp_path: Path) -> None:
    write_dataset(embedded, tmp_path / "copy")
    again = read_dataset(tmp_path / "copy")
    assert again == embedded


def test_corrupt_stored_dataset_is_refused(embedded: Dataset, tmp_path: Path) -> None:
    write_dataset(embedded, tmp_path / "copy")
    data = gzip.decompress((tmp_path / "copy" / "dataset.jsonl.gz").read_bytes())
    tampered = data.replace(b'"answer":"I"', b'"answer":"A"', 1)
    (tmp_path / "copy" / "dataset.jsonl.gz").write_bytes(gzip.compress(tampered))
    with pytest.raises(DatasetError, match="corrupt: content sha256"):
        read_dataset(tmp_path / "copy")


def test_truncated_stored_dataset_is_refused(embedded: Dataset, tmp_path: Path) -> None:
    write_dataset(embedded, tmp_path / "copy")
    path = tmp_path / "copy" / "dataset.jsonl.gz"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="unreadable"):
        read_dataset(tmp_path / "copy")


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(DatasetError, match=r"no dataset named 'nope' \(known: mmlu-pro\)"):
        load_dataset("nope")


def test_unwritable_cache_names_the_path(embedded: Dataset, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CacheError, match=str(blocker)):
        write_dataset(embedded, blocker / "sub" / "copy")


def test_meta_is_plain_json(embedded: Dataset, tmp_path: Path) -> None:
    write_dataset(embedded, tmp_path / "copy")
    meta = json.loads((tmp_path / "copy" / "meta.json").read_text())
    assert meta["content_sha256"] == embedded.sha256
