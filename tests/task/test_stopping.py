from __future__ import annotations

from mmlupro_local.task.settings import AnswerSettings
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
