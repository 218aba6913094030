"""Turning a generation into a result record: extraction, strict and guessed scoring."""

from __future__ import annotations

from mmlupro_local.datasets.questions import Question
from mmlupro_local.engine import Generation
from mmlupro_local.results.records import ResultRecord
from mmlupro_local.task.extract import extract_answer, official_guess
from mmlupro_local.task.prompt import Prompt


def result_record(
    question: Question,
    prompt: Prompt,
    generation: Generation,
    *,
    seed: int,
    extract_mode: str,
    strip_thinking: bool,
) -> ResultRecord:
    extraction = extract_answer(generation.text, mode=extract_mode, strip_thinking=strip_thinking)
    n_options = len(question.choices)
    guess = None
    if extraction.letter is None:
        guess = official_guess(question.question_id, n_options, seed)
    return ResultRecord(
        question_id=question.question_id,
        category=question.category,
        answer=question.answer,
        pred=extraction.letter,
        level=extraction.level,
        correct=extraction.letter == question.answer,
        guess=guess,
        guess_correct=guess is not None and guess == question.answer,
        n_options=n_options,
        shots=prompt.shots,
        response=generation.text,
        # a separate reasoning field is a think block the extraction never saw
        thinking_chars=extraction.thinking_chars + len(generation.reasoning),
        prompt_tokens=generation.prompt_tokens,
        decoded_prompt_tokens=generation.decoded_prompt_tokens,
        generated_tokens=generation.generated_tokens,
        seconds=round(generation.seconds, 4),
        decode_seconds=round(generation.decode_seconds, 4),
        stop_reason=generation.stop_reason,
        guessed_tokens=generation.guessed_tokens,
        reasoning=generation.reasoning,
    )
