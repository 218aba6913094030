"""Write the MMLU-ProX-shaped fixture of tests/data/mmlu-prox/: for Korean, German and
Arabic, the mini dataset's rows in the MMLU-ProX schema (option_0 ... option_9, null
past the last option; cot_content opening with the language's exemplar lead-in and
ending in its answer phrase, both from the harness's tables in task/data/mmlu_prox.json), each question prefixed by a short line in the language.
The rows carry no language: `dataset import DIR --lang xx` gives it.

Run: .venv/bin/python scripts/prox_fixture.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT / "sample_data" / "mmlu-pro-mini.jsonl"
OUT = ROOT / "tests" / "data" / "mmlu-prox"
ENGLISH_LEAD = "A: Let's think step by step."
WORDINGS = ROOT / "mmlupro_local" / "task" / "data" / "mmlu_prox.json"
# a line in the language before each question
LINES = {
    "ko": "다음 질문에 답하십시오.",
    "de": "Beantworten Sie die folgende Frage.",
    "ar": "أجب عن السؤال التالي.",
}


def prox_row(row: dict[str, object], lang: str) -> dict[str, object]:
    strings = json.loads(WORDINGS.read_text(encoding="utf-8"))["languages"][lang]["strings"]
    line, lead, phrase = LINES[lang], strings[4], strings[5]
    options = list(row["options"])  # type: ignore[call-overload]
    cot = str(row["cot_content"])
    if cot:
        body = re.split(r"[Tt]he answer is", cot.removeprefix(ENGLISH_LEAD))
        body = "".join(body[:-1]).rstrip() if len(body) > 1 else body[0].rstrip()
        cot = f"{lead}{body} {phrase.format(row['answer'])}."
    out: dict[str, object] = {
        "question_id": row["question_id"],
        "question": f"{line}\n{row['question']}",
    }
    out.update({f"option_{i}": options[i] if i < len(options) else None for i in range(10)})
    out.update(
        answer=row["answer"],
        answer_index=row["answer_index"],
        cot_content=cot,
        category=row["category"],
        src=row["src"],
    )
    return out


def main() -> None:
    rows = [json.loads(line) for line in MINI.read_text(encoding="utf-8").splitlines()]
    for lang in LINES:
        folder = OUT / lang
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("test", "validation"):
            lines = [
                json.dumps(prox_row(r, lang), ensure_ascii=False)
                for r in rows
                if r["split"] == split
            ]
            (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{folder}: {sum(r['split'] == 'test' for r in rows)} test rows")


if __name__ == "__main__":
    main()
