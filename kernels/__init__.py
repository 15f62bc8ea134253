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
from . import registry
from .registry import BACKENDS, KernelNotFoundError, BackendUnavailableError, get

__all__ = ["registry", "get", "BACKENDS", "KernelNotFoundError", "BackendUnavailableError"]
