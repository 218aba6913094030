"""The plan (issue 23): what a request leaves open is decided once, by `settle`, into
plain values; the identity is composed of the task's parts and the target's engine part."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from fakes import (
    LAW2,
    FakeEngine,
    invoke_with,
    lines,
    reference_request,
    write_fake_model,
)
from mmlupro_local.datasets.dataset import (
    load_dataset,
)
from mmlupro_local.engine import Engine
from mmlupro_local.results.records import Identity, ServerEngineIdentity
from mmlupro_local.run.plan import RunPlan, settle
from mmlupro_local.run.request import RunRequest, RunRequestError
from mmlupro_local.run.targets import (
    KINDS,
    EngineFactory,
    Given,
    Mode,
    Target,
    TargetOptionError,
    TargetSpec,
    kind,
    specs_from_options,
)
from mmlupro_local.run.targets.gguf import GgufSpec
from mmlupro_local.task.prompt import ChatRenderer
from mmlupro_local.task.settings import MAX_TOKENS, THINK_BUDGET


class ScriptedTarget(Target):
    """A target that says what a test wants: its rule gives 6 in flight."""

    def __init__(self, thinks: bool = False) -> None:
        self.template_thinks = thinks

    def mode(self, request: RunRequest, recorded: Identity | None) -> Mode:
        return Mode(request.parallel or 6, 0, 0, "scripted", "mode: scripted")

    def engine_identity(self, plan: RunPlan) -> ServerEngineIdentity:
        return ServerEngineIdentity(url="scripted", model="m", parallel=plan.parallel)

    def start(self, plan: RunPlan) -> Engine:
        return FakeEngine()(Path("x"), None)  # type: ignore[arg-type]

    def record(self) -> dict[str, Any]:
        return {"name": "scripted"}

    def renderer(self) -> ChatRenderer:
        return lambda messages: "".join(m["content"] for m in messages)


def test_a_kind_that_leaves_a_method_out_fails_when_made_not_mid_run() -> None:
    class Half(Target):
        def mode(self, request: RunRequest, recorded: Identity | None) -> Mode:
            return Mode(1)

    with pytest.raises(TypeError, match="abstract methods engine_identity, record, renderer"):
        Half()  # type: ignore[abstract]


def request(tmp_path: Path, **changes: Any) -> RunRequest:
    return RunRequest(
        target=GgufSpec(path=tmp_path / "m.gguf"), out=tmp_path / "r.jsonl", **changes
    )


def test_every_value_of_a_plan_is_concrete(tmp_path: Path) -> None:
    plan = settle(request(tmp_path), ScriptedTarget(), None)
    assert (plan.parallel, plan.lookup, plan.threads, plan.budget) == (6, 0, 0, MAX_TOKENS)
    assert plan.answer.think_budget == 0 and plan.mode_reason == "scripted"
    assert plan.lines == ("mode: scripted",) and plan.notes == ()
    for name in ("parallel", "lookup", "threads", "budget"):
        assert type(getattr(plan, name)) is int
    assert settle(request(tmp_path, parallel=3), ScriptedTarget(), None).parallel == 3


def test_a_thinking_template_settles_the_think_budget_and_the_budget(tmp_path: Path) -> None:
    chat = request(tmp_path).prompt.__class__(style="chat")
    plan = settle(request(tmp_path, prompt=chat), ScriptedTarget(thinks=True), None)
    assert plan.answer.think_budget == THINK_BUDGET and plan.budget == MAX_TOKENS + THINK_BUDGET
    assert plan.notes[0].startswith("the chat template opens think blocks")
    given = settle(
        request(tmp_path, prompt=chat, think_budget=10, max_tokens=8),
        ScriptedTarget(thinks=True),
        None,
    )
    assert (given.answer.think_budget, given.budget) == (10, 8)
    assert given.notes == (
        "--max-tokens 8 is not above --think-budget 10: a model that thinks "
        "that long never reaches its answer",
    )
    # completion prompts never open think blocks, whatever the template
    assert settle(request(tmp_path), ScriptedTarget(thinks=True), None).answer.think_budget == 0


def test_scoring_generates_nothing(tmp_path: Path) -> None:
    plan = settle(request(tmp_path, method="logprob", think_budget=None), ScriptedTarget(), None)
    assert (plan.budget, plan.answer.think_budget) == (0, 0)
    with pytest.raises(RunRequestError, match="one question at a time"):
        request(tmp_path, method="logprob", parallel=2)


def test_the_identity_is_composed_of_task_parts_and_the_targets_engine_part(
    tmp_path: Path,
) -> None:
    plan = settle(request(tmp_path, parallel=2), ScriptedTarget(), None)
    ident = plan.identity(ScriptedTarget(), load_dataset())
    assert ident.engine == ServerEngineIdentity(url="scripted", model="m", parallel=2)
    assert ident.generation.max_tokens == MAX_TOKENS and ident.prompt.shots == 5
    assert list(ident.to_json()) == [
        "model_sha256",
        "dataset_sha256",
        "prompt",
        "extraction",
        "generation",
        "engine",
        "seed",
    ]


def test_a_gguf_target_takes_what_a_resumed_file_recorded(tmp_path: Path) -> None:
    model = write_fake_model(tmp_path / "fake.gguf")
    first = reference_request(model, tmp_path / "r.jsonl", parallel=3, threads=2, lookup=8)
    target = first.target.open(first, FakeEngine())
    recorded = settle(first, target, None).identity(target, load_dataset())
    again = RunRequest(target=GgufSpec(path=model), out=first.out)
    plan = settle(again, again.target.open(again, FakeEngine()), recorded)
    assert (plan.parallel, plan.lookup, plan.threads) == (3, 8, 2)
    assert plan.mode_reason == f"as recorded in {first.out}, which this run resumes"


def test_kinds_are_registered_by_name() -> None:
    assert set(KINDS) == {"gguf", "server"}
    assert all(issubclass(kind, TargetSpec) for kind in KINDS.values())
    assert {f.name for f in fields(KINDS["server"])} == {"settings", "more"}


def test_the_run_s_kind_is_the_registered_kind_its_options_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A new kind is its spec registered in one place: the CLI's dispatch finds it, and
    the other kinds' options are refused with the kind's own words."""

    @dataclasses.dataclass(frozen=True)
    class EchoSpec(TargetSpec):
        word: str = ""
        kind = "echo"
        own_options = ("echo",)

        @classmethod
        def claims(cls, options: Mapping[str, Any]) -> bool:
            return bool(options.get("echo"))

        @classmethod
        def from_options(
            cls, models: Sequence[str], options: Mapping[str, Any], given: Given
        ) -> list[TargetSpec]:
            return [cls(options["echo"])]

        @property
        def stem(self) -> str:
            return self.word

        def open(self, request: RunRequest, factory: EngineFactory | None) -> Target:
            return ScriptedTarget()

    monkeypatch.setitem(KINDS, "echo", EchoSpec)

    class Unfinished(TargetSpec):  # no stem, open or from_options
        pass

    with pytest.raises(TypeError, match="kind 'half' leaves out from_options, open, stem"):
        kind("half")(Unfinished)
    assert "half" not in KINDS
    given: dict[str, str] = {}

    def shown(names: Sequence[str]) -> str | None:
        return next((given[n] for n in names if n in given), None)

    assert specs_from_options((), {"echo": "hi"}, shown) == [EchoSpec("hi")]
    given["threads"] = "--threads"
    with pytest.raises(TargetOptionError, match="--threads is for gguf models, not echo ones"):
        specs_from_options((), {"echo": "hi"}, shown)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    given = {"echo": "--echo"}
    with pytest.raises(TargetOptionError, match="--echo is for a model behind --server URL"):
        specs_from_options((str(model),), {}, shown)


def test_each_kind_owns_the_cli_options_it_takes() -> None:
    from mmlupro_local.cli import options as o

    in_process = {*o.engine_options.names, *o.model_options.names, "think_budget"}
    assert set(KINDS["gguf"].own_options) == in_process
    assert set(KINDS["server"].own_options) == set(o.server_options.names)


def test_threads_are_part_of_the_identity(model: Path, tmp_path: Path, engine: FakeEngine) -> None:
    """Issue 13, case 4."""
    out = tmp_path / "r.jsonl"
    first = invoke_with(
        engine, "run", str(model), *LAW2, "--threads", "2", "--out", str(out), "--per-category", "1"
    )
    assert first.exit_code == 0, first.output
    assert lines(out)[0]["identity"]["engine"]["threads"] == 2
    again = invoke_with(engine, "run", str(model), *LAW2, "--threads", "1", "--out", str(out))
    assert again.exit_code == 1 and "engine.threads: 2 in the file, 1 now" in again.output


def test_files_from_before_threads_were_recorded_still_resume(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    """Issue 13, case 4."""
    out = tmp_path / "r.jsonl"
    assert (
        invoke_with(
            engine, "run", str(model), *LAW2, "--per-category", "1", "--out", str(out)
        ).exit_code
        == 0
    )
    records = lines(out)
    del records[0]["identity"]["engine"]["threads"]
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    again = invoke_with(engine, "run", str(model), *LAW2, "--threads", "1", "--out", str(out))
    assert again.exit_code == 0, again.output
    assert [r["type"] for r in lines(out)] == ["run", "result", "run", "result"]
