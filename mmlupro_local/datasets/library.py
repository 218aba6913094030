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
from mmlupro_local.datasets.formats import Sources, read_sources
from mmlupro_local.errors import DatasetError
from mmlupro_local.hub import DEFAULT_REPO, PROX_LITE_REPO, PROX_REPO, download_dataset_files
from mmlupro_local.hub import download_dataset_folder as download_folder

# MMLU-ProX's languages (lm-evaluation-harness's mmlu_prox tasks; the wordings are in
# task/, which this layer does not import: a test keeps the two lists the same)
LANGUAGE_NAMES = {
    "af": "Afrikaans",
    "ar": "Arabic",
    "bn": "Bengali",
    "cs": "Czech",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "hi": "Hindi",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "mr": "Marathi",
    "ne": "Nepali",
    "pt": "Portuguese",
    "ru": "Russian",
    "sr": "Serbian",
    "sw": "Swahili",
    "te": "Telugu",
    "th": "Thai",
    "uk": "Ukrainian",
    "ur": "Urdu",
    "vi": "Vietnamese",
    "wo": "Wolof",
    "yo": "Yoruba",
    "zh": "Chinese",
    "zu": "Zulu",
}
PROX_LANGUAGES = tuple(LANGUAGE_NAMES)


def import_paths(
    paths: list[Path], *, name: str, source: str | None = None, language: str | None = None
) -> Dataset:
    """Read, validate and store `paths` as dataset `name`; nothing is stored on failure.
    `language`: an MMLU-ProX translation's (else the files' folder names it)."""
    _check_writable_name(name)
    sources = read_sources(paths)
    dataset = build_dataset(
        sources.questions,
        name=name,
        source=source or ", ".join(str(p.resolve()) for p in paths),
        source_files=sources.hashes,
        language=_language(sources, language),
    )
    write_dataset(dataset, dataset_dir(name))
    return dataset


def _language(sources: Sources, given: str | None) -> str | None:
    """The language of the rows: --lang, else a folder named for one (MMLU-ProX keeps a
    folder per language); MMLU-ProX rows with neither are refused, not read as English."""
    if given is not None:
        return check_language(given)
    folders = {p.parent.name for p in sources.files}
    if len(folders) == 1 and folders <= set(PROX_LANGUAGES):
        return folders.pop()
    if sources.translated:
        raise DatasetError(
            "these rows are MMLU-ProX's (option_0 ... option_9) and nothing says their "
            f"language: give --lang (one of {', '.join(PROX_LANGUAGES)})"
        )
    return None


def check_language(language: str) -> str:
    if language not in PROX_LANGUAGES:
        raise DatasetError(
            f"unknown language {language!r}: MMLU-ProX has {', '.join(PROX_LANGUAGES)}"
        )
    return language


def fetch(*, revision: str | None, name: str | None, repo: str = DEFAULT_REPO) -> Dataset:
    """Download a revision from the hub and store it under `name` (default hub-<commit>)."""
    if name is not None:
        _check_writable_name(name)
    files, commit = download_dataset_files(repo=repo, revision=revision)
    final_name = name or f"hub-{commit[:12]}"
    sources = read_sources(files)
    dataset = build_dataset(
        sources.questions,
        name=final_name,
        source=f"{repo} (hub)",
        revision=commit,
        source_files=sources.hashes,
        repo=repo,
    )
    write_dataset(dataset, dataset_dir(final_name))
    return dataset


# the translations on the hub, by the name a user fetches them with (the harness's
# mmlu_prox and mmlu_prox_lite tasks); each is stored as <name>-<language>
PROX_SETS = {"mmlu-prox": PROX_REPO, "mmlu-prox-lite": PROX_LITE_REPO}


def prox_name(language: str, benchmark: str = "mmlu-prox") -> str:
    return f"{benchmark}-{language}"


def fetch_prox(
    *, language: str, revision: str | None, benchmark: str = "mmlu-prox", repo: str | None = None
) -> Dataset:
    """Download MMLU-ProX (or its Lite subset) in `language`; stored as
    <benchmark>-<language>."""
    check_language(language)
    repo = repo or PROX_SETS[benchmark]
    files, commit = download_folder(repo=repo, folder=language, revision=revision)
    sources = read_sources(files)
    dataset = build_dataset(
        sources.questions,
        name=prox_name(language, benchmark),
        source=f"{repo} (hub), {language}",
        revision=commit,
        source_files=sources.hashes,
        language=language,
        repo=repo,
    )
    write_dataset(dataset, dataset_dir(dataset.name))
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
