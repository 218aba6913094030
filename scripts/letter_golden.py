"""Render the letter-choice prompts (--method logprob) with lm-evaluation-harness itself,
into the golden file the tests compare ours with (tests/data/letter-prompts.json.gz):
its `leaderboard_mmlu_pro` task on the dataset's own parquet files, for a few questions,
in completion form (the context and the continuations it scores) and in chat form
(`--apply_chat_template --fewshot_as_multiturn`: the messages and the continuations).

Needs lm-eval in another environment (its dependencies are not ours), as prox_golden.py:
  .venv-lmeval/bin/python scripts/letter_golden.py DATA_DIR
where DATA_DIR holds MMLU-Pro's test-*.parquet and validation-*.parquet.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

import lm_eval
from lm_eval.tasks import TaskManager

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "letter-prompts.json.gz"
SHOTS = 5
# a question of each option count the test split has at its start, and a padded one
QUESTIONS = (70, 3544, 4784, 1335, 10413, 12000)


def _task(data: Path) -> Any:
    manager = TaskManager()
    files = {
        split: sorted(str(p) for p in data.glob(f"{split}-*.parquet"))
        for split in ("test", "validation")
    }
    overrides = {
        "dataset_path": "parquet",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": files},
    }
    entry = manager.task_index["leaderboard_mmlu_pro"]
    return manager._factory.build(entry, overrides=overrides, registry=manager.task_index)


def _keeper(messages: list[dict[str, str]]) -> Any:
    """A chat template that keeps the messages the harness gives it."""

    def keep(turns: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        messages.extend(turns)
        return "<chat>"

    return keep


def render(data: Path) -> list[dict[str, Any]]:
    task = _task(data)
    docs = {doc["question_id"]: doc for doc in task.test_docs() if doc["question_id"] in QUESTIONS}
    rows = []
    for qid in QUESTIONS:
        doc = docs[qid]
        context = task.fewshot_context(doc, SHOTS)
        requests = task.construct_requests(doc, context, metadata=("", 0, 1))
        messages: list[dict[str, str]] = []
        keep = _keeper(messages)
        chat = task.fewshot_context(
            doc, SHOTS, apply_chat_template=True, fewshot_as_multiturn=True, chat_template=keep
        )
        chat_requests = task.construct_requests(
            doc, chat, metadata=("", 0, 1), apply_chat_template=True
        )
        rows.append(
            {
                "question_id": qid,
                "completion": context,
                "completion_choices": [r.arguments[1] for r in requests],
                "chat_messages": messages,
                "chat_choices": [r.arguments[1] for r in chat_requests],
            }
        )
    return rows


def main() -> None:
    rows = render(Path(sys.argv[1]))
    payload = {"lm_eval": lm_eval.__version__, "task": "leaderboard_mmlu_pro", "rows": rows}
    data = json.dumps(payload, ensure_ascii=False, indent=0).encode("utf-8")
    GOLDEN.write_bytes(gzip.compress(data, mtime=0))
    print(f"{len(rows)} questions rendered by lm-eval {lm_eval.__version__} into {GOLDEN}")


if __name__ == "__main__":
    sys.exit(main())
