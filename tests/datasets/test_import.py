from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakes import (
    LAW2,
    FakeEngine,
    invoke_with,
)
from mmlupro_local.cli import main
from mmlupro_local.datasets.dataset import (
    Dataset,
    build_dataset,
    dataset_dir,
    load_dataset,
    write_dataset,
)
from mmlupro_local.datasets.formats import read_file
from mmlupro_local.datasets.library import import_paths
from mmlupro_local.errors import DatasetError, MissingExtraError


def rows_of(dataset: Dataset) -> list[dict[str, object]]:
    return [q.as_row() for q in (*dataset.test, *dataset.validation)]


def test_parquet_directory_import_equals_embedded(parquet_dir: Path, embedded: Dataset) -> None:
    imported = import_paths([parquet_dir], name="stable")
    assert imported.sha256 == embedded.sha256
    assert load_dataset("stable").sha256 == embedded.sha256


def test_hub_snapshot_layout(parquet_dir: Path, tmp_path: Path, embedded: Dataset) -> None:
    snapshot = tmp_path / "snapshots" / "abc" / "data"
    snapshot.mkdir(parents=True)
    for f in parquet_dir.glob("*.parquet"):
        shutil.copy(f, snapshot / f.name)
    (tmp_path / "snapshots" / "abc" / "README.md").write_text("card")
    assert import_paths([tmp_path / "snapshots" / "abc"], name="snap").sha256 == embedded.sha256


def test_jsonl_export_round_trip(embedded: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "carry" / "mmlu.jsonl"
    result = CliRunner().invoke(main, ["dataset", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote 12,102 rows of 'mmlu-pro' to {out}" in result.output
    result = CliRunner().invoke(main, ["dataset", "import", str(out), "--name", "carried"])
    assert result.exit_code == 0, result.output
    assert "identical to the embedded copy" in result.output
    assert load_dataset("carried").sha256 == embedded.sha256


def test_json_list_and_split_object(embedded: Dataset, tmp_path: Path) -> None:
    test_rows = [q.as_row() for q in embedded.test]
    val_rows = [q.as_row() for q in embedded.validation]
    for row in test_rows + val_rows:
        del row["split"]
    (tmp_path / "test.json").write_text(json.dumps(test_rows))
    (tmp_path / "validation.json").write_text(json.dumps(val_rows))
    assert (
        import_paths([tmp_path / "test.json", tmp_path / "validation.json"], name="a").sha256
        == embedded.sha256
    )
    (tmp_path / "both.json").write_text(json.dumps({"test": test_rows, "validation": val_rows}))
    assert import_paths([tmp_path / "both.json"], name="b").sha256 == embedded.sha256


def test_sample_data_imports(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "sample_data" / "mmlu-pro-mini.jsonl"
    data = import_paths([sample], name="mini")
    assert len(data.test) == 28 and len(data.validation) == 70


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_utf8_file_with_a_bom_imports_and_utf16_is_named(
    suffix: str, embedded: Dataset, tmp_path: Path
) -> None:
    """Issue 32, case 19: a BOM was refused, and UTF-16 got "is it truncated?"."""
    rows = rows_of(embedded)[:2]
    text = "".join(json.dumps(r) + "\n" for r in rows) if suffix == ".jsonl" else json.dumps(rows)
    bom = tmp_path / f"bom{suffix}"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert [q.as_row() for q in read_file(bom)] == rows
    wide = tmp_path / f"wide{suffix}"
    wide.write_text(text, encoding="utf-16")
    with pytest.raises(DatasetError, match=r"not UTF-8 text .*save it as UTF-8") as refused:
        read_file(wide)
    assert "truncated" not in str(refused.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r.pop("question"), "line 2: field 'question': missing"),
        (lambda r: r.update(answer="K"), "line 2: field 'answer': 'K' is not a letter of the 10 options"),
        (lambda r: r.update(answer="J", options=r["options"][:4]), "field 'answer': 'J' is not a letter of the 4 options (A-D)"),
        (lambda r: r.update(question_id="70"), "field 'question_id': expected an integer, got str '70'"),
        (lambda r: r.update(options="A, B"), "field 'options': expected a non-empty list of strings"),
        (lambda r: r.update(options=["a", 2]), "field 'options': every option must be a string"),
        (lambda r: r.update(answer_index=12), "field 'answer_index': 12 is outside the 10 options"),
        (lambda r: r.update(category=""), "field 'category': empty"),
        (lambda r: r.update(split="train"), "field 'split': 'train' is not one of test, validation"),
    ],
)  # fmt: skip
def test_malformed_row_names_file_line_and_field(
    embedded: Dataset, tmp_path: Path, change, expected
) -> None:  # type: ignore[no-untyped-def]
    rows = rows_of(embedded)[:3]
    change(rows[1])
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError) as error:
        read_file(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_invalid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"split": "test"}\n{not json\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl line 1: field 'question_id': missing"):
        read_file(path)
    path.write_text("\n{not json\n")
    with pytest.raises(DatasetError, match=r"bad.jsonl line 2: not valid JSON"):
        read_file(path)


def test_truncated_parquet(parquet_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "test-00000-of-00001.parquet"
    path.write_bytes((parquet_dir / path.name).read_bytes()[:100_000])
    with pytest.raises(DatasetError, match=r"not a readable parquet file.*truncated"):
        read_file(path)


def test_file_without_split_is_explained(embedded: Dataset, tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    row = embedded.test[0].as_row()
    del row["split"]
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DatasetError, match="cannot tell the split"):
        read_file(path)


def test_missing_validation_split(embedded: Dataset, tmp_path: Path) -> None:
    path = tmp_path / "only-test.jsonl"
    path.write_text("".join(json.dumps(q.as_row()) + "\n" for q in embedded.test[:5]))
    with pytest.raises(DatasetError, match="no validation rows found"):
        import_paths([path], name="x")


def test_failed_import_keeps_the_previous_copy(
    embedded: Dataset, parquet_dir: Path, tmp_path: Path
) -> None:
    import_paths([parquet_dir], name="mine")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{}\n")
    with pytest.raises(DatasetError):
        import_paths([bad], name="mine")
    assert load_dataset("mine").sha256 == embedded.sha256


def test_reserved_and_invalid_names(parquet_dir: Path) -> None:
    with pytest.raises(DatasetError, match="embedded copy"):
        import_paths([parquet_dir], name="mmlu-pro")
    with pytest.raises(DatasetError, match="invalid dataset name"):
        import_paths([parquet_dir], name="../escape")


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file or directory"):
        import_paths([tmp_path / "nope"], name="x")
    with pytest.raises(DatasetError, match=r"no \.parquet, \.json or \.jsonl files"):
        import_paths([tmp_path], name="x")


def test_parquet_without_pyarrow_says_how(
    parquet_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'mmlupro-local\[hub\]'"):
        import_paths([parquet_dir], name="x")
    result = CliRunner().invoke(main, ["dataset", "import", str(parquet_dir), "--name", "x"])
    assert result.exit_code == 1
    assert "Error: Reading parquet files needs the optional package 'pyarrow'" in result.output


def test_duplicate_ids_are_refused_at_import(embedded: Dataset, tmp_path: Path) -> None:
    """Issue 13, case 5."""
    rows = [q.as_row() for q in (*embedded.test[:3], embedded.test[0], *embedded.validation)]
    path = tmp_path / "dupes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match=r"1 question ids appear more than once \(test 70\)"):
        import_paths([path], name="dupes")
    assert not dataset_dir("dupes").exists()


def test_run_refuses_a_dataset_that_fails_verify(
    model: Path, tmp_path: Path, embedded: Dataset, engine: FakeEngine
) -> None:
    """Issue 13, case 5."""
    validation = [
        q for q in embedded.validation if q.question_id != embedded.validation[0].question_id
    ]
    broken = build_dataset([*embedded.test, *validation], name="broken", source="test")
    write_dataset(broken, dataset_dir("broken"))
    result = invoke_with(
        engine, "run", str(model), *LAW2, "--dataset", "broken", "--out", str(tmp_path / "r.jsonl")
    )
    assert result.exit_code == 1, result.output
    assert (
        "dataset 'broken' fails its checks" in result.output
        and "4 validation exemplars" in result.output
    )
    assert engine.calls == [] and not (tmp_path / "r.jsonl").exists()


def test_export_to_standard_output(tmp_path: Path) -> None:
    """Issue 26, case 25: `--out -` wrote a file named "-"."""
    result = CliRunner().invoke(main, ["dataset", "export", "--out", "-"])
    assert result.exit_code == 0, result.stderr
    rows = result.stdout.rstrip("\n").split("\n")  # splitlines would split at U+2028 too
    assert len(rows) == 12032 + 70 and json.loads(rows[0])["question_id"] == 70
    assert "to standard output" in result.stderr and not Path("-").exists()
