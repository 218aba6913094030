"""Turning a generation into a result record: extraction, strict and guessed scoring;
or, for scored choices (--method logprob), the choice of highest log-probability."""

from __future__ import annotations

from mmlupro_local.datasets.questions import Question
from mmlupro_local.engine import Generation
from mmlupro_local.results.records import ResultRecord
from mmlupro_local.task.extract import extract_answer, official_guess
from mmlupro_local.task.prompt import Prompt
from mmlupro_local.task.wording import OFFICIAL, Wording


def result_record(
    question: Question,
    prompt: Prompt,
    generation: Generation,
    *,
    seed: int,
    extract_mode: str,
    strip_thinking: bool,
    wording: Wording = OFFICIAL,
    thinking_tokens: int = 0,
    think_cut: bool = False,
) -> ResultRecord:
    n_options = len(question.choices)
    if generation.choice_logprobs:
        return _scored_record(question, prompt, generation)
    extraction = extract_answer(
        generation.text, mode=extract_mode, strip_thinking=strip_thinking, wording=wording
    )
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
        prompt_seconds=round(generation.prompt_seconds, 4),
        stop_reason=generation.stop_reason,
        guessed_tokens=generation.guessed_tokens,
        reasoning=generation.reasoning,
        thinking_tokens=thinking_tokens,
        think_cut=think_cut,
    )


def _scored_record(question: Question, prompt: Prompt, generation: Generation) -> ResultRecord:
    # keyed by letter: the continuations scored may carry the delimiter (" A")
    letters = (choice.strip() for choice in prompt.choices)
    scores = dict(zip(letters, generation.choice_logprobs, strict=True))
    pred = max(scores, key=scores.__getitem__)  # the first of equal scores, as argmax does
    return ResultRecord(
        question_id=question.question_id,
        category=question.category,
        answer=question.answer,
        pred=pred,
        level=0,
        correct=pred == question.answer,
        guess=None,
        guess_correct=False,
        n_options=len(prompt.choices),  # the "N/A" padding is scored too
        shots=prompt.shots,
        response="",
        prompt_tokens=generation.prompt_tokens,
        decoded_prompt_tokens=generation.decoded_prompt_tokens,
        seconds=round(generation.seconds, 4),
        decode_seconds=round(generation.decode_seconds, 4),
        prompt_seconds=round(generation.prompt_seconds, 4),
        stop_reason=generation.stop_reason,
        option_logprobs=scores,
    )
