"""Where the tool keeps its files (platformdirs), overridable for tests and odd setups."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "mmlupro-local"
CACHE_ENV = "MMLUPRO_LOCAL_CACHE"


def cache_dir() -> Path:
    """The user cache directory: $MMLUPRO_LOCAL_CACHE, else the platform's own."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def datasets_dir() -> Path:
    return cache_dir() / "datasets"
