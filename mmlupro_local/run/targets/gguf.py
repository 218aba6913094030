"""The kind "gguf": a GGUF file run in-process through llama.cpp, hashed, checked
against this machine's memory, its engine mode chosen by the rule (engine.mode)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmlupro_local.engine import Engine, EngineError, EngineSettings, KvType
from mmlupro_local.engine.chat import Thinking, chat_renderer, template_switches
from mmlupro_local.engine.mode import EngineMode, auto_mode
from mmlupro_local.engine.shapes import ShapeRule, rule_for
from mmlupro_local.model.fingerprint import model_record, model_sha256
from mmlupro_local.model.gguf import GgufInfo, read_gguf
from mmlupro_local.model.hardware import default_flash_attn, default_gpu_layers, physical_cores
from mmlupro_local.model.memory import check_fits, check_gpu_fits, estimate, machine_memory
from mmlupro_local.model.source import resolve_model
from mmlupro_local.results.records import Identity, LocalEngineIdentity, ResultRecord
from mmlupro_local.run.targets import (
    EngineFactory,
    Given,
    Mode,
    Target,
    TargetOptionError,
    TargetSpec,
    kind,
    read_template,
    template_thinks,
)
from mmlupro_local.task.prompt import ChatRenderer

if TYPE_CHECKING:
    from mmlupro_local.run.plan import RunPlan
    from mmlupro_local.run.request import RunRequest


@kind("gguf")
@dataclass(frozen=True)
class GgufSpec(TargetSpec):
    # sequences one llama.cpp context holds (each with its own slot of the KV cache)
    max_parallel = 64
    default = True
    # the in-process engine's and the model file's options (a server has its own flags)
    own_options = (
        "think_budget",
        "threads",
        "gpu_layers",
        "batch",
        "flash_attn",
        "kv_type",
        "lookup",
        "draft",
        "prefix_cache",
        "memory_check",
        "chat_template",
        "hf_repo",
        "hf_file",
    )

    path: Path
    source: str = ""  # the hub reference it was downloaded from, if any
    chat_template: Path | None = None  # a Jinja file used instead of the model's template
    # the engine's own settings; None: decided by the run (the rule, or a resumed file)
    threads: int | None = None
    lookup: int | None = None
    gpu_layers: int | None = None  # None: this machine's default (hardware.default_gpu_layers)
    flash_attn: bool | None = None  # None: hardware.default_flash_attn
    kv_type: KvType = EngineSettings.kv_type
    memory_check: bool = True  # refuse a model and context larger than this machine's memory
    draft: Path | None = None  # a smaller model of the same vocabulary that guesses (issue 35)
    rule_bytes: int = 0  # the model size the rule reads (several models: the largest); 0: this

    def __post_init__(self) -> None:
        # the engine's own checks (a q8_0 cache needs flash attention), before anything loads
        EngineSettings(
            threads=1,
            gpu_layers=self.layers,
            flash_attn=self.attention,
            kv_type=self.kv_type,
        )

    @property
    def layers(self) -> int:
        return default_gpu_layers() if self.gpu_layers is None else self.gpu_layers

    @property
    def rule(self) -> ShapeRule:
        """The canonical decode shapes its engine will use (engine.shapes)."""
        from mmlupro_local.engine.handles import backend

        return rule_for(backend(self.layers), self.attention)

    @property
    def attention(self) -> bool | None:
        return default_flash_attn(self.layers) if self.flash_attn is None else self.flash_attn

    @property
    def cores(self) -> int:
        """The CPU threads: --threads, else this machine's physical cores."""
        return self.threads or physical_cores()

    def rule_mode(self) -> EngineMode:
        """The engine mode the rule chooses for this model on this machine (what `run`
        does when nothing is given or recorded; `bench` times the same)."""
        from mmlupro_local.engine.handles import backend

        return auto_mode(backend(self.layers), self.cores, self.rule_size)

    def engine_settings(
        self, *, threads: int | None = None, lookup: int = 0, draft: Path | None = None
    ) -> EngineSettings:
        """The in-process engine's settings, decided here for `run`, `bench` and
        `divergence` alike: GPU layers, flash attention and KV type as given or by this
        machine's defaults."""
        return EngineSettings(
            threads=threads or self.cores,
            gpu_layers=self.layers,
            flash_attn=self.attention,
            kv_type=self.kv_type,
            lookup=lookup,
            draft=draft,
        )

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def label(self) -> str:
        return str(self.path)

    @property
    def rule_size(self) -> int:
        return self.rule_bytes or (self.path.stat().st_size if self.path.is_file() else 0)

    def sized(self, size: int) -> GgufSpec:
        return replace(self, rule_bytes=size)

    def check(self) -> None:
        read_gguf(self.path)  # a missing, foreign or truncated file, named now

    @classmethod
    def from_options(
        cls, models: Sequence[str], options: Mapping[str, Any], given: Given
    ) -> list[TargetSpec]:
        """Each MODEL as a local file (hub references downloaded), with its hub reference."""
        return [
            cls(
                path=path,
                source=source,
                chat_template=options.get("chat_template"),
                threads=options.get("threads"),
                lookup=options.get("lookup"),
                gpu_layers=options.get("gpu_layers"),
                flash_attn=options.get("flash_attn"),
                kv_type=options.get("kv_type", EngineSettings.kv_type),
                memory_check=options.get("memory_check", True),
                draft=options.get("draft"),
            )
            for path, source in _model_files(models, options)
        ]

    @classmethod
    def refuse(cls, name: str, shown: str, other: type[TargetSpec]) -> str:
        return f"{shown} is for a model behind --server URL; give --server, or leave it out"

    def open(self, request: RunRequest, factory: EngineFactory | None) -> Target:
        return LocalModel(self, factory or _llama_engine, request.prompt.thinking)


def _model_files(models: Sequence[str], options: Mapping[str, Any]) -> list[tuple[Path, str]]:
    hf_repo, hf_file = options.get("hf_repo"), options.get("hf_file")
    if hf_repo or hf_file or len(models) <= 1:
        model = models[0] if models else None
        if len(models) > 1:
            raise TargetOptionError("--hf-repo/--hf-file name one model; give hf:// references")
        path = resolve_model(model, hf_repo, hf_file)
        if path is None:
            raise TargetOptionError(
                "give MODEL (a .gguf file or hf://OWNER/REPO/FILE.gguf), here or as 'model:' in "
                "--config, or --hf-repo and --hf-file, or --server URL"
            )
        source = (
            model
            if model and model.startswith("hf://")
            else (f"hf://{hf_repo}/{hf_file}" if hf_repo else "")
        )
        return [(path, source)]
    found = []
    for model in models:
        path = resolve_model(model, None, None)
        assert path is not None
        found.append((path, model if model.startswith("hf://") else ""))
    return found


def _llama_engine(model: Path, settings: EngineSettings) -> Engine:
    from mmlupro_local.engine.llama import LlamaEngine

    return LlamaEngine(model, settings)


def model_chat(
    info: GgufInfo, template_file: Path | None, thinking: Thinking | None
) -> tuple[str | None, dict[str, Any]]:
    """The chat template a run renders with (a --chat-template file, else the model's)
    and the variables --thinking sets in it; refused now, before any weights load, where
    the template cannot do what is asked."""
    template = (read_template(template_file) if template_file else None) or info.chat_template
    if thinking is None:
        return template, {}
    if not template:
        raise EngineError(
            f"{info.path.name} has no chat template: --thinking needs one (--chat-template FILE)",
            setting="thinking",
        )
    return template, template_switches(template).variables(thinking, info.path.name)


def run_renderer(
    model: Path, template_file: Path | None, thinking: Thinking | None
) -> ChatRenderer:
    """The chat renderer a run of `model` uses (for `prompt`, and for `divergence`'s
    reference prompts), with the same template, variables and refusals."""
    info = read_gguf(model)
    template, variables = model_chat(info, template_file, thinking)
    return chat_renderer(info, template, variables)


class LocalModel(Target):
    def __init__(
        self, spec: GgufSpec, factory: EngineFactory, thinking: Thinking | None = None
    ) -> None:
        self.spec, self.factory = spec, factory
        self.info: GgufInfo = read_gguf(spec.path)
        self.template_file = spec.chat_template
        self.template, self.template_variables = model_chat(self.info, spec.chat_template, thinking)
        self.template_thinks = thinking != "off" and template_thinks(self.template)
        self.key = model_sha256(spec.path)  # the identity's model_sha256, the prefix cache's key
        self.draft_key = ""  # the draft's name and sha256, as the identity says how it ran
        if spec.draft is not None:
            self.draft_key = f"{spec.draft.name} sha256:{model_sha256(spec.draft)}"
        self.engine: Engine | None = None
        self.trained_ctx = self.info.get_int("context_length")

    def mode(self, request: RunRequest, recorded: Identity | None) -> Mode:
        """Settings left to the run come from the identity of the file it resumes, so that
        a file finishes as it began whatever this machine is, else from the rule."""
        spec = self.spec
        alone = request.answering.one_at_a_time
        if alone:  # one question at a time, nothing generated
            return Mode(1, 0, spec.cores, alone)
        cores = spec.cores
        rule = spec.rule_mode()
        engine = recorded.engine if recorded is not None else None
        threads = cores
        if spec.threads is None and isinstance(engine, LocalEngineIdentity) and engine.threads:
            threads = engine.threads
        chosen = engine or rule
        parallel = chosen.parallel if request.parallel is None else request.parallel
        lookup = chosen.lookup if spec.lookup is None else spec.lookup
        if request.parallel is not None and spec.lookup is not None and threads == cores:
            return Mode(parallel, lookup, threads)  # all given (--reference...)
        if engine is not None:
            reason = f"as recorded in {request.out}, which this run resumes"
            line = (
                f"engine mode: --parallel {parallel} --lookup {lookup} --threads {threads}, "
                f"{reason} (the rule would choose {rule.flags} here now: {rule.reason})"
            )
            return Mode(parallel, lookup, threads, reason, line)
        line = f"engine mode: --parallel {parallel} --lookup {lookup} ({rule.reason})"
        return Mode(parallel, lookup, threads, rule.reason, line)

    def settings(self, plan: RunPlan) -> EngineSettings:
        return self.spec.engine_settings(
            threads=plan.threads, lookup=plan.lookup, draft=self.spec.draft
        )

    def engine_identity(self, plan: RunPlan) -> LocalEngineIdentity:
        s = self.settings(plan)
        return LocalEngineIdentity(
            shapes=self.spec.rule.name,
            flash_attn=s.flash_attn,
            kv_type=s.kv_type,
            gpu_layers=s.gpu_layers,
            threads=s.threads,
            parallel=plan.parallel,
            lookup=s.lookup,
            draft=self.draft_key,
        )

    def record(self) -> dict[str, Any]:
        record = {**model_record(self.info, self.key), "source": self.spec.source or None}
        if self.spec.chat_template is not None:
            record["chat_template"] = str(self.spec.chat_template)
        if self.template_variables:  # what --thinking set in the template
            record["chat_template_variables"] = self.template_variables
        return record

    def check_memory(self, n_ctx: int, warnings: list[str], parallel: int = 1) -> None:
        if not self.spec.memory_check:
            return
        cells = self.spec.rule.kv_cells(n_ctx, parallel)
        need = estimate(self.info, cells, self.spec.kv_type)
        if self.spec.draft is not None:  # its weights and its streams, one more for the prefix
            extra = estimate(read_gguf(self.spec.draft), cells + n_ctx, self.spec.kv_type)
            need = replace(
                need, weights=need.weights + extra.weights, kv_cache=need.kv_cache + extra.kv_cache
            )
        machine = machine_memory()
        warning = check_fits(self.info, need, machine)
        from mmlupro_local.engine.devices import gpu_memory
        from mmlupro_local.engine.handles import backend

        if backend(self.spec.layers) != "cpu":
            ram = machine.total if machine else None
            check_gpu_fits(self.info, need, gpu_memory(), self.spec.layers, ram)
        if warning and warning not in warnings:
            warnings.append(warning)

    def start(self, plan: RunPlan) -> Engine:
        self.engine = self.factory(self.spec.path, self.settings(plan))
        return self.engine

    def _draft_counts(self) -> tuple[int, int, float] | None:
        """(proposed, kept, seconds) of the draft, where one ran (a scripted engine has none)."""
        counts = getattr(self.engine, "draft_counts", None)
        return counts() if self.spec.draft is not None and counts is not None else None

    def after_run(self, answered: Sequence[ResultRecord]) -> list[str]:
        counts = self._draft_counts()
        if counts is None or self.spec.draft is None:
            return []
        proposed, kept, seconds = counts
        share = f"{kept / proposed:.1%}" if proposed else "-"
        return [
            f"draft {self.spec.draft.name}: {kept:,} of {proposed:,} proposed tokens kept "
            f"({share}), {seconds:.1f} s drafting"
        ]

    def used(self) -> dict[str, Any]:
        counts = self._draft_counts()
        if counts is None:
            return {}
        proposed, kept, seconds = counts
        return {"draft": {"proposed": proposed, "kept": kept, "seconds": round(seconds, 3)}}

    def renderer(self) -> ChatRenderer:
        return chat_renderer(self.info, self.template, self.template_variables)

    @property
    def uses_prefix_cache(self) -> bool:
        return True
