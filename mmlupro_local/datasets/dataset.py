"""A dataset on disk: the embedded MMLU-Pro copy and named copies in the user cache.

Every dataset is stored the same way: `dataset.jsonl.gz`, canonical rows (test then
validation, each by question_id, fixed key order), and `meta.json` beside it. The
content hash is the sha256 of the uncompressed canonical bytes, so the same questions
give the same hash whatever file format they came from.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mmlupro_local.config import datasets_dir
from mmlupro_local.datasets.questions import SPLITS, Question
from mmlupro_local.errors import CacheError, DatasetError
from mmlupro_local.files import sync

EMBEDDED_NAME = "mmlu-pro"
OFFICIAL_MAX_TOKENS = 2048  # the official script's generation budget
DATA_FILE = "dataset.jsonl.gz"
META_FILE = "meta.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class DatasetMeta:
    name: str
    source: str
    revision: str | None
    content_sha256: str
    source_files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    # an MMLU-ProX translation's ISO 639-1 code; None: MMLU-Pro in its official English
    language: str | None = None
    repo: str | None = None  # the hub repository it was fetched from, if it was

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("language", "repo"):  # datasets stored before keep their meta.json
            if data[key] is None:
                del data[key]
        return data


@dataclass(frozen=True)
class Dataset:
    meta: DatasetMeta
    test: tuple[Question, ...]
    validation: tuple[Question, ...]

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def sha256(self) -> str:
        return self.meta.content_sha256

    @property
    def language(self) -> str | None:
        return self.meta.language


def _canonical_order(question: Question) -> tuple[int, int]:
    return SPLITS.index(question.split), question.question_id


def canonical_bytes(questions: Iterable[Question]) -> bytes:
    ordered = sorted(questions, key=_canonical_order)
    lines = (
        json.dumps(q.as_row(), ensure_ascii=False, separators=(",", ":")) + "\n" for q in ordered
    )
    return "".join(lines).encode("utf-8")


def build_dataset(
    questions: Iterable[Question],
    *,
    name: str,
    source: str,
    revision: str | None = None,
    source_files: dict[str, str] | None = None,
    language: str | None = None,
    repo: str | None = None,
) -> Dataset:
    """Order the questions canonically, hash them, and check both splits are there."""
    ordered = sorted(questions, key=_canonical_order)
    _refuse_duplicates(ordered, source)
    data = canonical_bytes(ordered)
    test = tuple(q for q in ordered if q.split == "test")
    validation = tuple(q for q in ordered if q.split == "validation")
    for split, rows in (("test", test), ("validation", validation)):
        if not rows:
            raise DatasetError(
                f"{source}: no {split} rows found. A dataset needs both the test and the "
                "validation split (the validation rows are the few-shot exemplars); pass both "
                "files, or a directory holding them."
            )
    meta = DatasetMeta(
        name=name,
        source=source,
        revision=revision,
        content_sha256=hashlib.sha256(data).hexdigest(),
        source_files=dict(source_files or {}),
        language=language,
        repo=repo,
    )
    return Dataset(meta=meta, test=test, validation=validation)


def _refuse_duplicates(ordered: list[Question], source: str) -> None:
    """Two rows with one id in a split would be scored twice and never complete a run."""
    counts = Counter((q.split, q.question_id) for q in ordered)
    dupes = sorted(key for key, n in counts.items() if n > 1)
    if dupes:
        shown = ", ".join(f"{split} {qid}" for split, qid in dupes[:10])
        raise DatasetError(
            f"{source}: {len(dupes)} question ids appear more than once ({shown}"
            f"{', ...' if len(dupes) > 10 else ''}); each question needs its own id. Remove the "
            "repeated rows, or check that the same file was not given twice."
        )


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise DatasetError(
            f"invalid dataset name {name!r}: use letters, digits, '.', '_' or '-' "
            "(at most 64 characters, starting with a letter or digit)"
        )
    return name


def write_dataset(dataset: Dataset, directory: Path) -> None:
    """Write atomically: a failure leaves whatever was at `directory` untouched."""
    parent = directory.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=parent))
    except OSError as exc:
        raise CacheError(
            f"cannot write to the cache directory {parent}: {exc.strerror}. "
            "Make it writable or point MMLUPRO_LOCAL_CACHE at a writable directory."
        ) from exc
    try:
        data = canonical_bytes((*dataset.test, *dataset.validation))
        with open(staging / DATA_FILE, "wb") as raw:
            # mtime=0 so the same content always gives the same file
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
                gz.write(data)
            raw.flush()
            sync(raw.fileno())
        meta_text = json.dumps(dataset.meta.to_json(), indent=2, sort_keys=True) + "\n"
        (staging / META_FILE).write_text(meta_text, encoding="utf-8")
        _replace_dir(staging, directory)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise CacheError(f"could not write dataset to {directory}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_dir(new: Path, target: Path) -> None:
    if not target.exists():
        new.rename(target)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def read_dataset(directory: Path) -> Dataset:
    """Read a stored dataset and check its content against the recorded hash."""
    try:
        meta_raw = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        meta = DatasetMeta(**meta_raw)
        with gzip.open(directory / DATA_FILE, "rb") as gz:
            data = gz.read()
    except FileNotFoundError as exc:
        raise DatasetError(f"dataset files missing in {directory}: {exc.filename}") from exc
    except (OSError, EOFError, ValueError, TypeError) as exc:
        raise DatasetError(
            f"dataset at {directory} is unreadable ({exc}); import or fetch it again"
        ) from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != meta.content_sha256:
        raise DatasetError(
            f"dataset at {directory} is corrupt: content sha256 {actual[:12]}... does not match "
            f"the recorded {meta.content_sha256[:12]}...; import or fetch it again"
        )
    questions = _parse_canonical(data, origin=str(directory / DATA_FILE))
    return Dataset(
        meta=meta,
        test=tuple(q for q in questions if q.split == "test"),
        validation=tuple(q for q in questions if q.split == "validation"),
    )


def _parse_canonical(data: bytes, *, origin: str) -> list[Question]:
    """Rows we wrote ourselves (validated then, hash checked now): one json.loads call
    and direct construction keep loading the 12k questions far under a second."""
    text = data.decode("utf-8")
    try:
        rows = json.loads("[" + text.rstrip("\n").replace("\n", ",") + "]")
        return [Question(**{**row, "options": tuple(row["options"])}) for row in rows]
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise DatasetError(f"{origin}: not a dataset file written by this tool ({exc})") from exc


def embedded_dir() -> Path:
    return Path(str(resources.files("mmlupro_local") / "data" / EMBEDDED_NAME))


def dataset_dir(name: str) -> Path:
    if name == EMBEDDED_NAME:
        return embedded_dir()
    return datasets_dir() / check_name(name)


def load_dataset(name: str | None = None) -> Dataset:
    """Load the embedded copy (default) or a named copy from the user cache."""
    name = name or EMBEDDED_NAME
    directory = dataset_dir(name)
    if not (directory / META_FILE).exists():
        known = ", ".join(list_datasets()) or EMBEDDED_NAME
        raise DatasetError(
            f"no dataset named {name!r} (known: {known}). "
            "Add one with 'mmlupro-local dataset import PATH --name NAME' or 'dataset fetch'."
        )
    return _read_unchanged(directory)


_loaded: dict[Path, tuple[tuple[int, ...], Dataset]] = {}


def _read_unchanged(directory: Path) -> Dataset:
    """read_dataset, remembered while its files are unchanged (a report of several
    files, or a run and its report, read and hash the 12k questions once)."""
    try:
        stamp = tuple(v for f in (META_FILE, DATA_FILE) for v in _stamp((directory / f).stat()))
    except OSError:
        return read_dataset(directory)
    known = _loaded.get(directory)
    if known is not None and known[0] == stamp:
        return known[1]
    dataset = read_dataset(directory)
    _loaded[directory] = (stamp, dataset)
    return dataset


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


def list_datasets() -> list[str]:
    names = [EMBEDDED_NAME]
    root = datasets_dir()
    if root.is_dir():
        names += sorted(p.name for p in root.iterdir() if (p / META_FILE).is_file())
    return names
