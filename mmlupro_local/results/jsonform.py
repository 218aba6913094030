"""A record's JSON form, derived from its dataclass fields: the key order is the field
order, nested dataclasses are nested objects, and a value is checked against its
annotation when read, so adding a field to a record is one edit.

Field options (a field's metadata, made by `form`): `key`, the JSON name when it is not the field's;
`omit_default`, left out while it has its default (so files written before the field
existed keep their bytes, and read back the default); `choose`, for a field typed as a
union of dataclasses, the class that reads a given object; `skip`, not part of the JSON
form (state kept beside it).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, Union

from mmlupro_local.errors import MmluProError

T = TypeVar("T")


class FormError(MmluProError):
    """A JSON value that is not what its field holds; `name` is the field's path."""

    def __init__(self, name: str, value: Any, *, missing: bool = False) -> None:
        text = f"no {name!r}" if missing else f"{name!r} is {json.dumps(value)[:40]}"
        super().__init__(text)
        self.name = name


def form(
    *,
    key: str | None = None,
    omit_default: bool = False,
    choose: Callable[[Mapping[str, Any]], type] | None = None,
    skip: bool = False,
) -> dict[str, Any]:
    return {"key": key, "omit_default": omit_default, "choose": choose, "skip": skip}


OMIT_DEFAULT = form(omit_default=True)
SKIP = form(skip=True)


def _key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("key") or f.name)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def to_json(record: Any) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.metadata.get("skip") or (f.metadata.get("omit_default") and value == _default(f)):
            continue
        data[_key(f)] = _plain(value)
    return data


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_json(cls: type[T], data: Any, *, path: str = "", given: Mapping[str, Any] = {}) -> T:
    """The record `data` holds, or FormError naming the first field that is wrong; the
    fields in `given` take those values instead (read by the caller)."""
    if not isinstance(data, Mapping):
        raise FormError(path.rstrip(".") or "record", data)
    values: dict[str, Any] = dict(given)
    hints = _hints(typing.cast(Any, cls))
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in given or f.metadata.get("skip"):
            continue
        name = path + _key(f)
        if _key(f) not in data:
            if _default(f) is dataclasses.MISSING:
                raise FormError(name, None, missing=True)
            continue
        value = data[_key(f)]
        choose = f.metadata.get("choose")
        kind = choose(value) if choose and isinstance(value, Mapping) else hints[f.name]
        values[f.name] = _read(kind, value, name)
    return cls(**values)


def _read(kind: Any, value: Any, name: str) -> Any:
    if dataclasses.is_dataclass(kind):
        return from_json(kind, value, path=name + ".")  # type: ignore[arg-type]
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _read(option, value, name)
            except FormError:
                continue
        raise FormError(name, value)
    if kind is Any:
        return value
    if origin is tuple:
        if not isinstance(value, list) or not all(_fits(args[0], v) for v in value):
            raise FormError(name, value)
        return tuple(value)
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping) or not all(_fits(args[1], v) for v in value.values()):
            raise FormError(name, value)
        return value
    if origin is typing.Literal:
        kind = type(args[0])
    if not _fits(kind, value):
        raise FormError(name, value)
    return value


def _fits(kind: Any, value: Any) -> bool:
    """bool is an int in Python: a count or an id of true is no number."""
    if kind is Any:
        return True
    if kind is float:  # NaN and infinity are no JSON (issue 26, case 13)
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)
