"""`report --format eee`: the Every Eval Ever schema (0.3.0), validated against the
schema files of that release (tests/data/eee/)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema

from fakes import FakeEngine, invoke, invoke_with, write_fake_model
from mmlupro_local.datasets.dataset import load_dataset

EEE = Path(__file__).resolve().parent.parent / "data" / "eee"
PROX = Path(__file__).resolve().parent.parent / "data" / "mmlu-prox"


def schema(name: str) -> Any:
    return json.loads((EEE / name).read_text(encoding="utf-8"))


def validate(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """The one aggregate and its samples under `folder`, each validated."""
    (aggregate_path,) = sorted(folder.rglob("*.json"))
    aggregate = json.loads(aggregate_path.read_text(encoding="utf-8"))
    jsonschema.validate(aggregate, schema("eval.schema.json"))
    detail = aggregate["detailed_evaluation_results"]
    samples_path = folder / detail["file_path"]
    data = samples_path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == detail["checksum"]
    samples = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    instance = schema("instance_level_eval.schema.json")
    for sample in samples:
        jsonschema.validate(sample, instance)
        assert sample["evaluation_id"] == aggregate["evaluation_id"]
    assert detail["total_rows"] == len(samples)
    return aggregate, samples, aggregate_path


def test_a_run_in_the_every_eval_ever_schema_validates(tmp_path: Path) -> None:
    model = write_fake_model(tmp_path / "m.gguf")
    out = tmp_path / "r.jsonl"
    questions = {q.question.strip(): q for q in load_dataset().test}

    math_seen: list[int] = []

    def respond(prompt: str) -> str:
        """Law right, one math question right, history without a letter to extract."""
        asked = prompt.rsplit("Question:\n", 1)[1].split("\nOptions:\n")[0].strip()
        question = questions[asked]
        if question.category == "history":
            return "no idea."
        if question.category == "math":
            math_seen.append(question.question_id)
        right = question.category == "law" or len(math_seen) == 1
        wrong = "A" if question.answer != "A" else "B"
        return f"The answer is ({question.answer if right else wrong})."

    engine = FakeEngine(respond)
    sample = ("--per-category", "2", "--categories", "law,math,history")
    assert invoke_with(engine, "run", str(model), *sample, "--out", str(out)).exit_code == 0
    first = invoke("report", str(out), "--format", "eee", "--eee-dir", str(tmp_path / "a"))
    assert first.exit_code == 0, first.output
    aggregate, samples, path = validate(tmp_path / "a")
    assert path.parent.relative_to(tmp_path / "a").as_posix() == "data/mmlu-pro/unknown/m"
    overall, *categories = aggregate["evaluation_results"]
    assert [c["evaluation_name"] for c in categories] == [
        "mmlu-pro/history",
        "mmlu-pro/law",
        "mmlu-pro/math",
    ]
    uncertainty = overall["score_details"]["uncertainty"]
    interval = uncertainty["confidence_interval"]
    assert interval["lower"] < overall["score_details"]["score"] < interval["upper"]
    assert uncertainty["num_samples"] == 6 and uncertainty["standard_error"]["value"] > 0
    engine_info = aggregate["model_info"]["inference_engine"]
    assert engine_info == {"name": "llama.cpp (llama-cpp-python)", "version": "unknown"}
    assert aggregate["model_info"]["inference_platform"] == "local"
    assert aggregate["model_info"]["additional_details"]["model_availability"] == "open_weights"
    assert [s["evaluation"]["is_correct"] for s in samples].count(True) == sum(
        c["score_details"]["score"] * c["score_details"]["uncertainty"]["num_samples"]
        for c in categories
    )
    methods = [s["answer_attribution"][0]["extraction_method"] for s in samples]
    assert methods.count("no letter found: seeded random guess (counted wrong)") == 2
    assert [s["evaluation"]["is_correct"] for s in samples].count(True) == 3
    # the same file gives the same files, byte for byte
    assert (
        invoke("report", str(out), "--format", "eee", "--eee-dir", str(tmp_path / "b")).exit_code
        == 0
    )
    again = sorted(p for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert [p.read_bytes() for p in again] == [
        p.read_bytes() for p in sorted(q for q in (tmp_path / "a").rglob("*") if q.is_file())
    ]


def test_a_translated_run_names_its_language_and_dataset(tmp_path: Path) -> None:
    assert invoke("dataset", "import", str(PROX / "ar"), "--name", "mmlu-prox-ar").exit_code == 0
    model = write_fake_model(tmp_path / "m.gguf")
    out = tmp_path / "ar.jsonl"
    engine = FakeEngine(lambda prompt: "الإجابة هي (A)")
    run = ("run", str(model), "--dataset", "mmlu-prox-ar", "--per-category", "1", "--out", str(out))
    assert invoke_with(engine, *run, "--categories", "math").exit_code == 0
    assert (
        invoke("report", str(out), "--format", "eee", "--eee-dir", str(tmp_path / "e")).exit_code
        == 0
    )
    aggregate, samples, _ = validate(tmp_path / "e")
    source = aggregate["evaluation_results"][0]["source_data"]
    assert source["hf_repo"] == "li-lab/MMLU-ProX" and source["dataset_name"] == "MMLU-ProX (ar)"
    assert samples[0]["answer_attribution"][0]["extraction_method"] == "official extraction level 1"
    assert samples[0]["input"]["raw"].startswith("أجب عن السؤال التالي.")


def test_a_server_run_names_the_server_s_software(tmp_path: Path) -> None:
    """The pinned schema-1 file of a llama-server run: its engine is the server's, its
    weights are not ours to call open."""
    pinned = EEE.parent / "schema1-release-2006866-server.jsonl"
    out = invoke("report", str(pinned), "--format", "eee", "--eee-dir", str(tmp_path))
    assert out.exit_code == 0, out.output
    aggregate, _, _ = validate(tmp_path)
    info = aggregate["model_info"]
    assert info["inference_platform"] == "server"
    assert info["inference_engine"] == {"name": "llama-server", "version": "fake-1"}
    assert info["additional_details"]["model_availability"] == "unknown"
