"""The GPU's memory as llama.cpp's ggml sees it, through its device API (exported by the
wheel's libggml). On Apple Silicon ggml reports Metal's working-set budget
(recommendedMaxWorkingSetSize, about two thirds of RAM) as the device's total: past it
llama.cpp warns and runs stall or fail with kIOGPUCommandBufferCallbackErrorOutOfMemory,
so that, not RAM, is what a model offloaded to Metal must fit in."""

from __future__ import annotations

import ctypes
from typing import Any

from mmlupro_local.model.hardware import apple_silicon
from mmlupro_local.model.memory import GpuMemory

# enum ggml_backend_dev_type
_GPU, _IGPU = 1, 2


def _ggml() -> Any:
    from llama_cpp._ggml import libggml

    lib = libggml
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_name.restype = ctypes.c_char_p
    size_p = ctypes.POINTER(ctypes.c_size_t)
    lib.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, size_p, size_p]
    lib.ggml_backend_dev_memory.restype = None
    return lib


def gpu_memory(lib: Any = None) -> GpuMemory | None:
    """The first GPU device's memory (on Metal: the working-set budget); None where
    there is none, or the library does not say."""
    try:
        lib = lib or _ggml()
        for index in range(int(lib.ggml_backend_dev_count())):
            device = lib.ggml_backend_dev_get(index)
            if lib.ggml_backend_dev_type(device) not in (_GPU, _IGPU):
                continue
            free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
            lib.ggml_backend_dev_memory(device, ctypes.pointer(free), ctypes.pointer(total))
            name = (lib.ggml_backend_dev_name(device) or b"GPU").decode("utf-8", "replace")
            if total.value:
                return GpuMemory(name, total.value, free.value, unified=apple_silicon())
    except (OSError, AttributeError, ImportError):
        return None
    return None
