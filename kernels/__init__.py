"""seqgrid kernels: pure compute, no state, no autograd.

Every op lives in one module (``conv2d.py``, ``pool2d.py``, ``linear.py``, ``activation.py``,
``loss.py``, ``batchnorm.py``, ``embedding.py``, ``recurrent.py``; the recurrent CUDA versions in
``recurrent_cuda.py`` and the persistent kernel in ``recurrent_persistent.py``) that reads top
to bottom: a docstring listing its versions, the NumPy reference, the Numba versions, the CUDA
launchers (CUDA C in ``kernels/cuda/<op>.cu``), the registrations. Look kernels up
through :mod:`kernels.registry`::

    from kernels import registry
    conv = registry.get("conv2d_forward", "numba")

Conventions shared by every kernel
----------------------------------
* Layouts: NCHW activations, KCRS conv weights, time-major ``(T, N, I)`` sequences,
  PyTorch's gate order (LSTM i,f,g,o; GRU r,z,n).
* Activation gradients are *returned* (freshly written, ``=``); parameter
  gradients are *accumulated* (``+=``) into caller-owned arrays, so a layer
  used twice in a graph, or a gradient accumulated over micro-batches, just works.
* Signatures put caller-owned outputs first, then inputs, then saved state,
  then dimensions / hyper-parameters.
* float32 and float64; anything else (ints, float16) is rejected with an error
  naming the argument. Non-contiguous inputs are copied once.
"""
import os as _os

# OpenBLAS's idle worker threads keep spinning (sched_yield) for about 2**28 cycles after each
# multi-threaded call and hold the cores that numba's parallel kernels need next: on the 2-core
# dev machine a tiny prange kernel right after a 2-thread (64 x 1000) @ (1000 x 1000) GEMM took
# 8.0 ms instead of 5 us (GEMM + kernel: 8.0 ms, 1.16 ms with the setting below). Each OpenBLAS
# reads OPENBLAS_THREAD_TIMEOUT (log2 of the spin cycles, 4..30) when it loads: SciPy's, which
# numba's np.dot calls, loads after this line; NumPy's only if NumPy is imported after kernels
# (bench/, examples/ and tests/ import kernels first). A value the user set wins.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from . import registry  # noqa: E402
from .registry import BACKENDS, KernelNotFoundError, BackendUnavailableError, get  # noqa: E402

__all__ = ["registry", "get", "BACKENDS", "KernelNotFoundError", "BackendUnavailableError"]
