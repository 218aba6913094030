"""The `Question` record and the validation of one raw MMLU-Pro row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

LETTERS = "ABCDEFGHIJ"
PADDING_OPTION = "N/A"  # the official scripts drop options that are exactly this
Split = Literal["test", "validation"]
SPLITS: tuple[Split, ...] = get_args(Split)


@dataclass(frozen=True)
class Question:
    split: str
    question_id: int
    question: str
    options: tuple[str, ...]
    answer: str
    answer_index: int
    cot_content: str
    category: str
    src: str

    @property
    def choices(self) -> tuple[str, ...]:
        """The options a model sees: the raw ones without "N/A" padding."""
        return tuple(o for o in self.options if o != PADDING_OPTION)

    def as_row(self) -> dict[str, Any]:
        """The canonical row, keys in a fixed order (the content hash depends on it)."""
        return {
            "split": self.split,
            "question_id": self.question_id,
            "question": self.question,
            "options": list(self.options),
            "answer": self.answer,
            "answer_index": self.answer_index,
            "cot_content": self.cot_content,
            "category": self.category,
            "src": self.src,
        }


class RowError(ValueError):
    """One row is malformed; `field` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field '{field}': {problem}")
        self.field = field


PROX_OPTIONS = tuple(f"option_{i}" for i in range(len(LETTERS)))


def prox_options(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """An MMLU-ProX row (option_0 ... option_9, null past the last) with its options as
    one list, as MMLU-Pro has them; any other row unchanged."""
    if "options" in row or PROX_OPTIONS[0] not in row:
        return row
    options = [row.get(name) for name in PROX_OPTIONS]
    given = [o for o in options if o is not None]
    if options[: len(given)] != given:  # the harness letters option_i as the i-th letter
        gap = options.index(None)
        raise RowError(
            PROX_OPTIONS[gap],
            f"null before a later option: its letters would not be A-{LETTERS[len(given) - 1]}",
        )
    rest = {k: v for k, v in row.items() if k not in PROX_OPTIONS}
    return {**rest, "options": given}


def parse_row(row: Mapping[str, Any], split: str) -> Question:
    """Validate a raw row and build a Question, or raise RowError naming the field."""
    row = prox_options(row)
    if split not in SPLITS:
        raise RowError("split", f"{split!r} is not one of {', '.join(SPLITS)}")
    for name in ("question_id", "question", "options", "answer", "answer_index", "category"):
        if name not in row or row[name] is None:
            raise RowError(name, "missing")
    qid = _integer(row, "question_id")
    question = _text(row, "question")
    options = row["options"]
    if not isinstance(options, (list, tuple)) or not options:
        raise RowError("options", f"expected a non-empty list of strings, got {_show(options)}")
    if len(options) > len(LETTERS):
        raise RowError("options", f"{len(options)} options, at most {len(LETTERS)} allowed")
    if not all(isinstance(o, str) for o in options):
        raise RowError("options", "every option must be a string")
    answer = row["answer"]
    n_choices = sum(1 for o in options if o != PADDING_OPTION)
    if not isinstance(answer, str) or len(answer) != 1 or answer not in LETTERS[:n_choices]:
        raise RowError(
            "answer",
            f"{answer!r} is not a letter of the {n_choices} options (A-{LETTERS[n_choices - 1]})"
            if n_choices
            else "no options besides N/A padding",
        )
    index = _integer(row, "answer_index")
    if not 0 <= index < len(options):
        raise RowError("answer_index", f"{index} is outside the {len(options)} options")
    category = _text(row, "category").strip()
    if not category:
        raise RowError("category", "empty")
    return Question(
        split=split,
        question_id=qid,
        question=question,
        options=tuple(options),
        answer=answer,
        answer_index=index,
        cot_content=_optional_text(row, "cot_content"),
        category=category,
        src=_optional_text(row, "src"),
    )


def _integer(row: Mapping[str, Any], name: str) -> int:
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, int):
        # parquet and JSON hand back true ints; a float like 12.0 means a broken export
        raise RowError(name, f"expected an integer, got {_show(value)}")
    return value


def _text(row: Mapping[str, Any], name: str) -> str:
    value = row[name]
    if not isinstance(value, str):
        raise RowError(name, f"expected a string, got {_show(value)}")
    return value


def _optional_text(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(name, f"expected a string or null, got {_show(value)}")
    return value


def _show(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"
