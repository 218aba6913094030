"""The room a process has for connections (issue 32, case 15), under patched limits and
platforms: raised toward the hard limit, capped where macOS refuses more, else fitted."""

from __future__ import annotations

import resource
import sys

import pytest

from mmlupro_local.engine.server import descriptors
from mmlupro_local.engine.server.descriptors import MACOS_OPEN_MAX, RESERVE, connection_room


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The soft and hard limits, as setrlimit leaves them; 20 files already open."""
    state = [(256, resource.RLIM_INFINITY)]

    def setrlimit(which: int, pair: tuple[int, int]) -> None:
        if sys.platform == "darwin" and pair[0] > MACOS_OPEN_MAX:
            raise ValueError("not allowed to raise maximum limit")
        state.append(pair)

    monkeypatch.setattr(resource, "getrlimit", lambda which: state[-1])
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    monkeypatch.setattr(descriptors, "_in_use", lambda: 20)
    return state


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_the_soft_limit_is_raised_as_far_as_the_platform_allows(
    limits: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch, platform: str
) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    assert connection_room(1024) == (1024, 1024 + 20 + RESERVE)
    room, soft = connection_room(20_000)
    if platform == "darwin":
        assert (room, soft) == (MACOS_OPEN_MAX - 20 - RESERVE, MACOS_OPEN_MAX)
    else:
        assert (room, soft) == (20_000, 20_000 + 20 + RESERVE)


def test_under_a_hard_limit_the_window_fits_what_is_left(limits: list[tuple[int, int]]) -> None:
    limits.append((256, 256))
    assert connection_room(1024) == (256 - 20 - RESERVE, 256)
    assert connection_room(100) == (100, 256)
    limits.append((50, 50))  # not even the reserve: one at a time still
    assert connection_room(8) == (1, 50)
