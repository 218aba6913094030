"""Downloads from the Hugging Face hub: the only module that imports huggingface_hub.

huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN and HF_HOME itself, so a
user's usual setup (mirrors, tokens, offline mode, cache location) applies unchanged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mmlupro_local.errors import HubError, MissingExtraError
from mmlupro_local.formats import file_sha256

DEFAULT_REPO = "TIGER-Lab/MMLU-Pro"
DATASET_FILES = ("data/test-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_OFFLINE_HINT = (
    "To use a dataset on a machine without network, copy the parquet files (or a "
    "'dataset export' JSONL) there and run 'mmlupro-local dataset import PATH --name NAME'."
)


def download_dataset_files(*, repo: str, revision: str | None) -> tuple[list[Path], str]:
    """The local paths of the dataset's parquet files and the commit they came from."""
    try:
        import huggingface_hub
        from huggingface_hub import errors as hub_errors
    except ImportError as exc:
        raise MissingExtraError("huggingface_hub", "hub", "Downloading from the hub") from exc
    paths: list[Path] = []
    for filename in DATASET_FILES:
        try:
            local = huggingface_hub.hf_hub_download(
                repo, filename, repo_type="dataset", revision=revision
            )
        except hub_errors.OfflineModeIsEnabled as exc:
            raise HubError(
                f"HF_HUB_OFFLINE is set, so nothing can be downloaded. {_OFFLINE_HINT}"
            ) from exc
        except hub_errors.LocalEntryNotFoundError as exc:
            raise HubError(
                f"{filename} is not in the local hub cache and the hub cannot be reached "
                f"(offline, or HF_HUB_OFFLINE is set). {_OFFLINE_HINT}"
            ) from exc
        except hub_errors.RevisionNotFoundError as exc:
            raise HubError(f"revision {revision!r} not found in {repo} on the hub") from exc
        except hub_errors.RepositoryNotFoundError as exc:
            raise HubError(
                f"{repo} not found on the hub (or it needs a token: set HF_TOKEN)"
            ) from exc
        except hub_errors.EntryNotFoundError as exc:
            raise HubError(f"{filename} not found in {repo} at {revision or 'main'}") from exc
        except Exception as exc:  # HTTP and connection errors vary by huggingface_hub version
            raise HubError(
                f"could not download {filename} from {repo} ({type(exc).__name__}: {exc}). "
                f"{_OFFLINE_HINT}"
            ) from exc
        path = Path(local)
        _check_blob(path)
        paths.append(path)
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
