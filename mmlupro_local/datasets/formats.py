"""Read MMLU-Pro rows from parquet, JSON or JSONL files (or directories of them); write JSONL."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

from mmlupro_local.datasets.questions import PROX_OPTIONS, SPLITS, Question, RowError, parse_row
from mmlupro_local.errors import DatasetError, MissingExtraError
from mmlupro_local.files import file_sha256

SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json")


class Sources(NamedTuple):
    questions: list[Question]
    hashes: dict[str, str]  # file name -> sha256
    files: list[Path]  # every file read
    translated: bool  # some rows are in MMLU-ProX's schema (option_0 ... option_9)


def read_sources(paths: list[Path]) -> Sources:
    """All questions in `paths` and the sha256 of each file read."""
    files = [f for p in paths for f in _expand(p)]
    questions: list[Question] = []
    hashes: dict[str, str] = {}
    shapes: set[str] = set()
    for path in files:
        hashes[path.name] = file_sha256(path)
        questions.extend(read_file(path, shapes))
    return Sources(questions, hashes, files, "prox" in shapes)


def _expand(path: Path) -> list[Path]:
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    found = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.name.endswith(SUFFIXES) and not _hidden(p.relative_to(path))
    )
    if not found:
        raise DatasetError(
            f"{path}: no .parquet, .json or .jsonl files in this directory "
            "(a hub snapshot keeps them under data/)"
        )
    return found


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def read_file(path: Path, shapes: set[str] | None = None) -> list[Question]:
    """The file's questions; `shapes` gets "prox" when a row is in MMLU-ProX's schema."""
    name = path.name
    if name.endswith(".parquet"):
        rows: Iterator[tuple[str, Mapping[str, Any]]] = _parquet_rows(path)
        unit = "row"
    elif name.endswith((".jsonl", ".jsonl.gz")):
        rows = _jsonl_rows(path)
        unit = "line"
    elif name.endswith(".json"):
        rows = _json_rows(path)
        unit = "item"
    else:
        raise DatasetError(f"{path}: unknown format; use .parquet, .json, .jsonl or .jsonl.gz")
    default_split = split_from_name(name)
    questions = []
    for where, row in rows:
        split = row.get("split", default_split) if isinstance(row, Mapping) else None
        if not isinstance(row, Mapping):
            raise DatasetError(
                f"{path} {unit} {where}: expected an object, got {type(row).__name__}"
            )
        if split is None:
            raise DatasetError(
                f"{path} {unit} {where}: cannot tell the split; name the file after it "
                "(test-*.parquet, validation-*.parquet) or give each row a 'split' field"
            )
        if shapes is not None and PROX_OPTIONS[0] in row:
            shapes.add("prox")
        try:
            questions.append(parse_row(row, split))
        except RowError as exc:
            raise DatasetError(f"{path} {unit} {where}: {exc}") from exc
    return questions


def split_from_name(name: str) -> str | None:
    lowered = name.lower()
    if lowered.startswith(("validation", "val-", "val.", "dev")) or "validation" in lowered:
        return "validation"
    if lowered.startswith("test") or "-test" in lowered or "_test" in lowered:
        return "test"
    return None


def _parquet_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingExtraError("pyarrow", "hub", "Reading parquet files") from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DatasetError(
            f"{path}: not a readable parquet file ({exc}). It may be truncated: "
            "download it again, or export the data as JSONL instead."
        ) from exc
    for index, row in enumerate(table.to_pylist()):
        yield str(index), row


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as handle:  # a BOM is no content
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield str(number), json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path} line {number}: not valid JSON ({exc.msg})") from exc
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read it ({exc}); is it truncated?") from exc


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> DatasetError:
    """Issue 32, case 19: text in another encoding is no truncated file."""
    return DatasetError(
        f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start:,}; a UTF-16 export, for "
        "one, is not UTF-8); save it as UTF-8 and import it again"
    )


def _json_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc}); is it truncated?") from exc
    if isinstance(data, dict) and set(data) & set(SPLITS):
        # {"test": [...], "validation": [...]}
        for split in SPLITS:
            for index, row in enumerate(data.get(split, [])):
                yield (
                    f"{split}[{index}]",
                    ({"split": split, **row} if isinstance(row, dict) else row),
                )
    elif isinstance(data, list):
        for index, row in enumerate(data):
            yield str(index), row
    else:
        raise DatasetError(
            f"{path}: expected a list of rows or an object with 'test' and 'validation' lists"
        )


def write_jsonl(questions: list[Question], out: IO[str]) -> None:
    for question in questions:
        out.write(json.dumps(question.as_row(), ensure_ascii=False) + "\n")
