"""Canonical decode shapes: every llama_decode call laid out so that a row's result does
not depend on what else is in the call, and so a question's tokens come out the same
whether it is decoded alone, beside other questions, with prompt-lookup guesses, after a
cached prefix, or resumed.

Why it holds on the CPU (ggml-cpu as vendored in llama-cpp-python 0.3.36), read from the
kernels and checked bit for bit (tests/engine/test_exact.py; its cost: `make bench-exact`):

- Each sequence has a KV stream of its own (`kv_unified` off). Flash attention adds a
  row's visible cells in cell order (online softmax, an f16 accumulator), so the order
  of the cells must be the order of the positions; in a shared cache a freed cell is
  reused by whichever sequence comes next, and that order changes with the schedule.
  In a stream of its own a sequence's cells are always 0..n in position order: a prefix
  copied from the template stream keeps its cells, and what is removed is always the
  top (rejected guesses, padding).
- Flash attention has three paths: a lone query row over 512+ cells splits the cells
  among threads (another order of sums); 64+ query rows per stream take the tiled
  kernel; anything between goes one row at a time over the cells (ops.cpp,
  ggml_compute_forward_flash_attn_ext_f16). So a call has at least 2 rows, and a stream
  at most MAX_STREAM_ROWS.
- Matrix products: llamafile's sgemm (Q8_0, Q5_0, Q4_0, F16...) takes 2 rows or more and
  vec_dot one; each computes an element in one fixed order whatever the tile, so at
  least 2 rows (and 2 output rows, for the output projection) keep one path. The tiled
  K-quant kernels switch at 8 rows and the repacked Q4_0/Q4_K/IQ4_NL kernels take rows
  in blocks of 4 and the remainder another way: both are turned off (GGML_CPU_TILED_MM=0,
  no repacked weights), leaving vec_dot, which computes each element on its own.

llama.cpp splits a call over several streams into equal shares per stream (split_equal)
and only over consecutive streams; so a generating call is either one row from each of a
run of consecutive streams (the next token of each question), or rows of a single stream
(lookup guesses, forced tokens). Padding rows continue a stream's own positions past its
real rows (nothing real attends to a later position) and are removed right after the call.

Prompts are read another way (`read_calls`): a prompt part (the category prefix from
position 0, a question's own text from the prefix's end) is read alone, in chunks of
PROMPT_ROWS counted from the part's start. Such a call is the same call in every mode (one
stream, the same rows, over the same cells), so whatever kernels its size takes it gives
the same result, and it may take the fast ones: flash attention's tiled path and sgemm over
many rows (2 threads, 1,300 tokens: SmolLM2 299 tokens/s at 256 rows, 204 at 48; Qwen-0.5B
193 and 141; 512 rows no faster).

Metal and CUDA pick kernels by other thresholds (Metal's matrix-vector kernels for 1,
2-8 and more rows, its vector flash attention for few query rows): the same layout is
used there but no test has shown it exact, so the rule says so (`exact`), and results
made there are compared with their noise floor as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mmlupro_local.engine import round_ctx
from mmlupro_local.engine.mode import Backend

Entry = tuple[int, int, int, bool]  # token, position, sequence, wants logits
MAX_STREAM_ROWS = 48  # below flash attention's tiled path (64 query rows per stream)
PROMPT_ROWS = 256  # a prompt chunk: as fast here as 512 rows, with half the compute buffer
# what the rule needs of ggml, set before it first reads it (once per process)
GGML_ENV = {"GGML_CPU_TILED_MM": "0"}


@dataclass(frozen=True)
class ShapeRule:
    name: str  # recorded in every results file's identity and the prefix cache's keys
    exact: bool  # shown to give every row the same result in every call of the rule
    min_rows: int = 2
    min_outputs: int = 2
    max_stream_rows: int = MAX_STREAM_ROWS
    prompt_rows: int = PROMPT_ROWS
    repack: bool = False  # whether llama.cpp may repack weights for its CPU kernels

    def stream_cells(self, reach: int) -> int:
        """The cells of one question's KV stream: what it may reach, and a call's padding."""
        return round_ctx(reach + self.max_stream_rows)

    def kv_cells(self, reach: int, parallel: int) -> int:
        """The KV cells of a context for `parallel` questions and the template."""
        return streams(parallel) * self.stream_cells(reach)

    def outputs(self, streams: int) -> int:
        """The most rows one call asks logits of: a row per stream, or one stream's most."""
        return max(streams, self.max_stream_rows, self.min_rows)

    def capacity(self, streams: int) -> int:
        """The most rows one call can have: the outputs' most, or a prompt chunk."""
        return max(self.outputs(streams), self.prompt_rows)


def streams(parallel: int) -> int:
    """KV streams for `parallel` questions at once: one each, and one for the category
    prefix they copy (one question at a time keeps it in its own)."""
    return parallel + 1 if parallel > 1 else 1


CPU_RULE = ShapeRule("cpu-streams-2", exact=True)
CPU_NO_FLASH_RULE = ShapeRule("cpu-streams-2-no-flash-attn", exact=False)
# the CPU layout, repacked weights allowed; not verified on a GPU, so not claimed exact
GPU_RULE = ShapeRule("gpu-streams-2", exact=False, repack=True)


def rule_for(backend: Backend, flash_attn: bool | None = True) -> ShapeRule:
    """The rule for a backend; without flash attention (shown exact only with it) the
    CPU layout is kept but not claimed exact."""
    if backend != "cpu":
        return GPU_RULE
    return CPU_RULE if flash_attn is True else CPU_NO_FLASH_RULE


RULES = (CPU_RULE, CPU_NO_FLASH_RULE, GPU_RULE)


def exact_rule(name: str) -> bool:
    """Whether the rule of this name was shown exact (a name from a results file)."""
    return any(rule.exact for rule in RULES if rule.name == name)


def known_rule(name: str) -> bool:
    """Whether this engine decodes by the rule of this name (not an earlier release's)."""
    return any(rule.name == name for rule in RULES)


@dataclass(frozen=True)
class Call:
    """One llama_decode call: its rows, the entry each real row is, and where each
    stream's padding starts (removed after the call)."""

    rows: list[Entry]
    entries: list[int]  # for each row, the index of the entry it is; -1 for padding
    padding: dict[int, int]


def plan_calls(entries: Sequence[Entry], rule: ShapeRule) -> list[Call]:
    """The canonical calls that decode `entries` (each sequence's in position order):
    first one row of each stream in every run of at least two consecutive streams, then
    each stream's remaining rows in calls of its own."""
    by_seq: dict[int, list[int]] = {}
    for i, entry in enumerate(entries):
        by_seq.setdefault(entry[2], []).append(i)
    calls: list[Call] = []
    rest: dict[int, list[int]] = {}
    for run in _runs(sorted(by_seq)):
        if len(run) == 1:
            rest[run[0]] = by_seq[run[0]]
            continue
        calls.append(_call(entries, [by_seq[s][0] for s in run], rule))
        rest.update({s: by_seq[s][1:] for s in run if len(by_seq[s]) > 1})
    for seq in sorted(rest):
        mine = rest[seq]
        for start in range(0, len(mine), rule.max_stream_rows):
            calls.append(_call(entries, mine[start : start + rule.max_stream_rows], rule))
    return calls


def read_calls(entries: Sequence[Entry], rule: ShapeRule) -> list[Call]:
    """The calls that read a prompt part (one sequence, consecutive positions from the
    part's start): chunks of the rule's prompt rows, each as it is, in every mode."""
    if len({entry[2] for entry in entries}) > 1 or any(e[3] for e in entries[:-1]):
        raise ValueError("a prompt part is one sequence's, with logits of its last row only")
    step = rule.prompt_rows
    return [
        Call(list(entries[i : i + step]), list(range(i, min(i + step, len(entries)))), {})
        for i in range(0, len(entries), step)
    ]


def _runs(seqs: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and runs[-1][-1] == seq - 1:
            runs[-1].append(seq)
        else:
            runs.append([seq])
    return runs


def _call(entries: Sequence[Entry], chosen: list[int], rule: ShapeRule) -> Call:
    """A call of the chosen entries, padded to the rule's least rows and outputs (the
    padding on the last stream, past its last row)."""
    rows = [entries[i] for i in chosen]
    index = list(chosen)
    padding: dict[int, int] = {}
    token, pos, seq, _ = rows[-1]
    missing = rule.min_rows - len(rows)
    if missing > 0:
        padding[seq] = pos + 1
        rows += [(token, pos + 1 + i, seq, False) for i in range(missing)]
        index += [-1] * missing
    outputs = sum(row[3] for row in rows)
    if 0 < outputs < rule.min_outputs:  # the output projection takes its path by rows
        for i, row in enumerate(rows):
            if outputs < rule.min_outputs and not row[3]:
                rows[i] = (*row[:3], True)
                outputs += 1
    return Call(rows, index, padding)
