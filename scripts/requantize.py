"""Write a GGUF model again with its Q4_1 tensors requantized to another type (Q4_0,
Q5_0, Q8_0...), through gguf-py's reference quantizers: a second quantization of the
same model, with the same vocabulary, for `divergence` and the multi-model tests.

Usage: python scripts/requantize.py IN.gguf OUT.gguf [TYPE]   (TYPE default Q4_0)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType
from gguf.quants import dequantize, quantize

SKIP = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}


def requantize(source: Path, target: Path, kind: GGMLQuantizationType) -> None:
    reader = GGUFReader(source)
    arch = str(reader.fields["general.architecture"].contents())
    writer = GGUFWriter(target, arch)
    for field in reader.fields.values():
        if field.name in SKIP or field.name == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == "general.file_type":  # what most tensors now are
            value = int(LlamaFileType[f"MOSTLY_{kind.name}"])
        writer.add_key_value(field.name, value, vtype, sub)
    for tensor in reader.tensors:
        data, qtype = tensor.data, tensor.tensor_type
        if qtype == GGMLQuantizationType.Q4_1:
            values = dequantize(np.asarray(data), qtype)
            data, qtype = quantize(values, kind), kind
        # quantized data comes as bytes shaped (rows, bytes per row): the writer infers the shape
        writer.add_tensor(tensor.name, np.asarray(data), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    kind = GGMLQuantizationType[sys.argv[3]] if len(sys.argv) > 3 else GGMLQuantizationType.Q4_0
    requantize(Path(sys.argv[1]), Path(sys.argv[2]), kind)
