"""The progress bar's rates."""

from __future__ import annotations

from mmlupro_local.engine import Generation


def test_the_progress_bar_shows_generation_speed_as_generation_speed() -> None:
    """Issue 13, case 19."""
    from mmlupro_local.run.progress import Speed

    speed = Speed()
    # 40 prompt tokens read in 0.5 s, then 20 tokens generated in 0.5 s of decoding,
    # the question taking 2 s in all
    speed.add(Generation("x", 100, 40, 20, 2.0, 1.0, "eos", prompt_seconds=0.5))
    text = str(speed)
    assert "gen 40.0 tok/s" in text and "prompt 80 tok/s" in text
