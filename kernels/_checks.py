"""Argument checks shared by all kernels: every error names the argument and
what was expected, so a wrong call never computes something silently wrong."""
from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def array_module(x):
    """``numpy`` for host arrays, ``cupy`` for device arrays (CuPy imported lazily)."""
    mod = type(x).__module__
    if mod.startswith("cupy"):
        import cupy
        return cupy
    return np


def check_float_array(name: str, x, ndim: int | tuple[int, ...] | None = None,
                      dtype=None, xp=None):
    """Validate ``x`` and return it C-contiguous (copied once if it was not).

    Parameters
    ----------
    name : str
        argument name used in error messages.
    x : array
        must be a NumPy (or, with ``xp=cupy``, CuPy) array of float32/float64.
    ndim : int or tuple of int, optional
        allowed rank(s).
    dtype : dtype, optional
        required dtype (e.g. the dtype of the input the array pairs with).
    xp : module, optional
        required array module; default NumPy.
    """
    xp = np if xp is None else xp
    if not isinstance(x, xp.ndarray):
        where = "a NumPy array" if xp is np else f"a {xp.__name__} array"
        got = type(x).__module__ + "." + type(x).__name__
        if type(x).__module__.startswith("cupy") and xp is np:
            raise TypeError(f"{name}: expected {where} (host memory), got a CuPy (GPU) array; "
                            "use backend='cuda' or move it with .get()")
        if isinstance(x, np.ndarray) and xp is not np:
            raise TypeError(f"{name}: expected {where} (GPU memory), got a NumPy (host) array; "
                            "move it with cupy.asarray() or layer.to('cuda')")
        raise TypeError(f"{name}: expected {where}, got {got}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {x.dtype}")
    if dtype is not None and x.dtype != np.dtype(dtype):
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)} (matching the input), got {x.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name}: expected a {want}-d array, got shape {tuple(x.shape)} "
                             f"({x.ndim}-d)")
    if not x.flags.c_contiguous:
        x = xp.ascontiguousarray(x)
    return x


def check_shape(name: str, x, shape: tuple) -> None:
    """Raise if ``x.shape`` differs from ``shape`` (``None`` entries match anything)."""
    if len(x.shape) != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")


def pair(name: str, value, minimum: int = 0) -> tuple[int, int]:
    """Normalise an int or a 2-sequence of ints to ``(h, w)``, each ``>= minimum``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        out = (int(value), int(value))
    else:
        try:
            out = tuple(int(v) for v in value)
        except TypeError:
            raise TypeError(f"{name}: expected an int or a pair of ints, got {value!r}") from None
        if len(out) != 2:
            raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
    if min(out) < minimum:
        raise ValueError(f"{name}: expected values >= {minimum}, got {value!r}")
    return out
