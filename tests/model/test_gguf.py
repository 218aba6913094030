from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import gguf_bytes, write_fake_model
from mmlupro_local.model.gguf import ModelFileError, read_gguf


def test_reads_the_real_model(smollm2: Path) -> None:
    info = read_gguf(smollm2)
    assert info.architecture == "llama" and info.quantization == "Q4_1"
    assert info.get_int("context_length") == 8192
    assert info.token("bos") == "<|im_start|>" and info.token("eos") == "<|im_end|>"
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert info.data_end == info.size == smollm2.stat().st_size


def test_bad_model_files(smollm2: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    cases = {
        tmp_path / "missing.gguf": "no such file",
        tmp_path: "is a directory",
        text: "is not a GGUF file",
    }
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(smollm2.read_bytes()[:50_000_000])
    cases[truncated] = "is truncated: 50,000,000 bytes, but its tensors need 98,362,432"
    header_cut = tmp_path / "header.gguf"
    header_cut.write_bytes(smollm2.read_bytes()[:2000])
    cases[header_cut] = "damaged or cut short"
    future = tmp_path / "v9.gguf"
    future.write_bytes(b"GGUF" + (9).to_bytes(4, "little") + b"\0" * 16)
    cases[future] = "GGUF version 9 is not supported"
    for path, message in cases.items():
        with pytest.raises(ModelFileError, match=message):
            read_gguf(path)


def test_a_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    """Issue 32, case 5: `model info` on a FIFO blocked until a writer appeared."""
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    done = subprocess.run(
        [sys.executable, "-m", "mmlupro_local", "model", "info", str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "is not a regular file (a pipe" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_fake_model(tmp_path / "m.gguf")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # tests run as root, where permission bits do not stop reads: fail the open instead
    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(ModelFileError, match="permission denied; make the file readable"):
        read_gguf(path)


def test_hand_made_header_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_bytes({"general.architecture": "mamba9", "general.file_type": 15}))
    info = read_gguf(path)
    assert (
        info.architecture == "mamba9" and info.quantization == "Q4_K_M" and info.tensor_count == 0
    )


def test_type_tables_match_the_gguf_package() -> None:
    """Issue 13 #20: the reader's tables in step with llama.cpp's own Python package
    (a dev dependency), so truncation checks and memory estimates know every type."""
    constants = pytest.importorskip("gguf.constants")
    from mmlupro_local.model.gguf import BLOCK_SIZES, FILE_TYPES

    sizes = {
        t.value: tuple(constants.GGML_QUANT_SIZES[t])
        for t in constants.GGMLQuantizationType
        if t in constants.GGML_QUANT_SIZES
    }
    assert sizes == BLOCK_SIZES
    names = {
        f.value: f.name.removeprefix("MOSTLY_").removeprefix("ALL_")
        for f in constants.LlamaFileType
        if f.name != "GUESSED"
    }
    assert names == FILE_TYPES


def test_a_vocabulary_listing_a_token_twice_is_refused_before_llama_cpp_aborts(
    tmp_path: Path,
) -> None:
    """Issue 26, case 11: llama.cpp aborted (exit 134) with 150 lines of backtrace."""
    header = gguf_bytes({"general.architecture": "llama"})
    # an array of three strings, the last repeating the first
    tokens = b"".join(struct.pack("<Q", len(t)) + t for t in (b"a", b"b", b"a"))
    entry = (
        struct.pack("<Q", len(b"tokenizer.ggml.tokens"))
        + b"tokenizer.ggml.tokens"
        + struct.pack("<IIQ", 9, 8, 3)
        + tokens
    )
    count = struct.pack("<Q", 2)
    data = header[:16] + count + header[24:] + entry
    path = tmp_path / "dup.gguf"
    path.write_bytes(data)
    with pytest.raises(ModelFileError, match=r"lists the token 'a' twice \(ids 0 and 2\)"):
        read_gguf(path)
