"""Where the model comes from: a local GGUF path, or a hub reference resolved to the
file in the Hugging Face cache (downloaded once)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmlupro_local.errors import HubError

HF_SCHEME = "hf://"


@dataclass(frozen=True)
class HubRef:
    repo: str  # OWNER/NAME
    file: str  # a path in the repo, or a glob such as '*Q4_K_M.gguf'
    revision: str | None = None


def parse_hub_ref(text: str) -> HubRef:
    """hf://OWNER/REPO[@REVISION]/PATH/IN/REPO.gguf"""
    rest = text[len(HF_SCHEME) :] if text.startswith(HF_SCHEME) else text
    parts = rest.split("/")
    if len(parts) < 3 or not all(parts):
        raise HubError(
            f"{text!r} is not a hub reference; write hf://OWNER/REPO/FILE.gguf "
            "(FILE may be a pattern such as '*Q4_K_M.gguf')"
        )
    name, _, revision = parts[1].partition("@")
    return HubRef(f"{parts[0]}/{name}", "/".join(parts[2:]), revision or None)


def model_path(ref: str) -> Path:
    """The local path for a model argument: a path, or hf://... downloaded if needed."""
    if ref.startswith(HF_SCHEME):
        return _download(parse_hub_ref(ref))
    path = Path(ref)
    if ref[:3].lower() == "hf:" and not path.exists():
        fixed = HF_SCHEME + ref[3:].lstrip("/")
        raise HubError(f"{ref!r} is not a hub reference nor a file; did you mean {fixed}?")
    return path


def resolve_model(model: str | None, hf_repo: str | None, hf_file: str | None) -> Path | None:
    """The local model path for a MODEL argument or --hf-repo/--hf-file (None: neither)."""
    if not (hf_repo or hf_file):
        return model_path(model) if model else None
    if not (hf_repo and hf_file):
        raise HubError(
            "--hf-repo and --hf-file go together, e.g. --hf-repo OWNER/REPO "
            "--hf-file '*Q4_K_M.gguf'"
        )
    if model:
        raise HubError(f"give MODEL ({model}) or --hf-repo/--hf-file, not both")
    repo, _, revision = hf_repo.removeprefix(HF_SCHEME).partition("@")
    return _download(HubRef(repo, hf_file, revision or None))


def _download(ref: HubRef) -> Path:
    from mmlupro_local.hub import download_model

    return download_model(ref.repo, ref.file, ref.revision)
