"""Canonical decode shapes on the real models (engine.shapes): a question's logits are
bit-identical decoded alone, one token per call, and among other questions in random
schedules (other streams, prompt chunks of any size, rows that ask for logits or not,
lookup guesses rejected and removed). SmolLM2 is Q4_1 with a Q8_0 output; Qwen2.5-Coder
0.5B is Q5_0, Q8_0, Q4_K and Q6_K: between them llamafile's sgemm, vec_dot and flash
attention on every path the rule steers."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mmlupro_local.engine import EngineSettings
from mmlupro_local.engine.handles import LlamaContext, LlamaModel
from mmlupro_local.engine.shapes import CPU_RULE, ShapeRule

pytestmark = pytest.mark.e2e
TEXT = (Path(__file__).resolve().parents[2] / "README.md").read_text()[:12000]
STEPS = 6  # greedy steps after the text


def open_model(path: Path) -> LlamaModel:
    return LlamaModel(path, 0, architecture="", bos_text="", rule=CPU_RULE)


def context(model: LlamaModel, streams: int, rule: ShapeRule = CPU_RULE) -> LlamaContext:
    settings = EngineSettings(threads=2, n_ctx=rule.stream_cells(1024))
    return LlamaContext(model, settings, streams, rule)


def texts(model: LlamaModel) -> list[list[int]]:
    tokens = model.tokenize(TEXT)
    return [tokens[:500], tokens[500:700], tokens[700:760], tokens[800:1100]]


def reference(model: LlamaModel, rule: ShapeRule = CPU_RULE) -> list[np.ndarray]:
    """Stream 0 alone, one token per call, every call padded by the rule."""
    ctx = context(model, 1, rule)
    text = texts(model)[0]
    out = []
    for pos, token in enumerate(text):
        ctx.decode([(token, pos, 0, pos == len(text) - 1)], keep_logits=True)
    out.append(ctx.logits(0))
    pos = len(text)
    for _ in range(STEPS):
        ctx.decode([(int(np.argmax(out[-1])), pos, 0, True)], keep_logits=True)
        out.append(ctx.logits(0))
        pos += 1
    ctx.close()
    return out


def scheduled(model: LlamaModel, seed: int) -> list[np.ndarray]:
    """Stream `first` holds text 0; other streams their own texts; every step takes a
    random chunk of each prompt or one token (with random rejected guesses) of each
    answer, some rows asking for logits they do not need."""
    rng = random.Random(seed)
    streams = 1 + seed % 4
    first = seed % streams
    ctx = context(model, streams)
    all_texts = texts(model)
    pending = {s: list(all_texts[(s - first) % 4]) for s in range(streams)}
    pos = dict.fromkeys(range(streams), 0)
    last: dict[int, int] = {}
    out: list[np.ndarray] = []
    steps = dict.fromkeys(range(streams), 0)
    while steps[first] <= STEPS:
        entries, guesses = [], {}
        for s in range(streams):
            if pending[s]:
                k = rng.choice([1, 2, 3, 7, 30, 48, 100])
                chunk, pending[s] = pending[s][:k], pending[s][k:]
                for j, token in enumerate(chunk):
                    done = not pending[s] and j == len(chunk) - 1
                    entries.append((token, pos[s] + j, s, done or rng.random() < 0.1))
                pos[s] += len(chunk)
            elif rng.random() < 0.8:
                entries.append((last[s], pos[s], s, True))
                wrong = rng.choice([0, 0, 1, 2, 5])  # guesses no model would make
                guesses[s] = wrong
                entries += [(7 + g, pos[s] + 1 + g, s, True) for g in range(wrong)]
                pos[s] += 1
        if not entries:
            continue
        ctx.decode(entries, keep_logits=True)
        for i, (_, p, s, wants) in enumerate(entries):
            if wants and p == pos[s] - 1 and not pending[s]:
                logits = ctx.logits(i)
                last[s] = int(np.argmax(logits))
                steps[s] += 1
                if s == first:
                    out.append(logits)
        for s, wrong in guesses.items():
            if wrong:
                ctx.remove(s, pos[s])  # rejected: dropped from the top of the stream
    ctx.close()
    return out


@pytest.fixture(params=["smollm2", "qwen05"])
def loaded(request: pytest.FixtureRequest) -> Iterator[LlamaModel]:
    """Each real model, opened under the CPU rule."""
    model = open_model(request.getfixturevalue(request.param))
    try:
        yield model
    finally:
        model.close()


def test_a_questions_logits_do_not_depend_on_the_schedule(loaded: LlamaModel) -> None:
    expected = reference(loaded)
    for seed in range(1, 5):
        got = scheduled(loaded, seed)
        assert len(got) == len(expected)
        for step, (a, b) in enumerate(zip(expected, got, strict=True)):
            assert np.array_equal(a, b), f"seed {seed}, step {step}: {np.abs(a - b).max()}"


def test_without_the_rules_least_rows_a_lone_row_takes_other_kernels(qwen05: Path) -> None:
    """The check above can fail: let a call have one row (vec_dot, not sgemm, for Q5_0;
    the split attention path) and the same question's logits differ."""
    loose = replace(CPU_RULE, name="loose", min_rows=1, min_outputs=1)
    model = open_model(qwen05)
    try:
        alone, canonical = reference(model, loose), reference(model)
        assert any(not np.array_equal(a, b) for a, b in zip(alone, canonical, strict=True))
    finally:
        model.close()


def read_then_generate(
    model: LlamaModel, streams: int, seq: int, template: int
) -> list[np.ndarray]:
    """Text 0 read as a prefix (into `template`, copied to `seq`) and a suffix in prompt
    chunks, then greedy steps; every other stream reads its own text first and then
    generates beside it, so its calls share nothing with the reference's but the rule."""
    ctx = context(model, streams)
    all_texts = texts(model)
    prefix, suffix = all_texts[0][:300], all_texts[0][300:]
    others = [s for s in range(streams) if s not in (seq, template)]
    for k, s in enumerate(others):
        ctx.read([(t, p, s, False) for p, t in enumerate(all_texts[1 + k % 3])])
    ctx.read([(t, p, template, False) for p, t in enumerate(prefix)])
    if seq != template:
        ctx.copy(template, seq)
    n = len(prefix)
    ctx.read(
        [(t, n + i, seq, i == len(suffix) - 1) for i, t in enumerate(suffix)], keep_logits=True
    )
    out = [ctx.logits(len(suffix) - 1)]
    pos = {s: len(all_texts[1 + k % 3]) for k, s in enumerate(others)}
    pos[seq] = len(all_texts[0])
    for _ in range(STEPS):
        entries = [
            (int(np.argmax(out[-1])) if s == seq else 11, pos[s], s, True) for s in sorted(pos)
        ]
        ctx.decode(entries, keep_logits=True)
        out.append(ctx.logits(sorted(pos).index(seq)))
        pos = {s: p + 1 for s, p in pos.items()}
    ctx.close()
    return out


def test_a_prompt_read_in_chunks_is_the_same_in_any_context(loaded: LlamaModel) -> None:
    """Prompt chunks take whatever kernels their size picks (256 rows: tiled flash
    attention, sgemm), but the same chunks in every context: one question alone in a
    one-stream context, or beside three others with the prefix copied from a template."""
    alone = read_then_generate(loaded, 1, 0, 0)
    among = read_then_generate(loaded, 5, 1, 4)
    for step, (a, b) in enumerate(zip(alone, among, strict=True)):
        assert np.array_equal(a, b), f"step {step}: {np.abs(a - b).max()}"
