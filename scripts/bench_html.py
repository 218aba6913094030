"""How large the HTML report of full runs is, and what making it costs (issue 26, case
24): two results files of all 12,032 test questions, each answer a real released
response to that question (../shared/data/official-outputs; a question no released
response covers takes one of its category's), then `report A --html` and `report A B
--html` (with the comparison) in processes of their own.

Prints each page's size, the time and the peak memory of making it, and how many
responses it holds.

    python scripts/bench_html.py
"""

from __future__ import annotations

import gzip
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from mmlupro_local.datasets.dataset import load_dataset  # noqa: E402
from mmlupro_local.task.extract import extract_answer  # noqa: E402

RESPONSES = ROOT.parent / "shared" / "data" / "official-outputs" / "responses.jsonl.gz"
HEADER = ROOT / "tests" / "data" / "schema1-release-2006866.jsonl"


LOOPING = 8000  # characters: a small model repeating itself to the 2,048-token budget


def write_run(path: Path, pick: int, looping: bool) -> None:
    """A finished full run whose answers are the `pick`-th released response to each
    question; `looping`: each repeated to LOOPING characters."""
    with gzip.open(RESPONSES, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    by_question: dict[int, list[str]] = {}
    by_category: dict[str, list[str]] = {}
    for row in rows:
        by_question.setdefault(row["question_id"], []).append(row["text"])
        by_category.setdefault(row["category"], []).append(row["text"])
    chooser = random.Random(pick)
    header = json.loads(HEADER.read_text().splitlines()[0])
    header["sample"] = {"seed": 0, "per_category": None, "fraction": None, "categories": [],
                        "description": "all test questions", "size": 12032}  # fmt: skip
    lines = [json.dumps(header)]
    for q in load_dataset().test:
        texts = by_question.get(q.question_id) or [chooser.choice(by_category[q.category])]
        text = texts[min(pick, len(texts) - 1)]
        if looping:
            text = (text * (LOOPING // max(len(text), 1) + 1))[:LOOPING]
        got = extract_answer(text, strip_thinking=True)
        letters = "ABCDEFGHIJ"[: len(q.options)]
        guess = None if got.letter else chooser.choice(letters)
        lines.append(json.dumps({
            "type": "result", "question_id": q.question_id, "category": q.category,
            "answer": q.answer, "pred": got.letter, "level": got.level,
            "correct": got.letter == q.answer, "guess": guess, "guess_correct": guess == q.answer,
            "n_options": len(q.options), "shots": 5, "response": text, "thinking_chars": 0,
            "prompt_tokens": 2000, "decoded_prompt_tokens": 300, "generated_tokens": len(text) // 4,
            "seconds": 1.0, "decode_seconds": 0.9, "stop_reason": "eos", "guessed_tokens": 0,
        }))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


MEASURE = """
import sys, time
from mmlupro_local.cli import main
from mmlupro_local.studies.bench import peak_memory_mib
began = time.perf_counter()
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print(f"{time.perf_counter() - began:.2f} {peak_memory_mib():.0f}", file=sys.stderr)
"""


def measure(*args: str) -> tuple[float, float]:
    done = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    seconds, peak = done.stderr.strip().splitlines()[-1].split()
    return float(seconds), float(peak)


def main() -> None:
    for looping in (False, True):
        bench(looping)


def bench(looping: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-html-") as folder:
        a, b = Path(folder) / "a.jsonl", Path(folder) / "b.jsonl"
        write_run(a, 0, looping)
        write_run(b, 1, looping)
        size = sum(len(json.loads(line).get("response", "")) for line in a.open())
        kind = f"every answer {LOOPING:,} characters" if looping else "the released responses"
        print(
            f"\n{kind}: results files {a.stat().st_size / 2**20:.1f} MB and "
            f"{b.stat().st_size / 2**20:.1f} MB; a run's responses {size / 2**20:.1f} M characters"
        )
        print(f"{'page':<22} {'size':>9} {'seconds':>8} {'peak memory':>12}")
        for name, files in (("one run", [a]), ("two, with comparison", [a, b])):
            page = Path(folder) / "page.html"
            seconds, peak = measure("report", *map(str, files), "--html", str(page))
            text = page.read_text()
            flips = len(re.findall(r"<tr data-flip", text))
            print(
                f"{name:<22} {page.stat().st_size / 2**20:>7.1f} MB {seconds:>8.1f} "
                f"{peak:>9.0f} MB" + (f"  ({flips} flips listed)" if len(files) > 1 else "")
            )


if __name__ == "__main__":
    main()
