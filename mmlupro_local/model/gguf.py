"""A small reader of GGUF headers: metadata and tensor extents, without loading weights.

It lets the tool reject a wrong, truncated or foreign file with a clear message before
llama.cpp sees it, and read the chat template, architecture and sizes from metadata.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mmlupro_local.errors import MmluProError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
# ggml tensor type id -> (elements per block, bytes per block); in step with the gguf
# package's GGML_QUANT_SIZES (tests/test_gguf.py compares them where it is installed)
BLOCK_SIZES = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 40),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
    40: (64, 36),
    41: (128, 18),
}
# llama.cpp's LLAMA_FTYPE values, for reporting the quantization of a file
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
}
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


class ModelFileError(MmluProError):
    """The model file is missing, unreadable, not GGUF, or truncated."""


@dataclass(frozen=True)
class GgufInfo:
    path: Path
    version: int
    size: int
    metadata: dict[str, Any] = field(repr=False)
    tensor_count: int
    data_end: int  # where the last tensor ends; a smaller file is truncated
    parameters: int = 0  # the weights' elements, every tensor's together

    @property
    def bits_per_weight(self) -> float | None:
        """The file's bits over its weights (metadata and vocabulary included, as
        llama.cpp's own figure counts the file)."""
        return self.size * 8 / self.parameters if self.parameters else None

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def quantization(self) -> str:
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int):
            return FILE_TYPES.get(file_type, f"type {file_type}")
        return "unknown"

    def get_int(self, suffix: str) -> int | None:
        value = self.metadata.get(f"{self.architecture}.{suffix}")
        return value if isinstance(value, int) else None

    @property
    def tokens(self) -> Any:
        """The vocabulary's token texts, as the file lists them (None: no list)."""
        return self.metadata.get("tokenizer.ggml.tokens")

    def shares_vocabulary(self, other: GgufInfo) -> bool:
        """The two files list the same tokens, so one's token ids mean the other's."""
        return bool(self.tokens == other.tokens)

    def token(self, key: str) -> str:
        """The text of a special token named in metadata (bos/eos), or ''."""
        tokens = self.tokens
        index = self.metadata.get(f"tokenizer.ggml.{key}_token_id")
        if isinstance(tokens, list) and isinstance(index, int) and 0 <= index < len(tokens):
            return str(tokens[index])
        return ""


def read_gguf(path: Path) -> GgufInfo:
    """Parse the header of `path`, or raise ModelFileError saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file. Give the path of a .gguf model file.")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory; give the path of a .gguf file inside it")
    if not path.is_file():  # a FIFO would block until a writer came
        raise ModelFileError(
            f"{path} is not a regular file (a pipe, socket or device); give the path of a "
            ".gguf file"
        )
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            return _parse(handle, path, size)
    except PermissionError as exc:
        raise ModelFileError(f"{path}: permission denied; make the file readable") from exc
    except (struct.error, EOFError, UnicodeDecodeError, OverflowError, MemoryError) as exc:
        raise ModelFileError(
            f"{path}: the GGUF header is damaged or cut short ({exc}); download the model again"
        ) from exc
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read it ({exc.strerror or exc})") from exc


def _parse(handle: IO[bytes], path: Path, size: int) -> GgufInfo:
    if _exact(handle, 4) != MAGIC:
        raise ModelFileError(
            f"{path} is not a GGUF file (it does not start with 'GGUF'). "
            "Convert the model to GGUF (llama.cpp's convert_hf_to_gguf.py) "
            "or download a .gguf build."
        )
    version = _unpack(handle, "<I")
    if version not in (2, 3):
        raise ModelFileError(f"{path}: GGUF version {version} is not supported (2 and 3 are)")
    tensor_count = _unpack(handle, "<Q")
    kv_count = _unpack(handle, "<Q")
    if kv_count > 1_000_000 or tensor_count > 10_000_000:
        raise ModelFileError(f"{path}: the GGUF header is damaged (implausible counts)")
    metadata = {_string(handle): _value(handle) for _ in range(kv_count)}
    data_end = 0
    tensors = []
    for _ in range(tensor_count):
        _string(handle)
        dims = [_unpack(handle, "<Q") for _ in range(_unpack(handle, "<I"))]
        tensors.append((dims, _unpack(handle, "<I"), _unpack(handle, "<Q")))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    alignment = alignment if isinstance(alignment, int) and alignment > 0 else DEFAULT_ALIGNMENT
    data_start = -(-handle.tell() // alignment) * alignment
    for dims, kind, offset in tensors:
        data_end = max(data_end, data_start + offset + _tensor_bytes(dims, kind))
    _check_vocabulary(metadata.get("tokenizer.ggml.tokens"), path)
    if data_end > size:
        raise ModelFileError(
            f"{path} is truncated: {size:,} bytes, but its tensors need {data_end:,}. "
            "The download was probably interrupted; download the model again."
        )
    parameters = sum(math.prod(dims) for dims, _, _ in tensors)
    return GgufInfo(path, version, size, metadata, tensor_count, data_end, parameters)


def _check_vocabulary(tokens: Any, path: Path) -> None:
    """llama.cpp aborts the process (a debugger backtrace at the user) on a vocabulary
    that lists a token twice (issue 26, case 11): say so here instead. Tokens that are
    not valid UTF-8 read as U+FFFD and are left out, lest they look alike."""
    if not isinstance(tokens, list):
        return
    seen: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if not isinstance(token, str) or "\ufffd" in token:
            continue
        if token in seen:
            raise ModelFileError(
                f"{path}: its vocabulary lists the token {token[:40]!r} twice (ids {seen[token]} "
                f"and {index}), which llama.cpp cannot load; the file is damaged or was made "
                "by a faulty converter: download or convert it again"
            )
        seen[token] = index


def _tensor_bytes(dims: list[int], kind: int) -> int:
    elements = 1
    for dim in dims:
        elements *= dim
    block, nbytes = BLOCK_SIZES.get(kind, (1, 0))  # unknown type: check the offset only
    return elements // block * nbytes


def _exact(handle: IO[bytes], n: int) -> bytes:
    data = handle.read(n)
    if len(data) != n:
        raise EOFError("unexpected end of file")
    return data


def _unpack(handle: IO[bytes], fmt: str) -> Any:
    return struct.unpack(fmt, _exact(handle, struct.calcsize(fmt)))[0]


def _string(handle: IO[bytes]) -> str:
    length = _unpack(handle, "<Q")
    if length > 1 << 30:
        raise EOFError("string length past any real file")
    return _exact(handle, length).decode("utf-8", errors="replace")


def _value(handle: IO[bytes], kind: int | None = None) -> Any:
    kind = _unpack(handle, "<I") if kind is None else kind
    if kind in _SCALARS:
        return _unpack(handle, _SCALARS[kind])
    if kind == _STRING:
        return _string(handle)
    if kind == _ARRAY:
        item_kind = _unpack(handle, "<I")
        count = _unpack(handle, "<Q")
        if count > 1 << 28:
            raise EOFError("array length past any real file")
        return [_value(handle, item_kind) for _ in range(count)]
    raise EOFError(f"unknown metadata value type {kind}")
