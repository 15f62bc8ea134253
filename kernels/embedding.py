"""Embedding lookup (a row gather) and its backward (a scatter-add of rows), like
``torch.nn.functional.embedding``.

``embedding_forward(weight, ids)`` returns ``weight[ids]``, shape ``ids.shape + (D,)``.
``embedding_backward(dweight, dout, ids, padding_idx=None)`` accumulates (``+=``)
``dweight[ids[i]] += dout[i]`` for every position ``i`` (a repeated id sums its rows); rows of
positions whose id equals ``padding_idx`` are skipped. There is no input gradient (ids are
integers).

``ids`` is an integer array of any shape with values in ``[0, V)``; anything else raises an
error naming ``ids`` and the valid range (never an out-of-bounds read or write).

Versions
--------
embedding_forward
    numpy v1     reference: fancy indexing ``weight[ids]``
    numba v1     row copies, prange over positions (default)
    cuda v1      ``weight[ids]`` on CuPy arrays, no custom kernel
    cuda-emu v1  the same array-op code on NumPy arrays; no CUDA C is involved
embedding_backward
    numpy v1     reference: ``np.add.at`` (unbuffered scatter-add, repeated ids sum)
    numba v1     prange over blocks of 32 embedding columns: each task owns its columns of
                 every row, so repeated ids never race and the inner loop stays contiguous
                 (default)
    cuda v1      ``cupy.add.at`` (``cupyx.scatter_add`` before CuPy 13; atomics) on CuPy
                 arrays, no custom kernel
    cuda-emu v1  ``np.add.at`` through the same array-op code
"""
# V vocabulary rows (num_embeddings), D embedding dim, M positions (ids.size)
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import registry
from ._checks import check_float_array, check_shape

_COLUMN_BLOCK = 32


def check_ids(ids, num_embeddings: int, xp=np):
    """Validate ``ids`` (integer ``xp`` array, values in ``[0, num_embeddings)``); return it.

    Raises
    ------
    TypeError
        not an array of ``xp`` or not an integer dtype.
    ValueError
        a value lies outside ``[0, num_embeddings - 1]``; the message gives the offending min/max.
    """
    if not isinstance(ids, xp.ndarray):
        where = "a NumPy array" if xp is np else f"a {xp.__name__} array"
        raise TypeError(f"ids: expected {where} of integers, got "
                        f"{type(ids).__module__}.{type(ids).__name__}")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"ids: expected an integer dtype, got {ids.dtype}")
    if ids.size:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= num_embeddings:
            raise ValueError(f"ids: expected values in [0, {num_embeddings - 1}] "
                             f"(num_embeddings={num_embeddings}), got min {lo}, max {hi}")
    return ids


def _check_padding_idx(padding_idx, num_embeddings):
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)) \
            or not 0 <= padding_idx < num_embeddings:
        raise ValueError(f"padding_idx: expected None or an int in [0, {num_embeddings - 1}], "
                         f"got {padding_idx!r}")
    return int(padding_idx)


def _check_backward(xp, dweight, dout, ids, padding_idx):
    if check_float_array("dweight", dweight, ndim=2, xp=xp) is not dweight:
        # a copy would be updated and thrown away
        raise ValueError("dweight: expected a contiguous array (it is accumulated in place)")
    V, D = dweight.shape
    ids = check_ids(ids, V, xp)
    dout = check_float_array("dout", dout, dtype=dweight.dtype, xp=xp)
    check_shape("dout", dout, tuple(ids.shape) + (D,))
    return dout.reshape(-1, D), ids.reshape(-1), _check_padding_idx(padding_idx, V)


# ----------------------------------------------------------------------------
# reference (array ops; NumPy on "numpy", also run on the GPU backends)
# ----------------------------------------------------------------------------
def _forward_xp(xp, weight, ids):
    weight = check_float_array("weight", weight, ndim=2, xp=xp)
    ids = check_ids(ids, weight.shape[0], xp)
    return weight[ids]


def _backward_xp(xp, dweight, dout, ids, padding_idx=None):
    d2, flat, padding_idx = _check_backward(xp, dweight, dout, ids, padding_idx)
    if padding_idx is not None:
        keep = flat != padding_idx
        d2, flat = d2[keep], flat[keep]
    add_at = getattr(xp.add, "at", None)      # unbuffered: repeated ids accumulate
    if add_at is not None:                    # NumPy; CuPy >= 13 (atomics)
        add_at(dweight, flat, d2)
    else:                                     # older CuPy
        import cupyx
        cupyx.scatter_add(dweight, flat, d2)


@registry.register("embedding_forward", "numpy", 1, doc="reference: weight[ids]")
def embedding_forward_ref(weight, ids):
    return _forward_xp(np, weight, ids)


@registry.register("embedding_backward", "numpy", 1, doc="reference: np.add.at scatter-add")
def embedding_backward_ref(dweight, dout, ids, padding_idx=None):
    _backward_xp(np, dweight, dout, ids, padding_idx)


# ----------------------------------------------------------------------------
# Numba
# ----------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _gather_rows(weight, ids, out):
    M = ids.shape[0]
    D = weight.shape[1]
    for i in prange(M):
        r = ids[i]
        for d in range(D):
            out[i, d] = weight[r, d]


@njit(parallel=True, cache=True)
def _scatter_add_rows(dweight, dout, ids, padding_idx, block):
    M, D = dout.shape
    nblocks = (D + block - 1) // block
    for b in prange(nblocks):
        d0 = b * block
        d1 = min(D, d0 + block)
        for i in range(M):
            r = ids[i]
            if r == padding_idx:
                continue
            for d in range(d0, d1):
                dweight[r, d] += dout[i, d]


@registry.register("embedding_forward", "numba", 1, default=True,
                   doc="row copies, prange over positions")
def embedding_forward_numba_v1(weight, ids):
    weight = check_float_array("weight", weight, ndim=2)
    ids = check_ids(ids, weight.shape[0])
    flat = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)
    out = np.empty((flat.shape[0], weight.shape[1]), weight.dtype)
    _gather_rows(weight, flat, out)
    return out.reshape(tuple(ids.shape) + (weight.shape[1],))


@registry.register("embedding_backward", "numba", 1, default=True,
                   doc="scatter-add, prange over 32-column blocks (race-free)")
def embedding_backward_numba_v1(dweight, dout, ids, padding_idx=None):
    d2, flat, padding_idx = _check_backward(np, dweight, dout, ids, padding_idx)
    flat = np.ascontiguousarray(flat, dtype=np.int64)
    # ids are validated non-negative, so -1 never matches a real row
    _scatter_add_rows(dweight, d2, flat, -1 if padding_idx is None else padding_idx,
                      _COLUMN_BLOCK)


# ----------------------------------------------------------------------------
# GPU backends: the reference's array ops on the backend's array module
# ----------------------------------------------------------------------------
def _make_gpu(backend):
    from .cuda.common import device_xp

    def embedding_forward_array_ops(weight, ids):
        return _forward_xp(device_xp(backend), weight, ids)

    def embedding_backward_array_ops(dweight, dout, ids, padding_idx=None):
        _backward_xp(device_xp(backend), dweight, dout, ids, padding_idx)

    what = ("CuPy array ops (cupy.add.at)" if backend == "cuda"
            else "NumPy array ops (emulated backend)")
    registry.register("embedding_forward", backend, 1, default=True,
                      doc=f"{what}, no custom kernel")(embedding_forward_array_ops)
    registry.register("embedding_backward", backend, 1, default=True,
                      doc=f"{what}, no custom kernel")(embedding_backward_array_ops)


for _backend in ("cuda", "cuda-emu"):
    _make_gpu(_backend)
del _backend
