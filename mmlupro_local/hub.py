"""Downloads from the Hugging Face hub: the only module that imports huggingface_hub.

huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN and HF_HOME itself, so a
user's usual setup (mirrors, tokens, offline mode, cache location) applies unchanged.
"""

from __future__ import annotations

import fnmatch
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from mmlupro_local.errors import HubError, MissingExtraError
from mmlupro_local.files import file_sha256

DEFAULT_REPO = "TIGER-Lab/MMLU-Pro"
DATASET_FILES = ("data/test-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_OFFLINE_HINT = (
    "To use a dataset on a machine without network, copy the parquet files (or a "
    "'dataset export' JSONL) there and run 'mmlupro-local dataset import PATH --name NAME'."
)


REACH_SECONDS = 3.0  # a hub that does not accept a connection in this time is offline


def _unreachable() -> str | None:
    """Why the hub (HF_ENDPOINT, or the proxy in between) takes no connection now, or
    None when it does. Without this check huggingface_hub retries for about 24 s
    before giving up on a machine without network."""
    from urllib.request import getproxies, proxy_bypass

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None  # huggingface_hub answers from the cache at once
    url = urlsplit(constants.ENDPOINT)
    host = url.hostname or ""
    proxy = getproxies().get(url.scheme or "https")
    if proxy and not proxy_bypass(host):
        url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=REACH_SECONDS).close()
    except OSError as exc:
        return f"{url.hostname}:{port}: {exc.strerror or exc}"
    return None


def download_dataset_files(*, repo: str, revision: str | None) -> tuple[list[Path], str]:
    """The local paths of the dataset's parquet files and the commit they came from."""
    try:
        import huggingface_hub
    except ImportError as exc:
        raise MissingExtraError("huggingface_hub", "hub", "Downloading from the hub") from exc
    paths: list[Path] = []
    cut_off = _unreachable()
    for filename in DATASET_FILES:
        with _hub_errors(f"{filename} in {repo}", revision, _OFFLINE_HINT, cut_off):
            local = huggingface_hub.hf_hub_download(
                repo,
                filename,
                repo_type="dataset",
                revision=revision,
                local_files_only=cut_off is not None,
            )
        path = Path(local)
        _check_blob(path)
        paths.append(path)
    return paths, _commit_of(paths[0], revision)


PROX_REPO = "li-lab/MMLU-ProX"
PROX_LITE_REPO = "li-lab/MMLU-ProX-Lite"  # 658 of the questions per language, same layout
_DATA_SUFFIXES = (".parquet", ".jsonl", ".json")


def download_dataset_folder(
    *, repo: str, folder: str, revision: str | None
) -> tuple[list[Path], str]:
    """The data files under `folder/` of a dataset repository (MMLU-ProX keeps a folder
    per language), downloaded once into the Hugging Face cache, and their commit."""
    try:
        import huggingface_hub
    except ImportError as exc:
        raise MissingExtraError("huggingface_hub", "hub", "Downloading from the hub") from exc
    cut_off = _unreachable()
    where = f"{folder}/ in {repo}"
    with _hub_errors(where, revision, _OFFLINE_HINT, cut_off):
        if cut_off is not None:
            raise huggingface_hub.errors.LocalEntryNotFoundError(cut_off)
        listing = huggingface_hub.list_repo_files(repo, repo_type="dataset", revision=revision)
        names = sorted(
            f for f in listing if f.startswith(folder + "/") and f.endswith(_DATA_SUFFIXES)
        )
        if not names:
            raise HubError(f"{repo} has no data files under {folder}/ at {revision or 'main'}")
        paths = [
            Path(
                huggingface_hub.hf_hub_download(repo, name, repo_type="dataset", revision=revision)
            )
            for name in names
        ]
    for path in paths:
        _check_blob(path)
    return paths, _commit_of(paths[0], revision)


def _commit_of(path: Path, revision: str | None) -> str:
    """hf_hub_download returns .../snapshots/<commit>/<filename>."""
    parts = path.parts
    if "snapshots" in parts:
        return parts[parts.index("snapshots") + 1]
    return revision or "unknown"


def _check_blob(path: Path) -> None:
    """The hub cache names each blob by its ETag, which for LFS files is the sha256."""
    expected = Path(os.path.realpath(path)).name
    if _SHA256.match(expected):
        actual = file_sha256(path)
        if actual != expected:
            raise HubError(
                f"{path} is corrupt: sha256 {actual[:12]}... but the hub says {expected[:12]}...; "
                "delete it from the hub cache and fetch again"
            )


_MODEL_OFFLINE_HINT = (
    "Download it once where the hub is reachable (it stays in the Hugging Face cache), "
    "or pass the .gguf file's local path instead: mmlupro-local run /path/to/model.gguf"
)
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def download_model(repo: str, pattern: str, revision: str | None) -> Path:
    """The local path of the GGUF file in `repo` named by `pattern` (a path, or a glob
    like '*Q4_K_M.gguf', case-insensitive), downloaded into the Hugging Face cache
    unless it is there already. A split model downloads all its parts."""
    try:
        import huggingface_hub
    except ImportError as exc:
        raise MissingExtraError("huggingface_hub", "hub", "Models from the hub") from exc
    where = f"hf://{repo}{'@' + revision if revision else ''}/{pattern}"
    cut_off = _unreachable()
    with _hub_errors(where, revision, _MODEL_OFFLINE_HINT, cut_off):
        if any(c in pattern for c in "*?["):
            names = _matching_files(repo, pattern, revision, listing=cut_off is None)
        else:
            names = [pattern]
        local = [
            Path(
                huggingface_hub.hf_hub_download(
                    repo, name, revision=revision, local_files_only=cut_off is not None
                )
            )
            for name in names
        ]
    for path in local:
        _check_blob(path)
    return local[0]


def _matching_files(repo: str, pattern: str, revision: str | None, *, listing: bool) -> list[str]:
    """The repo files matching the glob: one file, or every part of one split model.
    Without `listing` (the hub is out of reach), the files already in the cache."""
    import huggingface_hub
    from huggingface_hub import errors as hub_errors

    try:
        if not listing:
            files = _cached_files(repo, revision)
            if not files:
                raise hub_errors.LocalEntryNotFoundError("the hub is out of reach")
            return _pick(files, repo, pattern)
        files = huggingface_hub.list_repo_files(repo, revision=revision)
    except (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError):
        raise  # a definite answer from the hub
    except Exception as exc:  # offline or unreachable (errors vary by version): the cache
        files = _cached_files(repo, revision)
        if not files:
            if isinstance(exc, hub_errors.OfflineModeIsEnabled):
                raise
            raise hub_errors.LocalEntryNotFoundError(str(exc)) from exc
    return _pick(files, repo, pattern)


def _pick(files: list[str], repo: str, pattern: str) -> list[str]:
    matches = sorted(f for f in files if fnmatch.fnmatchcase(f.lower(), pattern.lower()))
    ggufs = sorted(f for f in files if f.lower().endswith(".gguf"))
    if not matches:
        listing = ", ".join(ggufs[:20]) or "none"
        raise HubError(f"no file in {repo} matches {pattern!r}; its GGUF files: {listing}")
    if len(matches) > 1 and not _one_split_model(matches):
        raise HubError(
            f"{len(matches)} files in {repo} match {pattern!r}: {', '.join(matches[:10])}; "
            "give a narrower pattern or the file name"
        )
    return matches


def _one_split_model(names: list[str]) -> bool:
    """Are these exactly the parts 1..N of one split model (llama.cpp loads them all)?"""
    found = [(_SPLIT.sub("", name), _SPLIT.search(name)) for name in names]
    if any(m is None for _, m in found) or len({stem for stem, _ in found}) != 1:
        return False
    numbers = sorted(int(m.group(1)) for _, m in found if m)
    total = int(found[0][1].group(2)) if found[0][1] else 0
    return numbers == list(range(1, total + 1))


def _cached_files(repo: str, revision: str | None) -> list[str]:
    """The files of repo already in the local hub cache (for offline pattern lookup)."""
    import huggingface_hub

    try:
        folder = huggingface_hub.snapshot_download(
            repo, revision=revision, local_files_only=True, allow_patterns=["*.gguf"]
        )
    except Exception:  # nothing cached: the caller reports it the offline way
        return []
    root = Path(folder)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@contextmanager
def _hub_errors(
    where: str, revision: str | None, hint: str, cut_off: str | None = None
) -> Iterator[None]:
    """huggingface_hub's exceptions as one-line errors about `where`; `hint` says how to
    do without the hub; `cut_off` why the hub could not be reached, if it could not."""
    from huggingface_hub import errors as hub_errors

    try:
        yield
    except HubError:
        raise
    except hub_errors.OfflineModeIsEnabled as exc:
        raise HubError(
            f"{where} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set. {hint}"
        ) from exc
    except hub_errors.LocalEntryNotFoundError as exc:
        if cut_off is not None:
            raise HubError(
                f"{where} is not in the local Hugging Face cache and the hub cannot be reached "
                f"({cut_off}; set HF_ENDPOINT for a mirror). {hint}"
            ) from exc
        raise HubError(
            f"{where} is not in the local Hugging Face cache and the hub cannot be reached "
            f"(offline, or HF_HUB_OFFLINE is set). {hint}"
        ) from exc
    except hub_errors.GatedRepoError as exc:
        raise HubError(
            f"{where}: the repository is gated; accept its terms on the hub and set HF_TOKEN"
        ) from exc
    except hub_errors.RevisionNotFoundError as exc:
        raise HubError(f"{where}: revision {revision or 'main'!r} not found on the hub") from exc
    except hub_errors.RepositoryNotFoundError as exc:
        raise HubError(
            f"{where}: repository not found on the hub (or it is private: set HF_TOKEN)"
        ) from exc
    except hub_errors.EntryNotFoundError as exc:
        raise HubError(f"{where}: no such file in the repository") from exc
    except Exception as exc:  # HTTP and connection errors vary by huggingface_hub version
        raise HubError(f"could not download {where} ({type(exc).__name__}: {exc}). {hint}") from exc
