"""Helpers shared by the CUDA launchers in ``kernels/*.py`` (one op, one file).

A CUDA version of an op is registered on both GPU backends from one factory::

    @register_cuda("maxpool2d_forward", 1, default=True, doc="one thread per output")
    def _make(backend):                      # called once per backend
        def maxpool2d_forward_cuda_v1(x, kernel_size, ...):
            xp = device_xp(backend)          # cupy on "cuda", numpy on "cuda-emu"
            x = check_device_array("x", x, backend, ndim=4)
            mod = load_module("pool2d.cu", backend, name_expressions=TEMPLATES)
            mod.get_function(f"maxpool2d_fwd<{ctype(x.dtype)}>")(grid, block, args)
            ...
        return maxpool2d_forward_cuda_v1

On ``"cuda"`` arrays are CuPy arrays (device memory); on ``"cuda-emu"`` they are
NumPy arrays and the same ``.cu`` source runs in the CPU emulator.
"""
from __future__ import annotations

import numpy as np

from .. import registry
from .._checks import check_float_array

GPU_BACKENDS = ("cuda", "cuda-emu")
THREADS = 256     # default threads per block for elementwise / one-thread-per-output kernels


def device_xp(backend: str):
    """The array module for ``backend`` (raises BackendUnavailableError with the reason)."""
    registry.check_backend(backend)
    if backend == "cuda":
        import cupy
        return cupy
    return np


def check_device_array(name: str, x, backend: str, ndim=None, dtype=None):
    """:func:`kernels._checks.check_float_array` on the backend's array module:
    a NumPy array given to ``cuda`` (or a CuPy array to ``cuda-emu``) is rejected
    with a message saying how to move it."""
    return check_float_array(name, x, ndim=ndim, dtype=dtype, xp=device_xp(backend))


def ctype(dtype) -> str:
    """C type name for a float dtype (template argument of the kernels)."""
    dt = np.dtype(dtype)
    if dt == np.float32:
        return "float"
    if dt == np.float64:
        return "double"
    raise TypeError(f"dtype: expected float32 or float64, got {dt}")


def scalar(dtype, value):
    """A NumPy scalar of ``dtype`` so CuPy passes it with the kernel's parameter type."""
    return np.dtype(dtype).type(value)


def blocks_for(n: int, threads: int = THREADS) -> int:
    """Blocks needed to cover ``n`` items with ``threads`` per block (at least 1)."""
    return max(1, (int(n) + threads - 1) // threads)


def register_cuda(op: str, version: int, *, default: bool = False, doc: str = ""):
    """Register ``factory(backend)`` as ``op`` version ``version`` on ``cuda`` and ``cuda-emu``."""
    def wrap(factory):
        for backend in GPU_BACKENDS:
            fn = factory(backend)
            fn.__name__ = f"{op}_{backend.replace('-', '_')}_v{version}"
            registry.register(op, backend, version, default=default, doc=doc)(fn)
        return factory
    return wrap
