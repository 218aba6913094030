"""Output files: written through symlinks and devices, with the umask's permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fakes import (
    FakeEngine,
    finished_run,
    invoke,
    lines,
)
from mmlupro_local.files import sync


def test_export_writes_through_symlinks_and_devices_with_umask_permissions(
    tmp_path: Path,
) -> None:
    """Issue 13, case 2."""
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    result = invoke("dataset", "export", "--out", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text().count("\n") == 12102
    fresh = tmp_path / "fresh.jsonl"
    old_mask = os.umask(0o022)
    try:
        assert invoke("dataset", "export", "--out", str(fresh)).exit_code == 0
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
    os.chmod(target, 0o640)
    assert invoke("dataset", "export", "--out", str(link)).exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # a replaced file keeps its mode
    # a device is written to, never replaced: /dev/full is full, /dev/null takes it all
    full = invoke("dataset", "export", "--out", "/dev/full")
    assert full.exit_code == 1 and "No space left on device" in full.output
    assert "wrote" not in full.output
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    assert invoke("dataset", "export", "--out", "/dev/null").exit_code == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_html_reports_get_the_umasks_permissions(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    """Issue 13, case 2."""
    out = finished_run(model, tmp_path / "r.jsonl", engine)
    html = tmp_path / "r.html"
    old_mask = os.umask(0o022)
    try:
        assert invoke("report", str(out), "--html", str(html)).exit_code == 0
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(html.stat().st_mode) == 0o644


def test_an_html_report_to_stdout_is_the_only_thing_there(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    """Issue 32, case 10: `report F --html -` printed the text table and the HTML together."""
    out = finished_run(model, tmp_path / "r.jsonl", engine)
    result = invoke("report", str(out), "--html", "-")
    assert result.exit_code == 0, result.output
    page = result.stdout.strip()
    assert page.lower().startswith("<!doctype html>") and page.endswith("</html>"), page[:200]
    assert not (tmp_path / "-").exists() and "wrote -" not in result.output


F_FULLFSYNC = 51  # its value on macOS


def test_durable_writes_flush_the_drive_cache_where_the_platform_can(
    model: Path, tmp_path: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 27, point 6: macOS's fsync leaves data in the drive's cache; every place
    the tool syncs (the results store, exports, the dataset cache) asks for F_FULLFSYNC."""
    import fcntl

    asked: list[int] = []
    synced: list[int] = []
    monkeypatch.setattr(fcntl, "F_FULLFSYNC", F_FULLFSYNC, raising=False)
    monkeypatch.setattr(fcntl, "fcntl", lambda fd, op, *a: asked.append(op) or 0)
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    out = finished_run(model, tmp_path / "r.jsonl", engine)
    assert len(asked) >= 2 and len(lines(out)) == 3  # the header, the results
    run_syncs = len(asked)
    assert invoke("dataset", "export", "--out", str(tmp_path / "d.jsonl")).exit_code == 0
    assert len(asked) == run_syncs + 1 and set(asked) == {F_FULLFSYNC} and synced == []

    def refused(fd: int, op: int, *a: object) -> int:
        raise OSError(25, "Inappropriate ioctl for device")  # e.g. a network volume

    monkeypatch.setattr(fcntl, "fcntl", refused)
    sync(3)
    assert synced == [3]  # fell back to fsync


def test_without_f_fullfsync_it_is_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    monkeypatch.delattr(fcntl, "F_FULLFSYNC", raising=False)
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    sync(7)
    assert synced == [7]
