"""End to end with SmolLM2-135M: --method logprob against a direct computation with
llama.cpp's own logits, and a think budget cutting a block a chat template opened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mmlupro_local.datasets.dataset import load_dataset
from mmlupro_local.engine.shapes import CPU_RULE, GGML_ENV
from mmlupro_local.task.letter_prompt import build_letter_prompt
from mmlupro_local.task.prompt import PromptSettings
from mmlupro_local.task.settings import FORCED_ANSWER

pytestmark = pytest.mark.e2e
# SmolLM2's ChatML template, its generation prompt opening a think block
THINKING_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmlupro_local", *args], capture_output=True, text=True, timeout=900
    )


def results(path: Path) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["type"] == "result"]


def direct_log_probs(
    model: Path, text: str, prefix_chars: int, letters: tuple[str, ...]
) -> dict[str, float]:
    """Each letter's log-probability after `text`, computed with llama-cpp-python's Llama
    from an empty cache and the logits of the last position read with the C API. The
    shared prefix is evaluated first, then the rest, each in calls of the engine's prompt
    chunks (engine.shapes: one sequence, 256 rows counted from the part's start, logits of
    a call's last row only), the only thing that fixes llama.cpp's kernels: other splits
    round differently (measured: 0.09 apart for question 1335 when its last 10 tokens
    formed a batch of their own)."""
    import llama_cpp
    import numpy as np

    os.environ.update(GGML_ENV)  # the engine's kernels, if nothing in this process set them
    rows = CPU_RULE.prompt_rows
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=2048, n_batch=rows, n_ubatch=rows,
                          n_threads=2, flash_attn=True, verbose=False)  # fmt: skip
    try:
        context = llm.tokenize(text.encode(), add_bos=True, special=True)
        # the prefix's tokens as far as they agree with the whole text's (a tokenizer may
        # join the prefix's last characters with the question's first)
        alone = llm.tokenize(text[:prefix_chars].encode(), add_bos=True, special=True)
        prefix = next(i for i, (a, b) in enumerate(zip(alone, context, strict=False)) if a != b)
        for part in (context[:prefix], context[prefix:]):
            llm.eval(part)  # in calls of n_batch tokens from the part's start
        row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        logits = np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).astype(np.float64)
        log_probs = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        scores = {}
        for letter in letters:
            whole = llm.tokenize((text + letter).encode(), add_bos=True, special=True)
            assert whole[: len(context)] == context and len(whole) == len(context) + 1
            scores[letter.strip()] = float(log_probs[whole[-1]])
        return scores
    finally:
        llm.close()


def test_logprob_scores_are_the_models_own_log_probabilities(smollm2: Path, tmp_path: Path) -> None:
    out = tmp_path / "lp.jsonl"
    done = cli("run", str(smollm2), "--method", "logprob", "--per-category", "1",
               "--categories", "history,law,math", "--out", str(out), "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = results(out)
    data = load_dataset()
    by_id = {q.question_id: q for q in data.test}
    for record in records:
        question = by_id[record["question_id"]]
        prompt = build_letter_prompt(question, data.validation, PromptSettings())
        direct = direct_log_probs(smollm2, prompt.text, prompt.prefix_chars, prompt.choices)
        scores = record["option_logprobs"]
        assert list(scores) == list(direct)
        assert record["pred"] == max(direct, key=direct.__getitem__)
        for letter, value in direct.items():  # the same computation, to the last bit
            assert scores[letter] == pytest.approx(value, abs=1e-9), (record["question_id"], letter)
        assert len(set(scores.values())) == len(scores)  # real, distinct scores
    # the prefix (five math shots) is decoded once; later questions decode their own part
    assert records[1]["decoded_prompt_tokens"] < records[1]["prompt_tokens"] - 500
    # a rerun reproduces the file's answers exactly, from the prefix cache
    again = tmp_path / "again.jsonl"
    assert cli("run", str(smollm2), "--method", "logprob", "--per-category", "1",
               "--categories", "history,law,math", "--out", str(again),
               "--no-progress").returncode == 0  # fmt: skip
    assert [r["option_logprobs"] for r in results(again)] == [r["option_logprobs"] for r in records]


def test_a_think_budget_closes_the_block_and_forces_the_answer(
    smollm2: Path, tmp_path: Path
) -> None:
    template = tmp_path / "thinking-chatml.jinja"
    template.write_text(THINKING_CHATML)
    runs = {}
    for parallel in ("1", "2"):
        out = tmp_path / f"p{parallel}.jsonl"
        done = cli("run", str(smollm2), "--style", "chat", "--chat-template", str(template),
                   "--think-budget", "24", "--max-tokens", "64", "--per-category", "1",
                   "--categories", "history,law", "--parallel", parallel, "--out", str(out),
                   "--no-progress")  # fmt: skip
        assert done.returncode == 0, done.stderr
        runs[parallel] = results(out)
    for record in runs["1"]:
        assert record["think_cut"] is True and record["thinking_tokens"] == 24
        thinking, answer = record["response"].split(FORCED_ANSWER)
        assert "</think>" not in thinking
        assert record["pred"] == answer[0] and record["level"] == 1
        assert record["stop_reason"] == "early"
    # the batched decoder forces the same way
    assert [(r["thinking_tokens"], r["think_cut"]) for r in runs["2"]] == [(24, True)] * 2
    assert [r["pred"] for r in runs["2"]] == [r["pred"] for r in runs["1"]]


def test_thinking_off_and_on_through_the_template_s_own_switch(
    smollm2: Path, tmp_path: Path
) -> None:
    """Issue 35 with a real model: SmolLM2 under a template with Qwen3's switch
    (tests/data/templates/switch-thinking.jinja; no thinking GGUF is at hand). Off: the
    template writes an empty block and nothing is thought; on: the block stays open and
    the budget cuts it. The two files' identities differ in the mode alone."""
    template = Path(__file__).parent / "data" / "templates" / "switch-thinking.jinja"
    base = ["run", str(smollm2), "--style", "chat", "--chat-template", str(template),
            "--per-category", "1", "--categories", "law", "--max-tokens", "48",
            "--no-progress"]  # fmt: skip
    off, on = tmp_path / "off.jsonl", tmp_path / "on.jsonl"
    done = cli(*base, "--thinking", "off", "--out", str(off))
    assert done.returncode == 0, done.stderr
    done = cli(*base, "--thinking", "on", "--think-budget", "16", "--out", str(on))
    assert done.returncode == 0, done.stderr
    headers = [json.loads(p.read_text().splitlines()[0]) for p in (off, on)]
    assert [h["identity"]["prompt"]["thinking"] for h in headers] == ["off", "on"]
    assert [h["model"]["chat_template_variables"] for h in headers] == [
        {"enable_thinking": False},
        {"enable_thinking": True},
    ]
    (quiet,), (thought,) = results(off), results(on)
    assert quiet.get("thinking_tokens", 0) == 0 and not quiet.get("think_cut")
    assert thought["thinking_tokens"] == 16 and thought["think_cut"] is True
    printed = [cli("prompt", str(quiet["question_id"]), "--style", "chat", "--model", str(smollm2),
                   "--chat-template", str(template), "--thinking", mode).stdout
               for mode in ("off", "on")]  # fmt: skip
    assert printed[0].endswith("<think>\n\n</think>\n\n\n") and printed[1].endswith("<think>\n\n")
