"""The browser the HTML report is rendered in: Chromium or Chrome wherever one is found.
In CI (CI=true, as .ci/run sets) the test needs one; elsewhere it is skipped, and the
summary says how to get one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
APPS = (
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
)
HINT = (
    "no Chromium or Chrome found to render the HTML report in: install one "
    "(apt-get install chromium; on a Mac, Google Chrome in /Applications) to run this test"
)


def find_browser(apps: tuple[str, ...] = APPS) -> str | None:
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return next((app for app in apps if Path(app).is_file()), None)


def browser_or_skip(apps: tuple[str, ...] = APPS) -> str:
    found = find_browser(apps)
    if found:
        return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{HINT} (CI=true: this test may not be skipped here; .ci/run installs one)")
    pytest.skip(HINT)


def headless(browser: str, profile: Path) -> list[str]:
    """The command that renders a page offline, with nothing of the user's profile."""
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--window-size=1200,1400"]  # fmt: skip
