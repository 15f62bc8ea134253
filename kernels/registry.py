"""One registry for every kernel: ``(op, backend, version) -> callable``.

A kernel module registers each of its implementations once, at import time::

    @register("conv2d_forward", "numba", 2, default=True,
              doc="im2col per image + BLAS sgemm, parallel over images")
    def conv2d_forward_numba_v2(x, weight, bias, stride, padding, dilation): ...

and callers look them up by name::

    fn = get("conv2d_forward", "numba")          # the backend's default version
    fn = get("conv2d_forward", "numba", 1)       # a specific version

Version numbers are stable and never reused: a faster version is a new number
beside its slower sibling, so benchmarks over commits stay comparable.

Backends
--------
``numpy``     the reference, plain NumPy, float32 and float64; ground truth for tests
``numba``     CPU kernels compiled with Numba (``@njit(parallel=True)``), BLAS for GEMMs
``cuda``      CUDA C kernels loaded with CuPy ``RawModule`` (needs CuPy and a GPU)
``cuda-emu``  the same CUDA C compiled with g++ and run on CPU threads (needs g++)
"""
from __future__ import annotations

import dataclasses
import importlib
import re
import shutil
from typing import Callable

BACKENDS: tuple[str, ...] = ("numpy", "numba", "cuda", "cuda-emu")

# Modules whose import registers kernels. Importing lazily keeps `import kernels`
# cheap and lets a module that fails to import (e.g. a missing optional
# dependency) be reported instead of breaking every lookup.
KERNEL_MODULES: tuple[str, ...] = (
    "kernels.conv2d",
    "kernels.pool2d",
    "kernels.linear",
    "kernels.activation",
    "kernels.loss",
    "kernels.recurrent",
    "kernels.recurrent_cuda",
    "kernels.batchnorm",
    "kernels.embedding",
    "kernels.recurrent_persistent",
)


class KernelNotFoundError(LookupError):
    """Raised for an unknown op, backend or version; the message lists what exists."""


class BackendUnavailableError(RuntimeError):
    """Raised when a known backend cannot run on this machine; the message says why."""


class DeviceOutOfMemoryError(MemoryError):
    """A ``cuda`` kernel could not get the GPU memory it asked for.

    Attributes
    ----------
    requested_bytes : int or None
        the size of the allocation that failed, when CuPy reported it.
    """

    def __init__(self, kernel_name: str, cause: BaseException):
        found = re.search(r"allocating ([\d,]+) bytes", str(cause))
        self.requested_bytes = int(found.group(1).replace(",", "")) if found else None
        size = (f"{self.requested_bytes:,} bytes ({self.requested_bytes / 2**20:.1f} MiB)"
                if self.requested_bytes is not None else "an allocation of unknown size")
        super().__init__(f"{kernel_name}: CUDA out of memory requesting {size}; "
                         f"CuPy said: {cause}. Use a smaller batch or scale, or free GPU "
                         "memory (cupy.get_default_memory_pool().free_all_blocks()).")


def _is_device_oom(exc: BaseException) -> bool:
    """CuPy's OutOfMemoryError (a MemoryError) or a CUDA/cuBLAS allocation failure."""
    if not type(exc).__module__.startswith("cupy"):
        return False
    text = str(exc)
    return (isinstance(exc, MemoryError) or "cudaErrorMemoryAllocation" in text
            or "CUBLAS_STATUS_ALLOC_FAILED" in text)


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A registered implementation."""

    op: str
    backend: str
    version: int
    fn: Callable
    doc: str

    @property
    def name(self) -> str:
        return f"{self.op}[{self.backend}/v{self.version}]"

    def __call__(self, *args, **kwargs):
        if self.backend != "cuda":
            return self.fn(*args, **kwargs)
        try:
            return self.fn(*args, **kwargs)
        except Exception as exc:       # CuPy's OOM types, without importing CuPy here
            if _is_device_oom(exc):
                raise DeviceOutOfMemoryError(self.name, exc) from exc
            raise


_KERNELS: dict[tuple[str, str, int], Kernel] = {}
_DEFAULTS: dict[tuple[str, str], int] = {}
_loaded = False


def register(op: str, backend: str, version: int, *, default: bool = False, doc: str = ""):
    """Decorator registering ``fn`` as version ``version`` of ``op`` on ``backend``.

    ``default=True`` makes it the version :func:`get` returns when none is asked
    for; otherwise the highest registered version of that backend is the default.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive int, got {version!r}")

    def wrap(fn: Callable) -> Callable:
        key = (op, backend, version)
        if key in _KERNELS and _KERNELS[key].fn is not fn:
            raise ValueError(f"{op}[{backend}/v{version}] is already registered")
        text = doc or (fn.__doc__ or "").strip().splitlines()[0:1]
        if isinstance(text, list):
            text = text[0] if text else ""
        _KERNELS[key] = Kernel(op, backend, version, fn, text)
        if default:
            _DEFAULTS[(op, backend)] = version
        return fn

    return wrap


def set_default(op: str, backend: str, version: int) -> None:
    """Make the registered ``version`` of ``op`` the default on ``backend`` alone (e.g. a
    ``cuda`` default that ``cuda-emu`` does not share)."""
    if (op, backend, version) not in _KERNELS:
        raise KeyError(f"{op}[{backend}/v{version}] is not registered")
    _DEFAULTS[(op, backend)] = version


def load_all() -> None:
    """Import every kernel module so that its registrations exist."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in KERNEL_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            # only tolerate the module itself being absent (not yet written),
            # never a broken import inside it
            if exc.name != mod:
                raise


def ops() -> list[str]:
    """All registered op names, sorted."""
    load_all()
    return sorted({k[0] for k in _KERNELS})


def versions(op: str, backend: str) -> list[int]:
    """Registered versions of ``op`` on ``backend`` (sorted); [] if none."""
    load_all()
    return sorted(v for (o, b, v) in _KERNELS if o == op and b == backend)


def kernels(op: str | None = None, backend: str | None = None) -> list[Kernel]:
    """Registered kernels, optionally filtered by op and/or backend."""
    load_all()
    out = [k for (o, b, _), k in _KERNELS.items()
           if (op is None or o == op) and (backend is None or b == backend)]
    return sorted(out, key=lambda k: (k.op, BACKENDS.index(k.backend), k.version))


def default_version(op: str, backend: str) -> int:
    """The version :func:`get` returns for ``(op, backend)`` when none is given."""
    vs = versions(op, backend)
    if not vs:
        _raise_not_found(op, backend, None)
    return _DEFAULTS.get((op, backend), vs[-1])


def check_backend(backend: str) -> str:
    """Validate a backend name and that it can run here; return it.

    Raises
    ------
    KernelNotFoundError
        ``backend`` is not one of :data:`BACKENDS`.
    BackendUnavailableError
        it is known but cannot run on this machine (the message says why).
    """
    if backend not in BACKENDS:
        raise KernelNotFoundError(
            f"backend: unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    ok, reason = backend_status()[backend]
    if not ok:
        raise BackendUnavailableError(f"backend {backend!r} is unavailable: {reason}")
    return backend


def get(op: str, backend: str = "numpy", version: int | None = None) -> Kernel:
    """Look up a kernel.

    Parameters
    ----------
    op : str
        e.g. ``"conv2d_forward"``; see :func:`ops`.
    backend : str
        one of :data:`BACKENDS`.
    version : int, optional
        a registered version; default: the backend's default version.

    Raises
    ------
    KernelNotFoundError
        unknown op, backend or version; the message lists the registered ones.
    """
    load_all()
    if backend not in BACKENDS:
        raise KernelNotFoundError(
            f"backend: unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    if version is None:
        version = default_version(op, backend)
    try:
        return _KERNELS[(op, backend, version)]
    except KeyError:
        _raise_not_found(op, backend, version)


def _raise_not_found(op: str, backend: str, version: int | None):
    all_ops = ops()
    if op not in all_ops:
        raise KernelNotFoundError(f"op: unknown op {op!r}; registered ops: {all_ops}")
    have = {b: versions(op, b) for b in BACKENDS if versions(op, b)}
    listing = ", ".join(f"{b}: v{'/v'.join(map(str, vs))}" for b, vs in have.items())
    if backend not in have:
        raise KernelNotFoundError(
            f"backend: op {op!r} has no {backend!r} implementation; registered: {listing}")
    raise KernelNotFoundError(
        f"version: op {op!r} on backend {backend!r} has no version {version!r}; "
        f"registered: {listing}")


# ----------------------------------------------------------------------------
# backend availability
# ----------------------------------------------------------------------------
_STATUS_CACHE: dict[str, tuple[bool, str]] = {}


def _numba_status() -> tuple[bool, str]:
    try:
        import numba  # noqa: F401
    except Exception as exc:  # pragma: no cover - numba is a dependency
        return False, f"numba cannot be imported ({exc}); pip install numba"
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (np.dot inside @njit needs it)
    except Exception as exc:  # pragma: no cover
        return False, f"scipy is missing ({exc}); numba's np.dot needs it: pip install scipy"
    return True, f"numba {numba.__version__}"


def _cuda_status() -> tuple[bool, str]:
    try:
        import cupy
    except Exception as exc:
        return False, (f"CuPy is not installed ({type(exc).__name__}: {exc}); "
                       'install it with: pip install -e ".[gpu]" (cupy-cuda12x) '
                       "or pip install cupy-cuda13x")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"CuPy {cupy.__version__} found but no usable CUDA driver/device ({exc})"
    if n < 1:
        return False, f"CuPy {cupy.__version__} found but no CUDA device is visible"
    try:
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception:
        name = "device 0"
    return True, f"CuPy {cupy.__version__} on {name}"


def _cuda_emu_status() -> tuple[bool, str]:
    cxx = shutil.which("g++")
    if cxx is None:
        return False, "g++ is not on PATH (the emulator compiles CUDA C with g++)"
    try:
        importlib.import_module("kernels.cuda.emu")
    except ModuleNotFoundError:
        return False, "the CUDA emulator (kernels.cuda.emu) is not part of this build yet"
    return True, f"g++ at {cxx}"


def backend_status(refresh: bool = False) -> dict[str, tuple[bool, str]]:
    """``{backend: (available, reason)}`` for every backend in :data:`BACKENDS`."""
    if refresh or not _STATUS_CACHE:
        _STATUS_CACHE.update({
            "numpy": (True, "NumPy reference"),
            "numba": _numba_status(),
            "cuda": _cuda_status(),
            "cuda-emu": _cuda_emu_status(),
        })
    return dict(_STATUS_CACHE)


def available_backends() -> list[str]:
    """Backends that can run on this machine."""
    return [b for b, (ok, _) in backend_status().items() if ok]
