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


_FULL_LENGTHS: dict = {}      # (device, N, T, dtype) -> device array of N T's


def device_lengths(xp, lengths, T: int, N: int, dtype=np.int32):
    """Sentence ``lengths`` (host ints, or None = every sentence ``T`` steps) as a ``dtype``
    (N,) array in ``xp``'s memory. The all-T array is made once per (device, N, T, dtype) on
    a GPU: a host-to-device copy per call cost ~80 us of host time on an H100 host, while the
    GPU waited, the largest part of a persistent launch's overhead. Read-only to kernels."""
    if lengths is not None:
        return xp.asarray(np.asarray(lengths, dtype))
    if xp is np:
        return np.full(N, T, dtype)
    key = (xp.cuda.Device().id, N, T, np.dtype(dtype).str)
    lens = _FULL_LENGTHS.get(key)
    if lens is None:
        if len(_FULL_LENGTHS) > 256:
            _FULL_LENGTHS.clear()
        lens = _FULL_LENGTHS[key] = xp.asarray(np.full(N, T, dtype))
    return lens


def register_cuda(op: str, version: int, *, default: bool = False, doc: str = ""):
    """Register ``factory(backend)`` as ``op`` version ``version`` on ``cuda`` and ``cuda-emu``."""
    def wrap(factory):
        for backend in GPU_BACKENDS:
            fn = factory(backend)
            fn.__name__ = f"{op}_{backend.replace('-', '_')}_v{version}"
            registry.register(op, backend, version, default=default, doc=doc)(fn)
        return factory
    return wrap
