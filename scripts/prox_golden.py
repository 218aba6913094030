"""Render the MMLU-ProX fixture's prompts with lm-evaluation-harness itself, into the
golden files the tests compare ours with (tests/data/mmlu-prox-prompts/<lang>.jsonl.gz),
and write the languages' wording data (mmlupro_local/task/data/mmlu_prox.json) from the
harness's own tables (`lang_libs.py`, the task YAML files).

Needs lm-eval in another environment (its dependencies are not ours):
  python3 -m venv /tmp/lmeval && /tmp/lmeval/bin/pip install lm-eval==0.4.13
  /tmp/lmeval/bin/python scripts/prox_golden.py
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import lm_eval
import yaml
from lm_eval.tasks import TaskManager
from lm_eval.tasks.mmlu_prox.lang_libs import LANG_LIBS, LANG_SUBJECTS

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "mmlu-prox"
GOLDEN = ROOT / "tests" / "data" / "mmlu-prox-prompts"
WORDINGS = ROOT / "mmlupro_local" / "task" / "data" / "mmlu_prox.json"
TASKS = Path(lm_eval.__file__).parent / "tasks" / "mmlu_prox"
SHOTS = 5


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _template(lang: str) -> dict[str, object]:
    text = (TASKS / lang / f"_{lang}_template_yaml").read_text(encoding="utf-8")
    return dict(yaml.load(text, Loader=_Loader))


def wordings() -> dict[str, object]:
    """Each language's strings as the harness has them: lang_libs, subjects, the answer
    regex and the stop words of its template."""
    out: dict[str, object] = {"lm_eval": lm_eval.__version__, "languages": {}}
    for lang, strings in LANG_LIBS.items():
        template = _template(lang)
        filters = template["filter_list"][0]["filter"]  # type: ignore[index]
        out["languages"][lang] = {  # type: ignore[index]
            "strings": strings,
            "subjects": LANG_SUBJECTS[lang],
            "answer_regex": filters[0]["regex_pattern"],
            "until": template["generation_kwargs"]["until"],  # type: ignore[index]
            "max_gen_toks": template["generation_kwargs"]["max_gen_toks"],  # type: ignore[index]
        }
    return out


def render(lang: str) -> list[dict[str, object]]:
    folder = FIXTURE / lang
    manager = TaskManager()
    rows = []
    test = [json.loads(x) for x in (folder / "test.jsonl").read_text("utf-8").splitlines()]
    for subject in sorted({r["category"] for r in test}):
        name = f"mmlu_prox_{lang}_{subject.replace(' ', '_')}"
        overrides = {
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {
                "data_files": {s: str(folder / f"{s}.jsonl") for s in ("test", "validation")}
            },
        }
        # the registered task (its YAML, utils and description) reading the fixture's files
        entry = manager.task_index[name]
        task = manager._factory.build(entry, overrides=overrides, registry=manager.task_index)
        for doc in task.test_docs():
            text = task.fewshot_context(doc, SHOTS)
            rows.append({"question_id": doc["question_id"], "prompt": text})
    return sorted(rows, key=lambda r: r["question_id"])


def main() -> None:
    WORDINGS.parent.mkdir(parents=True, exist_ok=True)
    WORDINGS.write_text(
        json.dumps(wordings(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    for lang in sorted(p.name for p in FIXTURE.iterdir() if p.is_dir()):
        rows = render(lang)
        lines = [json.dumps(r, ensure_ascii=False) for r in rows]
        GOLDEN.mkdir(exist_ok=True)
        data = ("\n".join(lines) + "\n").encode("utf-8")
        (GOLDEN / f"{lang}.jsonl.gz").write_bytes(gzip.compress(data, mtime=0))
        print(f"{lang}: {len(rows)} prompts rendered by lm-eval {lm_eval.__version__}")


if __name__ == "__main__":
    sys.exit(main())
