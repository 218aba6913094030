"""Records' JSON forms are derived from their fields (issue 23): key order, renamed and
omitted keys, nested parts and the engine kind read back, and a wrong value named by its
path; files of every earlier release keep their bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from mmlupro_local.results.jsonform import OMIT_DEFAULT, FormError, form, from_json, to_json
from mmlupro_local.results.records import (
    Identity,
    LocalEngineIdentity,
    ResultRecord,
    RunHeader,
    SchemaError,
    ServerEngineIdentity,
)

RELEASES = [
    "schema1-release-78ffb39.jsonl",
    "schema1-release-2006866.jsonl",
    "schema1-release-2006866-logprob.jsonl",
    "schema1-release-2006866-server.jsonl",
]


@dataclass(frozen=True)
class Inner:
    n: int
    label: str = field(default="", metadata=form(key="name", omit_default=True))


@dataclass(frozen=True, kw_only=True)
class Outer:
    flag: bool = field(default=False, metadata=OMIT_DEFAULT)
    inner: Inner
    values: tuple[float, ...] = ()
    note: str | None = None


def test_the_json_follows_the_fields_in_order() -> None:
    outer = Outer(inner=Inner(3, "x"), values=(1.5, 2), note="n")
    assert json.dumps(to_json(outer)) == (
        '{"inner": {"n": 3, "name": "x"}, "values": [1.5, 2], "note": "n"}'
    )
    assert to_json(Outer(flag=True, inner=Inner(1))) == {
        "flag": True,
        "inner": {"n": 1},
        "values": [],
        "note": None,
    }
    assert from_json(Outer, json.loads(json.dumps(to_json(outer)))) == outer


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"inner": {"n": True}}, "'inner.n' is true"),  # a bool is no number
        ({"inner": {"n": "3"}}, "'inner.n' is \"3\""),
        ({"inner": {}}, "no 'inner.n'"),
        ({}, "no 'inner'"),
        ({"inner": {"n": 1}, "values": [1, "a"]}, "'values' is [1, \"a\"]"),
        ({"inner": {"n": 1}, "note": 4}, "'note' is 4"),
        ({"inner": {"n": 1}, "flag": None}, "'flag' is null"),
    ],
)
def test_a_wrong_value_is_named_by_its_path(data: dict[str, object], message: str) -> None:
    with pytest.raises(FormError) as error:
        from_json(Outer, data)
    assert str(error.value) == message


@pytest.mark.parametrize("name", RELEASES)
def test_files_of_every_release_keep_their_bytes(test_data: Path, name: str) -> None:
    for line in (test_data / name).read_text().splitlines():
        record = json.loads(line)
        typed = (RunHeader if record["type"] == "run" else ResultRecord).from_json(record)
        assert json.dumps(typed.to_json()) == line
        if isinstance(typed, RunHeader):
            assert json.dumps(typed.identity.to_json()) == json.dumps(record["identity"])


def test_the_engine_part_is_read_by_its_kind(test_data: Path) -> None:
    def identity(name: str) -> Identity:
        return RunHeader.from_json(json.loads((test_data / name).open().readline())).identity

    local, server = identity(RELEASES[1]), identity(RELEASES[3])
    assert local.engine == LocalEngineIdentity(
        batch=512, flash_attn=True, kv_type="f16", gpu_layers=-1, threads=2, parallel=2, lookup=16
    )
    assert isinstance(server.engine, ServerEngineIdentity) and server.engine.parallel == 2
    assert server.model_key == f"{server.engine.url} fake-model"
    assert local.mode() == "--parallel 2 --lookup 16 --threads 2"
    # before canonical shapes, the mode changed answers; under the exact rule it does not
    assert local.arithmetic() == local.mode() and not local.engine.exact
    exact = replace(local.engine, batch=0, shapes="cpu-streams-2")
    assert replace(local, engine=exact).arithmetic() == "shapes cpu-streams-2 --threads 2"
    assert server.mode() == "--parallel 2" == server.arithmetic()
    assert identity(RELEASES[2]).method == "logprob" and identity(RELEASES[0]).method == "cot"


def test_every_field_of_a_result_is_checked(test_data: Path) -> None:
    line = json.loads((test_data / RELEASES[1]).read_text().splitlines()[1])
    for name, bad in (
        ("guess_correct", None),
        ("seconds", "1"),
        ("stop_reason", 3),
        ("option_logprobs", {"A": "x"}),
        ("pred", 1),
    ):
        with pytest.raises(SchemaError, match=f"'{name}' is"):
            ResultRecord.from_json({**line, name: bad})
    later = ResultRecord.from_json({**line, "from_a_later_release": [1]})
    assert later.to_json()["from_a_later_release"] == [1]
