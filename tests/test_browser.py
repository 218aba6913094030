"""Where the HTML report's browser test runs (issue 27, point 8)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from browser import HINT, browser_or_skip, find_browser


def test_without_a_browser_the_test_is_skipped_with_the_hint_but_not_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        browser_or_skip(apps=())
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        browser_or_skip(apps=())
    assert "/Applications" in HINT


def test_a_chrome_on_the_path_or_in_applications_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    app = tmp_path / "Google Chrome.app" / "Contents" / "MacOS" / "Google Chrome"
    app.parent.mkdir(parents=True)
    app.write_text("")
    assert find_browser(apps=(str(app),)) == str(app)
    chrome = tmp_path / "google-chrome"
    chrome.write_text("#!/bin/sh\n")
    os.chmod(chrome, 0o755)
    assert find_browser(apps=(str(app),)) == str(chrome)
