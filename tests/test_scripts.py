"""The install scripts on a machine without GNU coreutils' sha256sum and nproc (macOS
13 and older), or without a new enough python3 (the Xcode command line tools' 3.9), run
here under a PATH of the real tools less those, with shims where macOS has another tool
(issue 27, points 1, 2 and 4)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX2=ON"
KEYS = f'. {SCRIPTS}/portable.sh; wheel_key {sys.executable} 0.3.36 "{ARGS}"; server_key 0.3.36 "{ARGS}"; cpu_count'


def tools(folder: Path, leave_out: set[str], shims: dict[str, str] | None = None) -> str:
    """A PATH of one folder: every tool on this PATH, less `leave_out` and any Python,
    plus `shims` (name: shell script body)."""
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = Path(directory) / name
            if name in leave_out or name.startswith("python") or (folder / name).exists():
                continue
            if target.is_file() and os.access(target, os.X_OK):
                (folder / name).symlink_to(target)
    for name, body in (shims or {}).items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return str(folder)


def sh(script: str, path: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, **({"PATH": path} if path else {})}
    return subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, env=full, timeout=60
    )


def test_the_keys_are_the_same_without_sha256sum_and_nproc(tmp_path: Path) -> None:
    gnu = sh(KEYS)
    assert gnu.returncode == 0, gnu.stderr
    wheel, server, jobs = gnu.stdout.split()
    assert re.fullmatch("[0-9a-f]{16}", wheel) and re.fullmatch("[0-9a-f]{16}", server)
    assert wheel != server and int(jobs) >= 1
    bsd = sh(KEYS, tools(tmp_path / "bsd", {"sha256sum", "nproc"}))  # shasum, getconf
    assert bsd.returncode == 0 and bsd.stdout.split()[:2] == [wheel, server], bsd.stderr
    online = sh("getconf _NPROCESSORS_ONLN").stdout.strip()
    assert bsd.stdout.split()[2] == online  # nproc's stand-in (nproc also heeds affinity)
    if shutil.which("openssl"):
        bare = sh(KEYS, tools(tmp_path / "openssl", {"sha256sum", "shasum", "nproc"}))
        assert bare.returncode == 0 and bare.stdout.split()[:2] == [wheel, server], bare.stderr
    mac = tools(
        tmp_path / "mac",
        {"sha256sum", "nproc", "getconf"},
        {"sysctl": '[ "$1 $2" = "-n hw.ncpu" ] && echo 10'},
    )
    assert sh(f". {SCRIPTS}/portable.sh; cpu_count", mac).stdout == "10\n"
    nothing = tools(tmp_path / "none", {"nproc", "getconf", "sysctl"})
    counted = sh(f". {SCRIPTS}/portable.sh; cpu_count", nothing)
    assert counted.stdout == "2\n" and "cannot count the processors" in counted.stderr


def test_without_any_hashing_tool_the_wheel_script_stops_and_touches_no_cache(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "wheels"
    kept = cache / "0123456789abcdef" / "llama_cpp_python-0.3.36-py3-none-any.whl"
    kept.parent.mkdir(parents=True)
    kept.write_text("an earlier build")
    path = tools(tmp_path / "bare", {"sha256sum", "shasum", "openssl"})
    done = sh(
        f"{SCRIPTS}/llama_wheel.sh {sys.executable} 0.3.36", path, MMLUPRO_WHEEL_CACHE=str(cache)
    )
    assert done.returncode != 0 and "no sha256sum, shasum or openssl" in done.stderr
    assert sorted(p.name for p in cache.iterdir()) == ["0123456789abcdef"] and kept.exists()


def test_the_wheel_script_finds_the_cached_wheel_under_the_bsd_tools(tmp_path: Path) -> None:
    args = sh(f"{SCRIPTS}/llama_cmake_args.sh").stdout.strip()
    key = sh(f'. {SCRIPTS}/portable.sh; wheel_key {sys.executable} 0.3.36 "{args}"').stdout.strip()
    wheel = tmp_path / "wheels" / key / "llama_cpp_python-0.3.36-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_text("cached")
    done = sh(
        f"{SCRIPTS}/llama_wheel.sh {sys.executable} 0.3.36",
        tools(tmp_path / "bsd", {"sha256sum", "nproc"}),
        MMLUPRO_WHEEL_CACHE=str(tmp_path / "wheels"),
    )
    assert done.returncode == 0 and done.stdout.strip() == str(wheel), done.stderr


OLD = "echo 3.9"  # what the Xcode command line tools' python3 answers the version probe


def test_make_install_with_a_python_3_9_stops_in_seconds_saying_what_to_do(tmp_path: Path) -> None:
    path = tools(tmp_path / "old", set(), {"python3": OLD})
    began = time.monotonic()
    done = subprocess.run(
        ["make", "-C", str(ROOT), "install", f"VENV={tmp_path / 'venv'}", "PYTHON="],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": path},
    )
    assert done.returncode != 0 and time.monotonic() - began < 30
    assert f"python3 ({path}/python3) is Python 3.9" in done.stderr
    assert "make install PYTHON=/path/to/python3.12" in done.stderr
    assert not (tmp_path / "venv").exists()  # nothing built, nothing to clean up


def test_python_is_chosen_before_anything_is_built(tmp_path: Path) -> None:
    path = tools(
        tmp_path / "some",
        set(),
        {"python3": OLD, "python3.12": "echo 3.12", "python3.10": "echo 3.10"},
    )
    found = sh(f"{SCRIPTS}/find_python.sh", path)
    assert found.returncode == 0 and found.stdout.strip() == f"{path}/python3.12"
    given = sh(f"{SCRIPTS}/find_python.sh {path}/python3", path)
    assert given.returncode == 1 and f"PYTHON={path}/python3 is Python 3.9" in given.stderr
    assert sh(f"{SCRIPTS}/find_python.sh {sys.executable}").stdout.strip() == sys.executable
    none = sh(f"{SCRIPTS}/find_python.sh", tools(tmp_path / "none", set()))
    assert none.returncode == 1 and "no python3 on PATH" in none.stderr


@pytest.mark.parametrize(("machine", "flags"), [
    ("Darwin arm64", "-DGGML_METAL=ON"),
    ("Darwin x86_64", "-DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_METAL=ON"),
])  # fmt: skip
def test_cmake_flags_on_a_mac_match_what_llama_cpp_python_builds(
    tmp_path: Path, machine: str, flags: str
) -> None:
    system, arch = machine.split()
    uname = f'case "$1" in -s) echo {system} ;; -m) echo {arch} ;; esac'
    path = tools(tmp_path / "mac", {"uname"}, {"uname": uname})
    done = sh(f"{SCRIPTS}/llama_cmake_args.sh", path, MMLUPRO_CMAKE_ARGS="")
    assert done.returncode == 0 and done.stdout.strip() == flags


CACHE_VARIABLES = ("HOME", "XDG_CACHE_HOME", "MMLUPRO_LOCAL_CACHE")
# (platform, environment, the cache root): "H" is $HOME, "W" the current directory,
# "P" the password database's home (HOME unset), "X" an absolute XDG_CACHE_HOME
CACHE_ROOTS = [
    ("linux", {}, "H/.cache/mmlupro-local"),
    ("linux", {"XDG_CACHE_HOME": "X"}, "X/mmlupro-local"),
    ("linux", {"XDG_CACHE_HOME": "rel/cache"}, "H/.cache/mmlupro-local"),  # XDG: ignored
    ("darwin", {}, "H/Library/Caches/mmlupro-local"),
    ("darwin", {"XDG_CACHE_HOME": "X"}, "X/mmlupro-local"),
    ("darwin", {"XDG_CACHE_HOME": "rel"}, "H/Library/Caches/mmlupro-local"),
    ("linux", {"MMLUPRO_LOCAL_CACHE": "~/c", "XDG_CACHE_HOME": "X"}, "H/c"),
    ("darwin", {"MMLUPRO_LOCAL_CACHE": "~"}, "H"),
    ("linux", {"MMLUPRO_LOCAL_CACHE": "rel/c"}, "W/rel/c"),
    ("linux", {"MMLUPRO_LOCAL_CACHE": "", "XDG_CACHE_HOME": "X"}, "X/mmlupro-local"),
    ("linux", {"HOME": None}, "P/.cache/mmlupro-local"),
    ("darwin", {"HOME": ""}, "P/Library/Caches/mmlupro-local"),
]


@pytest.mark.parametrize(("platform", "environment", "root"), CACHE_ROOTS)
def test_the_scripts_and_the_tool_agree_on_the_cache_root(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platform: str,
    environment: dict[str, str | None],
    root: str,
) -> None:
    """Issue 27, point 9 (`cache info` and `cache clear --builds` cover the builds), and
    issue 32, case 18: one rule for the build scripts and the tool, whatever the user's
    environment holds."""
    import pwd

    from mmlupro_local.config import cache_dir

    home, work, xdg = tmp_path / "home", tmp_path / "work", tmp_path / "xdg"
    work.mkdir()
    letters = {"H": str(home), "W": str(work), "X": str(xdg), "P": pwd.getpwuid(os.getuid()).pw_dir}
    environment = {"HOME": "H", **environment}
    values = {
        k: v if v is None or v[:1] not in letters else letters[v[0]] + v[1:]
        for k, v in environment.items()
    }
    expected = letters[root[0]] + root[1:]
    shell_env = {k: v for k, v in os.environ.items() if k not in CACHE_VARIABLES}
    shell_env.update({k: v for k, v in values.items() if v is not None})
    uname = f'case "$1" in -s) echo {"Darwin" if platform == "darwin" else "Linux"} ;; -m) echo arm64 ;; esac'
    shell_env["PATH"] = tools(tmp_path / "bin", {"uname"}, {"uname": uname})
    done = subprocess.run(["sh", "-c", f". {SCRIPTS}/portable.sh; cache_root"], cwd=work,
                          capture_output=True, text=True, env=shell_env, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in CACHE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "platform", platform)
    assert os.path.normpath(done.stdout.strip()) == str(cache_dir()) == expected
