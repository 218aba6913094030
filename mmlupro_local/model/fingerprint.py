"""What produced a result: the model file's content hash (cached), for result headers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mmlupro_local.config import cache_dir
from mmlupro_local.files import file_sha256
from mmlupro_local.model.gguf import GgufInfo

_CACHE_FILE = "model-hashes.json"


def model_sha256(path: Path) -> str:
    """sha256 of the model file, remembered by (path, size, mtime) so a multi-GB model
    is hashed once, not at every run."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    store = cache_dir() / _CACHE_FILE
    try:
        known: dict[str, str] = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    digest = file_sha256(path)
    known[key] = digest
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1), encoding="utf-8")
        os.replace(tmp, store)
    except OSError:
        pass  # an unwritable cache only costs a re-hash next time
    return digest


def model_record(info: GgufInfo, sha256: str) -> dict[str, Any]:
    meta = info.metadata
    return {
        "path": str(info.path.resolve()),
        "name": info.path.name,
        "size": info.size,
        "sha256": sha256,
        "architecture": info.architecture,
        "quantization": info.quantization,
        "model_name": meta.get("general.name"),
        "size_label": meta.get("general.size_label"),
        "n_ctx_train": info.get_int("context_length"),
    }
