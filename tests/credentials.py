"""The suite's credential audit (issue 26): each credential a test puts in a URL, a
config file or the environment is listed in PLANTED, every stdout and stderr a test
reads is kept, and after the session no output and no file the suite produced (results,
reports, caches) may hold one, in any spelling JSON or a repr would give it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

PASSWORD = "hunter2"  # in a server URL's userinfo or query
API_KEY = "s3cret-key"  # in MMLUPRO_API_KEY
BAD_KEYS = ("sk-a\nX-Evil: 1", "sk-ünïcode")  # keys no header can carry
PLANTED = (PASSWORD, API_KEY, "X-Evil", "ünïcode")

# files a test writes itself to hold a credential (config files), and models (large)
NOT_PRODUCED = (".yaml", ".yml", ".gguf")
outputs: list[str] = []  # every stdout and stderr a test has read


def spellings(secret: str) -> set[bytes]:
    return {
        secret.encode(),
        json.dumps(secret)[1:-1].encode(),
        ascii(secret)[1:-1].encode(),
        repr(secret.encode())[2:-1].encode(),
    }


def leaks(
    roots: Iterable[Path], texts: Iterable[str], planted: Iterable[str] = PLANTED
) -> list[str]:
    """Where a planted credential shows: "<file>: <secret>" or "output N: <secret>"."""
    needles = {form: secret for secret in planted for form in spellings(secret)}
    found = []
    for where, data in _produced(roots, texts):
        found += [f"{where}: {secret!r}" for form, secret in needles.items() if form in data]
    return sorted(set(found))


def _produced(roots: Iterable[Path], texts: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    for n, text in enumerate(texts):
        yield f"output {n}", text.encode("utf-8", "backslashreplace")
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink() and not path.name.endswith(NOT_PRODUCED):
                yield str(path), path.read_bytes()


def record_outputs() -> None:
    """Keep what every CliRunner invocation and every subprocess prints."""
    invoke, communicate = CliRunner.invoke, subprocess.Popen.communicate

    def recording_invoke(self: CliRunner, *args: Any, **kwargs: Any) -> Result:
        result = invoke(self, *args, **kwargs)
        outputs.append(result.output)
        return result

    def recording_communicate(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> Any:
        out, err = communicate(self, *args, **kwargs)
        outputs.extend(_text(x) for x in (out, err) if x)
        return out, err

    CliRunner.invoke = recording_invoke  # type: ignore[method-assign]
    subprocess.Popen.communicate = recording_communicate  # type: ignore[method-assign]


def _text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", "backslashreplace")
