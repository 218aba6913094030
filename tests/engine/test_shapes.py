"""The canonical call layout (engine.shapes.plan_calls) on random batches: every call
has a shape the rule allows, every entry is decoded once, each stream in position order."""

from __future__ import annotations

import random

import pytest

from mmlupro_local.engine.handles import stream_block, with_streams
from mmlupro_local.engine.shapes import CPU_RULE, Entry, plan_calls, read_calls


def random_entries(rng: random.Random) -> list[Entry]:
    entries: list[Entry] = []
    for seq in rng.sample(range(8), rng.randint(1, 8)):
        start = rng.randint(0, 500)
        for i in range(rng.choice([1, 1, 2, 5, 47, 48, 49, 130])):
            entries.append((rng.randint(1, 999), start + i, seq, rng.random() < 0.3))
    return entries


def test_every_call_has_a_canonical_shape_and_every_entry_is_decoded_once() -> None:
    rule = CPU_RULE
    for seed in range(300):
        entries = random_entries(random.Random(seed))
        calls = plan_calls(entries, rule)
        seen: list[int] = []
        for call in calls:
            seqs = [row[2] for row in call.rows]
            assert len(call.rows) >= rule.min_rows
            if len(set(seqs)) > 1:  # one row from each of consecutive streams
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
                assert not call.padding
            else:
                assert len(call.rows) <= rule.max_stream_rows
            outputs = sum(row[3] for row in call.rows)
            assert outputs == 0 or outputs >= rule.min_outputs
            for row, entry in zip(call.rows, call.entries, strict=True):
                if entry < 0:  # padding: past the stream's real rows, removed after
                    assert call.padding[row[2]] <= row[1]
                else:
                    assert row[:3] == entries[entry][:3] and (row[3] or not entries[entry][3])
                    seen.append(entry)
        assert sorted(seen) == list(range(len(entries)))
        for seq in {e[2] for e in entries}:  # a stream's rows go in position order
            order = [entries[i][1] for i in seen if entries[i][2] == seq]
            assert order == sorted(order)


def test_a_lone_row_is_padded_and_a_run_of_streams_shares_one_call() -> None:
    (call,) = plan_calls([(5, 10, 0, True)], CPU_RULE)
    assert call.rows == [(5, 10, 0, True), (5, 11, 0, True)]
    assert call.entries == [0, -1] and call.padding == {0: 11}
    calls = plan_calls(
        [(1, 3, 2, True), (2, 9, 3, True), (3, 10, 3, True), (4, 0, 5, False)], CPU_RULE
    )
    assert [c.entries for c in calls] == [[0, 1], [2, -1], [3, -1]]


def test_a_saved_state_is_its_streams_block_and_loads_into_any_stream() -> None:
    block = b"\x05\x00\x00\x00cells"
    state = with_streams(block, 2, 4)  # as llama.cpp writes sequence 2 of 4 streams
    magic = bytes.fromhex("d83c14af")
    assert state == magic + b"\x02\x00\x00\x00\x04\x00\x00\x00" + bytes(8) + block + bytes(4)
    assert stream_block(state, 2) == block
    moved = with_streams(stream_block(state, 2), 0, 1)
    assert moved == magic + bytes(4) + b"\x01\x00\x00\x00" + block
    assert stream_block(state, 1) == b""  # another stream's cells: not this sequence's
    assert stream_block(b"\x01", 0) == b"" and stream_block(bytes(16) + block, 0) == b""


def test_a_prompt_part_is_read_in_chunks_counted_from_its_start() -> None:
    """The same part gives the same calls wherever it starts: chunks of the rule's prompt
    rows, unpadded (a last chunk of one row included), the last row's logits only."""
    rows = CPU_RULE.prompt_rows
    part: list[Entry] = [(t, 700 + t, 3, t == 2 * rows) for t in range(2 * rows + 1)]
    calls = read_calls(part, CPU_RULE)
    assert [len(c.rows) for c in calls] == [rows, rows, 1]
    assert [r for c in calls for r in c.rows] == part and not any(c.padding for c in calls)
    assert [i for c in calls for i in c.entries] == list(range(len(part)))
    with pytest.raises(ValueError, match="one sequence"):
        read_calls([(1, 0, 0, False), (2, 0, 1, True)], CPU_RULE)
    with pytest.raises(ValueError, match="last row"):
        read_calls([(1, 0, 0, True), (2, 1, 0, True)], CPU_RULE)
