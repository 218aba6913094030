from __future__ import annotations

from mmlupro_local.task.settings import FORCED_ANSWER, AnswerSettings
from mmlupro_local.task.stopping import StopWatcher


def feed_all(watcher: StopWatcher, pieces: list[str]) -> str | None:
    for piece in pieces:
        reason = watcher.feed(piece)
        if reason:
            return reason
    return None


def test_stop_string_split_across_pieces_is_cut() -> None:
    watcher = StopWatcher(AnswerSettings(early_stop=False))
    assert feed_all(watcher, ["so it is B.\n\nQues", "tion: next"]) == "stop"
    assert watcher.text == "so it is B.\n\n"


def test_early_stop_fires_once_level1_matches() -> None:
    watcher = StopWatcher(AnswerSettings())
    assert feed_all(watcher, ["Thus the ans", "wer is", " (", "C", ")."]) == "early"
    assert watcher.text == "Thus the answer is (C"


def test_no_early_stop_in_last_mode_or_when_disabled() -> None:
    for settings in (AnswerSettings(extract_mode="last"), AnswerSettings(early_stop=False)):
        watcher = StopWatcher(settings)
        assert feed_all(watcher, ["the answer is (C). ", "maybe D"]) is None


def test_nothing_fires_inside_a_think_block() -> None:
    watcher = StopWatcher(AnswerSettings())
    pieces = ["<think>", "the answer is (A)? Question: is it", "</think>", " The answer is (B)"]
    assert feed_all(watcher, pieces) == "early"
    assert watcher.text.endswith("The answer is (B)")


def test_prompt_opened_think_block() -> None:
    watcher = StopWatcher(AnswerSettings(), started_thinking=True)
    assert feed_all(watcher, ["the answer is (A)", " hmm</think>", "the answer is (D)"]) == "early"
    assert watcher.text.endswith("(D)")


def test_keep_thinking_lets_the_stop_string_fire() -> None:
    watcher = StopWatcher(AnswerSettings(strip_thinking=False, early_stop=False))
    assert feed_all(watcher, ["<think>Question:"]) == "stop"


def test_thinking_is_counted_per_piece_and_a_budget_forces_the_answer_once() -> None:
    watcher = StopWatcher(AnswerSettings(think_budget=3))
    assert feed_all(watcher, ["Hmm", " <think>", " one", " two"]) is None
    assert watcher.thinking_tokens == 3 and watcher.think_cut
    assert watcher.take_forced() == FORCED_ANSWER and watcher.take_forced() == ""
    # the forced text closes the block: what follows is the answer, found and stopped at
    assert feed_all(watcher, [FORCED_ANSWER, "D", ")"]) == "early"
    assert watcher.thinking_tokens == 3 and watcher.text.endswith("The answer is (D")


def test_a_block_the_prompt_opened_counts_from_the_first_piece() -> None:
    watcher = StopWatcher(AnswerSettings(think_budget=0), started_thinking=True)
    feed_all(watcher, ["a", "b", "</th", "ink>", " The answer is (A)"])
    assert watcher.thinking_tokens == 3 and not watcher.think_cut  # "</th" still inside
    assert watcher.take_forced() == ""


def test_a_closed_block_is_not_cut_and_tags_split_across_pieces_are_seen() -> None:
    watcher = StopWatcher(AnswerSettings(think_budget=4))
    feed_all(watcher, ["<th", "ink>", "x", "</think>", "a", "b", "c", "d", "e"])
    assert watcher.thinking_tokens == 2 and not watcher.think_cut
