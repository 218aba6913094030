"""Adding datasets to the user cache (import, fetch) and comparing two datasets."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mmlupro_local.datasets.dataset import (
    EMBEDDED_NAME,
    Dataset,
    build_dataset,
    check_name,
    dataset_dir,
    write_dataset,
)
from mmlupro_local.datasets.formats import read_sources
from mmlupro_local.errors import DatasetError
from mmlupro_local.hub import DEFAULT_REPO, download_dataset_files


def import_paths(paths: list[Path], *, name: str, source: str | None = None) -> Dataset:
    """Read, validate and store `paths` as dataset `name`; nothing is stored on failure."""
    _check_writable_name(name)
    questions, hashes = read_sources(paths)
    dataset = build_dataset(
        questions,
        name=name,
        source=source or ", ".join(str(p.resolve()) for p in paths),
        source_files=hashes,
    )
    write_dataset(dataset, dataset_dir(name))
    return dataset


def fetch(*, revision: str | None, name: str | None, repo: str = DEFAULT_REPO) -> Dataset:
    """Download a revision from the hub and store it under `name` (default hub-<commit>)."""
    if name is not None:
        _check_writable_name(name)
    files, commit = download_dataset_files(repo=repo, revision=revision)
    final_name = name or f"hub-{commit[:12]}"
    questions, hashes = read_sources(files)
    dataset = build_dataset(
        questions,
        name=final_name,
        source=f"{repo} (hub)",
        revision=commit,
        source_files=hashes,
    )
    write_dataset(dataset, dataset_dir(final_name))
    return dataset


def _check_writable_name(name: str) -> None:
    check_name(name)
    if name == EMBEDDED_NAME:
        raise DatasetError(f"{EMBEDDED_NAME!r} is the embedded copy; choose another --name")


@dataclass(frozen=True)
class DatasetDiff:
    added: tuple[tuple[str, int], ...]
    removed: tuple[tuple[str, int], ...]
    changed: tuple[tuple[str, int], ...]
    changed_fields: dict[str, int] = field(default_factory=dict)  # field -> rows changed

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def summary(self) -> str:
        if self.identical:
            return "identical"
        text = (
            f"{len(self.changed)} rows changed, {len(self.added)} added, "
            f"{len(self.removed)} removed"
        )
        if self.changed_fields:
            fields = ", ".join(f"{k} {v}" for k, v in sorted(self.changed_fields.items()))
            text += f" (fields changed: {fields})"
        return text


def diff_datasets(old: Dataset, new: Dataset) -> DatasetDiff:
    """Rows keyed by (split, question_id): what `new` adds, drops and changes."""
    before = {(q.split, q.question_id): q.as_row() for q in old.test + old.validation}
    after = {(q.split, q.question_id): q.as_row() for q in new.test + new.validation}
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    fields: Counter[str] = Counter()
    for key in changed:
        fields.update(f for f in after[key] if before[key][f] != after[key][f])
    return DatasetDiff(
        added=tuple(sorted(after.keys() - before.keys())),
        removed=tuple(sorted(before.keys() - after.keys())),
        changed=tuple(changed),
        changed_fields=dict(fields),
    )
