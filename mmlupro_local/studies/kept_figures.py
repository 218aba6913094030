"""Figures `quants` keeps beside a model's results file, so that a rerun (after an
interrupt, or to grow the sample) neither measures them again nor loses them: the
divergence from the reference, and the peak memory of the sessions that answered. They
stand only for the settings they were measured under, which the key holds (both models'
sha256, the sample, method, budget and dataset for a divergence)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmlupro_local.files import output_text

VERSION = 1


def cached(path: Path, key: Mapping[str, Any]) -> dict[str, Any] | None:
    """The figures kept at `path` under this key; None when there are none, they were
    measured otherwise, or the file cannot be read (then they are measured again)."""
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get("version") != VERSION or kept.get("key") != key:
        return None
    figures = kept.get("figures")
    return dict(figures) if isinstance(figures, dict) else None


def keep(path: Path, key: Mapping[str, Any], figures: Mapping[str, Any]) -> None:
    """Written whole or not at all (a killed write leaves the old file or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with output_text(path) as handle:
        json.dump({"version": VERSION, "key": dict(key), "figures": dict(figures)}, handle)
