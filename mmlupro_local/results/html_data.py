"""What the HTML report's script reads: the question rows as JSON, and each run's
responses gzip-compressed and base64-encoded, unpacked by the browser only when one is
opened. A full run's responses are tens of megabytes of text; inline and escaped they
made a 51 MB page (two runs: 189 MB, flips holding both responses again)."""

from __future__ import annotations

import base64
import gzip
import io
import json
from typing import Any

from mmlupro_local.results.records import ResultRecord


def status(record: ResultRecord) -> str:
    if record.pred is None:
        return "guessed"
    return "correct" if record.correct else "wrong"


def summary(r: ResultRecord) -> str:
    if r.option_logprobs:
        return "letters scored"
    cut = ", think block cut" if r.think_cut else ""
    return f"{r.generated_tokens} tokens, {r.stop_reason}{cut}"


def response(r: ResultRecord) -> str:
    """The text, or for scored letters each letter's log-probability, highest first."""
    if r.option_logprobs:
        ranked = sorted(r.option_logprobs.items(), key=lambda item: -item[1])
        return "\n".join(f"{letter}  {value:.4f}" for letter, value in ranked)
    return r.response


def script_json(value: Any) -> str:
    """JSON that cannot end the <script> element holding it or start markup there."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def packed_responses(records: list[ResultRecord]) -> str:
    """The responses, in record order, as base64 of gzip of a JSON list, compressed as
    they are written (a full run's text is not copied whole); mtime 0: the same results
    give the same page."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as packing:
        for i, r in enumerate(records):
            packing.write(
                (("," if i else "[") + json.dumps(response(r), ensure_ascii=False)).encode()
            )
        packing.write(b"]" if records else b"[]")
    return base64.b64encode(out.getbuffer()).decode("ascii")


def unpack_responses(packed: str) -> list[str]:
    """What the browser does with `packed_responses` (for tests and tools)."""
    texts: list[str] = json.loads(gzip.decompress(base64.b64decode(packed)))
    return texts


def question_rows(runs: list[list[ResultRecord]]) -> list[list[Any]]:
    """A row per run and question: run, position in its responses, id, category,
    answer, prediction, result, guess, level, summary."""
    return [
        [
            run,
            i,
            r.question_id,
            r.category,
            r.answer,
            r.pred or "-",
            status(r),
            r.guess or "",
            r.level,
            summary(r),
        ]
        for run, records in enumerate(runs)
        for i, r in enumerate(records)
    ]
