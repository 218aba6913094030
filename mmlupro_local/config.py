"""Where the tool keeps its files, and run options from YAML files."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import platformdirs
import yaml

from mmlupro_local.errors import MmluProError

APP_NAME = "mmlupro-local"


class ConfigError(MmluProError):
    """A configuration file is unreadable or names unknown options."""


CACHE_ENV = "MMLUPRO_LOCAL_CACHE"


def cache_dir() -> Path:
    """The user cache directory, by the rule `scripts/portable.sh` (cache_root) follows
    too, so that the builds it caches are the tool's to count and clear (issue 32, case
    18): $MMLUPRO_LOCAL_CACHE (a leading ~ is the home folder; relative to the current
    folder), else an absolute $XDG_CACHE_HOME (a relative one is invalid in the XDG spec)
    on Linux and macOS alike, else ~/Library/Caches on macOS and ~/.cache elsewhere; the
    home folder is $HOME, else the password database's. platformdirs differs between
    its versions on these points, so it decides only on Windows."""
    override = os.environ.get(CACHE_ENV, "")
    if override:
        if override == "~" or override.startswith("~/"):
            override = str(_home()) + override[1:]
        return Path(os.path.abspath(override))
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / APP_NAME
    if sys.platform == "win32":
        return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
    return _home() / ("Library/Caches" if sys.platform == "darwin" else ".cache") / APP_NAME


def _home() -> Path:
    home = os.environ.get("HOME", "")
    if home:
        return Path(home)
    import pwd

    return Path(pwd.getpwuid(os.getuid()).pw_dir)


def datasets_dir() -> Path:
    return cache_dir() / "datasets"


def prefix_cache_dir() -> Path:
    return cache_dir() / "prefix-kv"


PREFIX_CACHE_MAX_GB = 4.0


def load_run_config(path: Path, names: dict[str, str]) -> dict[str, tuple[str, Any]]:
    """Options from a YAML file. `names` maps every accepted key (an option's flag name
    without dashes, such as 'dataset' or 'max-tokens', and its parameter name, such as
    'dataset_name') to the parameter; the result maps each parameter to the key as the
    file spells it and the value."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliases)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 YAML"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except _AliasError:
        raise ConfigError(
            f"{path} uses a YAML alias (*name); write each value out (aliases can expand "
            "a small file into gigabytes)"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of option names to values")
    options: dict[str, tuple[str, Any]] = {}
    unknown = []
    for key, value in data.items():
        param = names.get(str(key)) or names.get(str(key).replace("_", "-"))
        if param is None:
            unknown.append(str(key))
        elif param in options:
            raise ConfigError(f"{path}: {options[param][0]!r} and {key!r} set the same option")
        else:
            options[param] = (str(key), _flat(value))
    if unknown:
        known = sorted({k for k in names if "_" not in k})
        raise ConfigError(
            f"{path}: unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}"
        )
    return options


class _AliasError(Exception):
    pass


class _NoAliases(yaml.SafeLoader):
    """The safe loader, refusing aliases before anything is expanded (issue 26, case 9:
    a 334-byte alias bomb took 3.8 GB)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _AliasError
        return super().compose_node(parent, index)


def _flat(value: Any) -> Any:
    """YAML lists become the comma-separated strings the command line takes."""
    return ",".join(str(v) for v in value) if isinstance(value, list) else value
