"""Fitting prompts into a context: the context size a run opens, and prompts that drop
exemplars to fit a context the user chose."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mmlupro_local.datasets.questions import Question
from mmlupro_local.engine import CTX_STEP, round_ctx
from mmlupro_local.task.letter_prompt import build_letter_prompt
from mmlupro_local.task.prompt import (
    ChatRenderer,
    Prompt,
    PromptError,
    PromptSettings,
    build_prompt,
    fit_prompt,
)
from mmlupro_local.task.wording import OFFICIAL, Wording

CHOICE_ALLOWANCE = 4  # tokens a letter choice may add to its prompt (the engine checks exactly)


class TokenCounts:
    """Prompt lengths as the model counts them, each text counted once; `many` counts a
    batch at once where the target can (a server's /tokenize, requests in parallel).
    `exact` False: a rough count (a server that cannot count), never checked against a
    context."""

    def __init__(
        self,
        one: Callable[[str], int],
        many: Callable[[Sequence[str]], list[int]] | None = None,
        *,
        exact: bool = True,
    ) -> None:
        self.one, self.bulk, self.exact = one, many, exact
        self.known: dict[str, int] = {}

    def checkable(self, text: str) -> int | None:
        """The count an engine may check a prompt against (None: not checkable)."""
        return self(text) if self.exact else None

    def __call__(self, text: str) -> int:
        if text not in self.known:
            self.known[text] = self.one(text)
        return self.known[text]

    def many(self, texts: Sequence[str]) -> list[int]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.known]
        if missing:
            found = self.bulk(missing) if self.bulk else [self.one(t) for t in missing]
            self.known.update(zip(missing, found, strict=True))
        return [self.known[t] for t in texts]


def prepare_prompts(
    todo: list[Question],
    validation: Sequence[Question],
    settings: PromptSettings,
    *,
    max_tokens: int,
    ctx: int | None,
    render: ChatRenderer | None,
    trained_ctx: int | None,
    count_tokens: Callable[[str], int],
    warnings: list[str],
    pad: bool = True,
    ctx_name: str = "",  # how warnings name the context: "--ctx N" unless given
    wording: Wording = OFFICIAL,
) -> tuple[dict[int, Prompt], int]:
    """Every prompt, fitted to the context; and the context size to open (what one
    question may reach: each question has a KV stream of its own): without `ctx`, the
    smallest that holds every prompt whole (no exemplar dropped); with it,
    prompts drop exemplars one at a time until they fit, as the official script does.
    A server's context is exact (`pad` False): llama.cpp's padding is for in-process."""
    budget = max_tokens
    prompts = {
        q.question_id: build_prompt(q, validation, settings, render_chat=render, wording=wording)
        for q in todo
    }
    many = count_tokens.many if isinstance(count_tokens, TokenCounts) else None
    texts = [p.text for p in prompts.values()]
    if many is not None:  # every prompt, in one go
        many(texts)
    counts = {qid: count_tokens(p.text) for qid, p in prompts.items()}
    if ctx is None:
        n_ctx = round_ctx(max(counts.values()) + budget)
    else:
        n_ctx = round_ctx(ctx) if pad else ctx
        if n_ctx != ctx:
            warnings.append(
                f"--ctx {ctx} rounded up to {n_ctx} (llama.cpp needs a multiple of {CTX_STEP})"
            )
        limit = n_ctx - budget
        for q in todo:
            if counts[q.question_id] >= limit:
                prompts[q.question_id] = fit_prompt(
                    q,
                    validation,
                    settings,
                    count_tokens=count_tokens,
                    limit=limit,
                    render_chat=render,
                    wording=wording,
                )
                counts[q.question_id] = count_tokens(prompts[q.question_id].text)
        cut = sum(p.shots < settings.shots for p in prompts.values())
        if cut:
            warnings.append(
                f"{cut} prompts dropped exemplars to fit {ctx_name or f'--ctx {n_ctx}'} with "
                f"--max-tokens {budget}"
            )
    # positions are per sequence: what matters is how far one question can reach, not
    # the cache that several share with --parallel
    reach = max(counts.values()) + budget
    if trained_ctx and reach > trained_ctx:
        warnings.append(
            f"a question can reach position {reach} (its prompt and the --max-tokens {budget} "
            f"budget), beyond the {trained_ctx} tokens the model was trained on; answers may degrade"
        )
    return prompts, n_ctx


def prepare_letter_prompts(
    todo: list[Question],
    validation: Sequence[Question],
    settings: PromptSettings,
    *,
    ctx: int | None,
    render: ChatRenderer | None,
    trained_ctx: int | None,
    count_tokens: Callable[[str], int],
    warnings: list[str],
    wording: Wording = OFFICIAL,
) -> tuple[dict[int, Prompt], int]:
    """The letter-choice prompts (--method logprob) and the context to open. They are
    never cut: the harness would drop their start, which no longer is the method."""
    prompts = {
        q.question_id: build_letter_prompt(
            q, validation, settings, render_chat=render, wording=wording
        )
        for q in todo
    }
    counts = {qid: count_tokens(p.text) + CHOICE_ALLOWANCE for qid, p in prompts.items()}
    longest = max(counts, key=counts.__getitem__)
    n_ctx = round_ctx(ctx or counts[longest])
    if counts[longest] > n_ctx:
        raise PromptError(
            f"question {longest} needs {counts[longest]} tokens with its answer letter, more "
            f"than --ctx {ctx}; raise --ctx or leave it out (the context then fits every prompt)"
        )
    if trained_ctx and counts[longest] > trained_ctx:
        warnings.append(
            f"question {longest}'s prompt reaches position {counts[longest]}, beyond the "
            f"{trained_ctx} tokens the model was trained on; its scores may degrade"
        )
    return prompts, n_ctx
