"""Fitting prompts into a context (run/fitting.py), with a counter of one token per four
characters: the automatic context holds every prompt whole, a given one drops exemplars
as the official script does, and what would reach past the trained context is said."""

from __future__ import annotations

from typing import Any

import pytest

from mmlupro_local.datasets.dataset import Dataset
from mmlupro_local.engine import CTX_STEP
from mmlupro_local.task.fitting import prepare_letter_prompts, prepare_prompts
from mmlupro_local.task.prompt import Prompt, PromptError, PromptSettings


def count(text: str) -> int:
    return len(text) // 4


def fit(dataset: Dataset, **given: Any) -> tuple[dict[int, Prompt], int, list[str]]:
    todo = [q for q in dataset.test if q.category in ("law", "history")][:3]
    warnings: list[str] = []
    arguments: dict[str, Any] = {
        "max_tokens": 100,
        "ctx": None,
        "render": None,
        "trained_ctx": None,
        **given,
    }
    prompts, n_ctx = prepare_prompts(
        todo,
        dataset.validation,
        PromptSettings(),
        count_tokens=count,
        warnings=warnings,
        **arguments,
    )
    return prompts, n_ctx, warnings


def test_the_automatic_context_holds_the_longest_prompt_and_the_budget(embedded: Dataset) -> None:
    prompts, n_ctx, warnings = fit(embedded)
    longest = max(count(p.text) for p in prompts.values())
    assert n_ctx % CTX_STEP == 0 and n_ctx - CTX_STEP < longest + 100 <= n_ctx
    assert all(p.shots == 5 for p in prompts.values()) and warnings == []


def test_a_given_context_drops_exemplars_and_says_so(embedded: Dataset) -> None:
    prompts, n_ctx, warnings = fit(embedded, ctx=1000)
    assert n_ctx == 1024  # rounded up to llama.cpp's step
    assert all(count(p.text) < 1024 - 100 for p in prompts.values())
    dropped = sum(p.shots < 5 for p in prompts.values())
    assert (
        dropped
        and warnings[0] == "--ctx 1000 rounded up to 1024 (llama.cpp needs a multiple of 256)"
    )
    assert (
        warnings[1]
        == f"{dropped} prompts dropped exemplars to fit --ctx 1024 with --max-tokens 100"
    )


def test_a_reach_past_the_trained_context_is_a_warning(embedded: Dataset) -> None:
    prompts, _, warnings = fit(embedded, trained_ctx=200)
    reach = max(count(p.text) for p in prompts.values()) + 100
    assert warnings == [
        f"a question can reach position {reach} (its prompt and the --max-tokens "
        "100 budget), beyond the 200 tokens the model was trained on; answers "
        "may degrade"
    ]


def test_letter_prompts_are_never_cut(embedded: Dataset) -> None:
    todo = embedded.test[:2]
    prompts, n_ctx = prepare_letter_prompts(
        todo,
        embedded.validation,
        PromptSettings(),
        ctx=None,
        render=None,
        trained_ctx=None,
        count_tokens=count,
        warnings=[],
    )
    assert n_ctx % CTX_STEP == 0 and len(prompts) == 2
    with pytest.raises(PromptError, match="raise --ctx or leave it out"):
        prepare_letter_prompts(
            todo,
            embedded.validation,
            PromptSettings(),
            ctx=256,
            render=None,
            trained_ctx=None,
            count_tokens=count,
            warnings=[],
        )
