"""One thin layer over llama.cpp's C handles, used by every decoder: the model and its
vocabulary (tokens, pieces), and a context (batch filling, llama_decode's return codes,
greedy sampling, sequence operations, sequence state save and load). Everything above
it speaks in tokens, positions and sequences, never in ctypes."""

from __future__ import annotations

import ctypes
import os
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llama_cpp as L

# an abort inside llama.cpp prints a gdb backtrace at the user unless told not to; the
# message before it says what went wrong (issue 26, case 11)
os.environ.setdefault("GGML_NO_BACKTRACE", "1")

from mmlupro_local.engine import EngineError, EngineSettings, aborting, llamalog
from mmlupro_local.engine.mode import Backend
from mmlupro_local.engine.shapes import GGML_ENV, Call, Entry, ShapeRule, plan_calls, read_calls
from mmlupro_local.model.hardware import apple_silicon

os.environ.update(GGML_ENV)  # read by ggml once, at its first matrix product

_KV_TYPES = {"f16": L.GGML_TYPE_F16, "q8_0": L.GGML_TYPE_Q8_0, "q4_0": L.GGML_TYPE_Q4_0}


class LlamaModel:
    """The weights and the vocabulary."""

    def __init__(
        self,
        path: Path,
        gpu_layers: int,
        *,
        architecture: str,
        bos_text: str,
        rule: ShapeRule,
    ) -> None:
        llamalog.install()
        L.llama_backend_init()
        params = L.llama_model_default_params()
        params.n_gpu_layers = gpu_layers if gpu_layers >= 0 else 999
        params.use_extra_bufts = rule.repack  # repacked kernels take rows in blocks of 4
        self.handle = L.llama_model_load_from_file(str(path).encode(), params)
        if not self.handle:
            detail = llamalog.recent("error") or llamalog.recent()
            raise EngineError(
                f"llama.cpp could not load {path.name} (architecture {architecture!r}): "
                f"{detail or 'no reason given'}. The model may need a newer llama-cpp-python."
            )
        self.vocab = L.llama_model_get_vocab(self.handle)
        self._bos_text = bos_text
        self._piece = ctypes.create_string_buffer(256)

    def tokenize(self, text: str, *, bos: bool = True) -> list[int]:
        """Special tokens parsed; BOS added (as the model's metadata says) unless the
        text already starts with it or `bos` is False (text that continues a sequence)."""
        data = text.encode("utf-8")
        add_special = bos and not (self._bos_text and text.startswith(self._bos_text))
        capacity = len(data) + 16
        for _ in range(2):
            buffer = (L.llama_token * capacity)()
            n = L.llama_tokenize(self.vocab, data, len(data), buffer, capacity, add_special, True)
            if n >= 0:
                return list(buffer[:n])
            capacity = -n
        raise EngineError("tokenization failed")

    def split_prompt(self, prompt: str, prefix_chars: int) -> tuple[list[int], int]:
        """The prompt's tokens, and how many of them belong to the shared prefix."""
        tokens = self.tokenize(prompt)
        prefix = self.tokenize(prompt[:prefix_chars]) if prefix_chars else []
        # the last prompt token must be decoded to get logits
        return tokens, min(common_prefix(prefix, tokens), len(tokens) - 1)

    def piece(self, token: int) -> bytes:
        """The bytes of one token; a piece longer than the buffer grows it, never drops text."""
        n = L.llama_token_to_piece(self.vocab, token, self._piece, len(self._piece), 0, False)
        if n < 0:
            self._piece = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self.vocab, token, self._piece, len(self._piece), 0, False)
        return self._piece.raw[:n]

    def is_end(self, token: int) -> bool:
        return bool(L.llama_vocab_is_eog(self.vocab, token))

    @property
    def n_vocab(self) -> int:
        return int(L.llama_vocab_n_tokens(self.vocab))

    @property
    def n_ctx_train(self) -> int:
        return int(L.llama_model_n_ctx_train(self.handle))

    def close(self) -> None:
        if self.handle:
            L.llama_model_free(self.handle)
            self.handle = None


class LlamaContext:
    """A context over a model: a KV stream per sequence, each of `settings.n_ctx` cells,
    one batch buffer and a greedy sampler. Every decode is split into canonical calls
    (engine.shapes); the greedy choice (and, if asked, the logits) of each entry that
    wants logits is read right after its call. `decode_seconds` counts the time spent
    inside llama_decode."""

    def __init__(
        self, model: LlamaModel, settings: EngineSettings, n_seq: int, rule: ShapeRule
    ) -> None:
        self.rule = rule
        self.capacity = rule.capacity(n_seq)
        params = L.llama_context_default_params()
        params.n_ctx = settings.n_ctx * n_seq
        params.n_batch = params.n_ubatch = self.capacity
        params.n_seq_max = n_seq
        params.n_outputs_max = rule.outputs(n_seq)  # a prompt chunk wants one row's at most
        params.kv_unified = False  # a stream per sequence keeps its cells in position order
        params.n_threads = settings.threads
        params.n_threads_batch = settings.threads
        params.no_perf = True
        params.type_k = params.type_v = _KV_TYPES[settings.kv_type]
        params.flash_attn_type = {
            True: L.LLAMA_FLASH_ATTN_TYPE_ENABLED,
            False: L.LLAMA_FLASH_ATTN_TYPE_DISABLED,
            None: L.LLAMA_FLASH_ATTN_TYPE_AUTO,
        }[settings.flash_attn]
        self.handle = L.llama_init_from_model(model.handle, params)
        if not self.handle:
            raise EngineError(
                f"llama.cpp could not create a context of {n_seq} x {settings.n_ctx} tokens "
                f"({llamalog.recent('error') or 'probably out of memory'})",
                setting="n_ctx",
            )
        self.n_ctx = settings.n_ctx
        self.n_seq = n_seq
        self.n_vocab = model.n_vocab
        self._batch = L.llama_batch_init(self.capacity, 0, 1)
        self._sampler = L.llama_sampler_init_greedy()
        self._memory = L.llama_get_memory(self.handle)
        self._chosen: dict[int, int] = {}  # entry -> its greedy token, after the last decode
        self._logits: dict[int, Any] = {}  # entry -> a copy of its logits, when kept
        self._copying: set[int] = set()  # streams whose copies llama.cpp has not made yet
        self.decode_seconds = 0.0
        self._abort_callback = aborting.NO_CALLBACK

    def decode(self, entries: Sequence[Entry], *, keep_logits: bool = False) -> None:
        """Decode the entries (each sequence's in position order) in canonical calls.
        Raises EngineError when a stream has no room (the context is too small)."""
        self._calls(plan_calls(entries, self.rule), keep_logits)

    def read(self, entries: Sequence[Entry], *, keep_logits: bool = False) -> None:
        """Read a prompt part: one sequence's entries from the part's first position on,
        in the rule's prompt chunks (engine.shapes). Raises EngineError as decode does."""
        self._calls(read_calls(entries, self.rule), keep_logits)

    def _calls(self, calls: list[Call], keep_logits: bool) -> None:
        self._chosen, self._logits = {}, {}
        for call in calls:
            self._call(call, keep_logits)

    def _call(self, call: Call, keep_logits: bool) -> None:
        batch = self._batch
        for i, (token, pos, seq, logits) in enumerate(call.rows):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        batch.n_tokens = len(call.rows)
        wanted = aborting.callback()
        if self._abort_callback is not wanted:
            self._abort_callback = wanted
            L.llama_set_abort_callback(self.handle, wanted, None)
        began = time.perf_counter()
        try:
            rc = int(L.llama_decode(self.handle, batch))
        finally:
            self.decode_seconds += time.perf_counter() - began
            for seq, start in call.padding.items():
                self.remove(seq, start)
        self._copying.clear()  # llama_decode makes pending stream copies before anything
        aborting.raise_if_aborted()
        if rc == 1:
            raise EngineError(
                f"a question's KV stream is full ({self.n_ctx} tokens)", setting="n_ctx"
            )
        if rc != 0:
            detail = llamalog.recent("error")
            raise EngineError(f"llama_decode failed (code {rc}){': ' + detail if detail else ''}")
        for row, (entry, (_, _, _, logits)) in enumerate(zip(call.entries, call.rows, strict=True)):
            if entry < 0 or not logits:
                continue
            self._chosen[entry] = int(L.llama_sampler_sample(self._sampler, self.handle, row))
            if keep_logits:
                self._logits[entry] = self._row_logits(row)

    def _row_logits(self, row: int) -> Any:
        import numpy as np

        pointer = L.llama_get_logits_ith(self.handle, row)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()

    def _make_pending_copies(self, seq: int) -> None:
        """llama.cpp makes pending stream copies as a decode begins: decode a canonical
        call of padding alone, past `seq`'s cells, and drop it again."""
        start = int(L.llama_memory_seq_pos_max(self._memory, seq)) + 1
        rows = [(0, start + i, seq, False) for i in range(self.rule.min_rows)]
        self._call(Call(rows, [-1] * len(rows), {seq: start}), keep_logits=False)

    def sample(self, entry: int) -> int:
        """The greedy choice at entry `entry` of the last decode."""
        return self._chosen[entry]

    def logits(self, entry: int) -> Any:
        """A copy of entry `entry`'s logits (float32, numpy), of a decode that kept them."""
        return self._logits[entry]

    def remove(self, seq: int, start: int = -1, end: int = -1) -> None:
        """Drop sequence `seq`'s cells at positions [start, end) (-1: open)."""
        L.llama_memory_seq_rm(self._memory, seq, start, end)

    def copy(self, source: int, target: int) -> None:
        """`target`'s stream becomes a copy of `source`'s (the same cells, in the same
        order). llama.cpp copies the data at the next llama_decode: until then nothing
        may write into `source` but a decode (load_state waits for it)."""
        self._copying.add(source)
        L.llama_memory_seq_cp(self._memory, source, target, -1, -1)

    def clear(self) -> None:
        L.llama_memory_clear(self._memory, True)

    def save_state(self, seq: int) -> bytes:
        """`seq`'s cells as its stream's block alone, so that the state loads into any
        stream of any context ("" if llama.cpp gives none)."""
        size = L.llama_state_seq_get_size(self.handle, seq)
        buffer = (ctypes.c_uint8 * size)()
        written = L.llama_state_seq_get_data(self.handle, buffer, size, seq)
        return stream_block(ctypes.string_at(buffer, written), seq) if written else b""

    def load_state(self, seq: int, block: bytes) -> bool:
        """Restore a saved stream block into `seq`; False (and `seq` left empty) if
        llama.cpp refuses it."""
        if seq in self._copying:  # let llama.cpp copy the old cells out first
            self._make_pending_copies(seq)
        payload = with_streams(block, seq, self.n_seq)
        buffer = (ctypes.c_uint8 * len(payload)).from_buffer_copy(payload)
        if L.llama_state_seq_set_data(self.handle, buffer, len(payload), seq) == 0:
            self.remove(seq)
            return False
        return True

    def close(self) -> None:
        if self.handle:
            L.llama_free(self.handle)
            L.llama_sampler_free(self._sampler)
            L.llama_batch_free(self._batch)
            self.handle = None


# A sequence's state as llama.cpp writes it: a magic number and the sequence, then its KV
# cache's: the stream count, and per stream its cell count and (if any) its cells; a
# sequence's cells are all in its own stream.
_STATE_MAGIC = 0xAF143CD8
_HEADER = struct.Struct("<Ii")
_COUNT = struct.Struct("<I")


def stream_block(state: bytes, seq: int) -> bytes:
    """The block of stream `seq` out of a sequence's state ("" if it is not one)."""
    if len(state) < _HEADER.size + _COUNT.size:
        return b""
    magic, _ = _HEADER.unpack_from(state)
    (streams,) = _COUNT.unpack_from(state, _HEADER.size)
    body = state[_HEADER.size + _COUNT.size :]
    before, after = _COUNT.size * seq, _COUNT.size * (streams - seq - 1)
    if magic != _STATE_MAGIC or seq >= streams or len(body) <= before + after:
        return b""
    if body[:before] != bytes(before) or body[len(body) - after :] != bytes(after):
        return b""
    return body[before : len(body) - after]


def with_streams(block: bytes, seq: int, streams: int) -> bytes:
    """A sequence's state for stream `seq` of a context of `streams` streams."""
    head = _HEADER.pack(_STATE_MAGIC, seq) + _COUNT.pack(streams)
    return head + bytes(_COUNT.size * seq) + block + bytes(_COUNT.size * (streams - seq - 1))


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def backend(gpu_layers: int) -> Backend:
    """Where the layers run: "cpu", or on a build that offloads them "metal" (Apple
    Silicon's unified memory) or "gpu" (any other, an Intel Mac's through Metal too)."""
    if gpu_layers == 0 or not L.llama_supports_gpu_offload():
        return "cpu"
    return "metal" if apple_silicon() else "gpu"


def system_info() -> dict[str, Any]:
    return {
        "llama_cpp_python": L.__version__,
        "system_info": L.llama_print_system_info().decode("utf-8", "replace").strip(),
        "gpu_offload_supported": bool(L.llama_supports_gpu_offload()),
    }


def log_softmax(logits: Any) -> Any:
    """Log-probabilities (float64) from one row of float32 logits."""
    import numpy as np

    wide = logits.astype(np.float64)
    top = wide.max()
    return wide - top - np.log(np.exp(wide - top).sum())
