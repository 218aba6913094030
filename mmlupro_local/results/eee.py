"""A run in the Every Eval Ever schema (evaleval/every_eval_ever, schema 0.3.0): an
aggregate JSON (the estimated full score with its 95 % interval and standard error as
`uncertainty`, the per-category accuracies, the model and inference engine) and a
per-sample JSONL sidecar, laid out as its datastore wants them
(data/<benchmark>/<developer>/<model>/<uuid>.json and <uuid>_samples.jsonl), so a run
can be pooled with lm-eval's, Inspect's and HELM's. Tests validate both against the
schema files of that release (tests/data/eee/).

The uuid is derived from the results file's identity and answers, so the same file
always gives the same files.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mmlupro_local import __version__
from mmlupro_local.datasets.dataset import EMBEDDED_NAME, Dataset, load_dataset
from mmlupro_local.datasets.questions import Question
from mmlupro_local.errors import MmluProError
from mmlupro_local.files import OutputError, output_text
from mmlupro_local.hub import DEFAULT_REPO, PROX_REPO
from mmlupro_local.results.figures import Figures
from mmlupro_local.results.records import TOOL_NAME, ResultRecord
from mmlupro_local.results.report import RunReport
from mmlupro_local.results.stats import Z95

SCHEMA_VERSION = "0.3.0"
HF_REPOS = {EMBEDDED_NAME: DEFAULT_REPO}


@dataclass(frozen=True)
class EeeFiles:
    aggregate: Path
    samples: Path
    rows: int


def write_eee(report: RunReport, root: Path) -> EeeFiles:
    """Write the report's run under `root` in the datastore's layout."""
    dataset = _dataset(report)
    ident = report.identity
    key = hashlib.sha256(
        json.dumps(ident.to_json(), sort_keys=True).encode()
        + b"".join(json.dumps(r.to_json(), sort_keys=True).encode() for r in report.records)
    ).digest()
    name = str(uuid.UUID(bytes=key[:16], version=4))
    benchmark = _benchmark(report)
    developer, model_id = _model_id(report)
    folder = root / "data" / benchmark / developer / model_id.split("/", 1)[1]
    relative = f"data/{benchmark}/{developer}/{model_id.split('/', 1)[1]}/{name}_samples.jsonl"
    evaluation_id = f"{benchmark}/{model_id}/{_epoch(report)}"
    by_id = {q.question_id: q for q in dataset.test}
    lines = [
        json.dumps(
            _sample(r, by_id[r.question_id], report, evaluation_id, model_id, benchmark),
            ensure_ascii=False,
        )
        for r in report.records
    ]
    samples = ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
    aggregate = _aggregate(report, evaluation_id, model_id, developer, benchmark, dataset)
    aggregate["detailed_evaluation_results"] = {
        "format": "jsonl",
        "file_path": relative,
        "hash_algorithm": "sha256",
        "checksum": hashlib.sha256(samples).hexdigest(),
        "total_rows": len(lines),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot make {folder}: {exc.strerror or exc}") from exc
    samples_path = folder / f"{name}_samples.jsonl"
    aggregate_path = folder / f"{name}.json"
    with output_text(samples_path) as handle:
        handle.write(samples.decode("utf-8"))
    with output_text(aggregate_path) as handle:
        handle.write(json.dumps(aggregate, indent=2, ensure_ascii=False) + "\n")
    return EeeFiles(aggregate_path, samples_path, len(lines))


def _dataset(report: RunReport) -> Dataset:
    name = report.first.dataset.get("name") or EMBEDDED_NAME
    dataset = load_dataset(name)
    if dataset.sha256 != report.dataset_sha256:
        raise MmluProError(
            f"dataset {name!r} here is not the one {report.path} was run on: the samples' "
            "questions cannot be written; import that dataset again"
        )
    return dataset


def _benchmark(report: RunReport) -> str:
    return str(report.first.dataset.get("name") or EMBEDDED_NAME)


def _slug(text: str) -> str:
    kept = "".join(c if c.isalnum() or c in "._-" else "-" for c in text).strip("-.")
    return kept or "unknown"


def _model_id(report: RunReport) -> tuple[str, str]:
    """(developer, "developer/model"): the hub repository a model came from, else the
    server's model id, else "unknown/<file name>"."""
    model = report.first.model
    source = str(model.get("source") or "")
    if source.startswith("hf://"):
        parts = source.removeprefix("hf://").split("/")
        if len(parts) >= 2:
            return _slug(parts[0]), f"{_slug(parts[0])}/{_slug(parts[1])}"
    name = str(model.get("name") or "model")
    if "/" in name:
        owner, rest = name.split("/", 1)
        return _slug(owner), f"{_slug(owner)}/{_slug(rest)}"
    return "unknown", f"unknown/{_slug(name.removesuffix('.gguf'))}"


def _epoch(report: RunReport) -> str:
    started = str(report.first.started or "")
    try:
        return str(int(datetime.fromisoformat(started).timestamp()))
    except ValueError:
        return "0"


def _strings(data: dict[str, Any]) -> dict[str, str]:
    """The schema's additional_details hold strings only."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items() if v is not None}


def _engine(report: RunReport) -> dict[str, str]:
    name, version = report.identity.engine.engine_name(report.first.engine)
    return {"name": name, "version": version}


def _aggregate(
    report: RunReport,
    evaluation_id: str,
    model_id: str,
    developer: str,
    benchmark: str,
    dataset: Dataset,
) -> dict[str, Any]:
    ident, model = report.identity, report.first.model
    platform = ident.engine.platform
    source_data = _source_data(report, dataset)
    results = [_overall(report, source_data, benchmark)]
    results += [_category(report, f, source_data, benchmark) for f in report.categories]
    return {
        "schema_version": SCHEMA_VERSION,
        "evaluation_id": evaluation_id,
        "evaluation_timestamp": str(report.first.started),
        "retrieved_timestamp": _epoch(report),
        "source_metadata": {
            "source_name": TOOL_NAME,
            "source_type": "evaluation_run",
            "source_organization_name": "unknown",
            "evaluator_relationship": "third_party",
            "additional_details": _strings({"results_file": report.path.name}),
        },
        "eval_library": {
            "name": TOOL_NAME,
            "version": str(report.first.tool.get("version") or __version__),
            "additional_details": _strings(
                {
                    "method": ident.method,
                    "mode": report.mode,
                    "command": " ".join(report.first.command),
                }
            ),
        },
        "model_info": {
            "name": str(model.get("model_name") or model.get("name") or model_id),
            "id": model_id,
            "developer": developer,
            "inference_platform": platform,
            "inference_engine": _engine(report),
            "additional_details": {
                "deployment_type": "self_deployed",
                # a server's weights are its operator's to name
                "model_availability": "open_weights" if ident.model_sha256 else "unknown",
                **_strings(
                    {
                        "model_sha256": ident.model_sha256 or None,
                        "quantization": model.get("quantization"),
                        "architecture": model.get("architecture"),
                        "source": model.get("source"),
                        "server": model.get("server"),
                    }
                ),
            },
        },
        "evaluation_results": results,
    }


def _dataset_name(repo: str | None, language: str | None) -> str:
    """ "MMLU-ProX (ko)", "MMLU-ProX-Lite (ko)": the repository's own name for a
    translation; MMLU-Pro otherwise (a copy imported by hand is still MMLU-Pro)."""
    if not language or not repo:
        return "MMLU-Pro"
    return f"{repo.rsplit('/', 1)[-1]} ({language})"


def _source_data(report: RunReport, dataset: Dataset) -> dict[str, Any]:
    language = dataset.language
    repo = dataset.meta.repo or (PROX_REPO if language else HF_REPOS.get(dataset.name))
    details = _strings(
        {
            "dataset_sha256": dataset.sha256,
            "revision": dataset.meta.revision,
            "language": language,
            "sample": report.latest.sample.description,
        }
    )
    data: dict[str, Any] = {
        "dataset_name": _dataset_name(repo, language),
        "source_type": "hf_dataset",
        "hf_split": "test",
        "samples_number": len(report.records),
        "additional_details": details,
    }
    if repo:
        data["hf_repo"] = repo
    return data


def _metric(description: str) -> dict[str, Any]:
    return {
        "evaluation_description": description,
        "metric_id": "accuracy",
        "metric_name": "accuracy",
        "metric_kind": "accuracy",
        "metric_unit": "proportion",
        "lower_is_better": False,
        "score_type": "continuous",
        "min_score": 0.0,
        "max_score": 1.0,
    }


def _generation(report: RunReport) -> dict[str, Any]:
    ident = report.identity
    args: dict[str, Any] = {
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": ident.generation.max_tokens,
    }
    args["reasoning"] = ident.generation.think_budget > 0
    args["execution_command"] = " ".join(report.first.command)
    return {
        "generation_args": args,
        "additional_details": _strings(
            {
                "style": ident.prompt.style,
                "shots": ident.prompt.shots,
                "wording": ident.prompt.wording or "mmlu-pro",
                "decoding": ident.generation.decoding,
                "stop": ident.generation.stop,
                "extraction": ident.extraction.mode,
                "seed": ident.seed,
            }
        ),
    }


def _overall(report: RunReport, source_data: dict[str, Any], benchmark: str) -> dict[str, Any]:
    """The estimated full score, its interval and standard error as `uncertainty`."""
    overall = report.overall
    estimate = report.score.strict if report.score else None
    value = estimate.value if estimate else overall.accuracy
    uncertainty: dict[str, Any] = {"num_samples": overall.n}
    if estimate is not None:
        uncertainty["standard_error"] = {
            "value": math.sqrt(max(estimate.variance, 0.0)),
            "method": f"{estimate.method}: stratified, finite-population corrected",
        }
        uncertainty["confidence_interval"] = {
            "lower": estimate.low,
            "upper": estimate.high,
            "confidence_level": 0.95,
            "method": f"{estimate.method}: Wilson at the design's effective size (z = {Z95:.2f})",
        }
    what = (
        f"estimated full-test accuracy ({estimate.method}) from {estimate.questions} of "
        f"{estimate.population} questions"
        if estimate
        else f"accuracy on {overall.n} sampled questions"
    )
    return {
        "evaluation_result_id": f"{benchmark}/overall",
        "evaluation_name": benchmark,
        "source_data": source_data,
        "metric_config": _metric(what),
        "score_details": {
            "score": value,
            "details": _strings({"correct": overall.correct, "answered": overall.n}),
            "uncertainty": uncertainty,
        },
        "generation_config": _generation(report),
    }


def _category(
    report: RunReport, figures: Figures, source_data: dict[str, Any], benchmark: str
) -> dict[str, Any]:
    low, high = figures.interval
    return {
        "evaluation_result_id": f"{benchmark}/{_slug(figures.name)}",
        "evaluation_name": f"{benchmark}/{figures.name}",
        "source_data": source_data,
        "metric_config": _metric(f"accuracy on the sampled {figures.name} questions"),
        "score_details": {
            "score": figures.accuracy,
            "uncertainty": {
                "confidence_interval": {
                    "lower": low,
                    "upper": high,
                    "confidence_level": 0.95,
                    "method": "Wilson score interval",
                },
                "num_samples": figures.n,
            },
        },
    }


def _sample(
    record: ResultRecord,
    question: Question,
    report: RunReport,
    evaluation_id: str,
    model_id: str,
    benchmark: str,
) -> dict[str, Any]:
    pred = record.pred or record.guess or ""
    method = (
        "log-probability argmax over the letters"
        if record.option_logprobs
        else f"official extraction level {record.level}"
        if record.pred
        else "no letter found: seeded random guess (counted wrong)"
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "evaluation_id": evaluation_id,
        "model_id": model_id,
        "evaluation_name": benchmark,
        "evaluation_result_id": f"{benchmark}/overall",
        "sample_id": str(record.question_id),
        "interaction_type": "single_turn",
        "input": {
            "raw": question.question,
            "reference": [record.answer],
            "choices": list(question.choices),
        },
        "output": {
            "raw": [record.response],
            **({"reasoning_trace": [record.reasoning]} if record.reasoning else {}),
        },
        "answer_attribution": [
            {
                "turn_idx": 0,
                "source": "output.raw",
                "extracted_value": pred,
                "extraction_method": method,
                "is_terminal": True,
            }
        ],
        "evaluation": {"score": 1.0 if record.correct else 0.0, "is_correct": record.correct},
        "token_usage": {
            "input_tokens": record.prompt_tokens,
            "output_tokens": record.generated_tokens,
            "total_tokens": record.prompt_tokens + record.generated_tokens,
        },
        "performance": {"latency_ms": round(record.seconds * 1000, 3)},
        "metadata": _strings(
            {"category": record.category, "shots": record.shots, "stop_reason": record.stop_reason}
        ),
    }
