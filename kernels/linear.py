"""Fully connected (dense) layer: ``out = x @ weight.T + bias``.

A GEMM that is not the subject of study here, so every version calls BLAS.

Versions
--------
numpy v1  reference: ``x @ weight.T`` (+ bias)
numba v1  ``np.dot`` inside ``@njit`` (SciPy's BLAS) with the bias add fused in a
          parallel loop; the bias gradient is a parallel column sum
cuda v1   (on "cuda" and "cuda-emu") the reference's array code on the backend's arrays:
          cuBLAS through ``cupy.matmul`` on "cuda" (NumPy's BLAS on "cuda-emu": cuBLAS is not
          emulated); no custom kernel, the GEMM is not the subject here
"""
# N rows (batch, or batch x time flattened), I in-features, O out-features
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import registry
from ._checks import check_float_array, check_shape
from .cuda.common import device_xp, register_cuda


def check_linear(x, weight, bias=None, xp=None):
    """Validate ``x`` (N, I), ``weight`` (O, I), ``bias`` (O,) or None; return contiguous copies.
    ``xp``: the required array module (default NumPy)."""
    x = check_float_array("x", x, ndim=2, xp=xp)
    weight = check_float_array("weight", weight, ndim=2, dtype=x.dtype, xp=xp)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"x: expected {weight.shape[1]} features (weight shape "
                         f"{tuple(weight.shape)}), got x shape {tuple(x.shape)}")
    if bias is not None:
        bias = check_float_array("bias", bias, ndim=1, dtype=x.dtype, xp=xp)
        check_shape("bias", bias, (weight.shape[0],))
    return x, weight, bias


def _check_dout(dout, n, o, dtype, xp=None):
    dout = check_float_array("dout", dout, ndim=2, dtype=dtype, xp=xp)
    check_shape("dout", dout, (n, o))
    return dout


# ----------------------------------------------------------------------------
# NumPy reference
# ----------------------------------------------------------------------------
@registry.register("linear_forward", "numpy", 1, doc="reference: x @ W.T + b")
def linear_forward_ref(x, weight, bias=None, *, xp=None):
    x, weight, bias = check_linear(x, weight, bias, xp=xp)
    out = x @ weight.T
    if bias is not None:
        out += bias
    return out


@registry.register("linear_backward_data", "numpy", 1, doc="reference: dout @ W")
def linear_backward_data_ref(dout, weight, *, xp=None):
    weight = check_float_array("weight", weight, ndim=2, xp=xp)
    dout = check_float_array("dout", dout, ndim=2, dtype=weight.dtype, xp=xp)
    if dout.shape[1] != weight.shape[0]:
        raise ValueError(f"dout: expected {weight.shape[0]} columns (weight shape "
                         f"{tuple(weight.shape)}), got {tuple(dout.shape)}")
    return dout @ weight


@registry.register("linear_backward_weight", "numpy", 1,
                   doc="reference: dW += dout.T @ x, db += dout.sum(0)")
def linear_backward_weight_ref(dweight, dbias, dout, x, *, xp=None):
    x, dweight, dbias = check_linear(x, dweight, dbias, xp=xp)
    dout = _check_dout(dout, x.shape[0], dweight.shape[0], x.dtype, xp=xp)
    dweight += dout.T @ x
    if dbias is not None:
        dbias += dout.sum(axis=0)


# ----------------------------------------------------------------------------
# Numba
# ----------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _add_bias_rows(out, bias):
    n, o = out.shape
    for i in prange(n):
        for j in range(o):
            out[i, j] += bias[j]


@njit(cache=True)
def _gemm_nt(a, b):
    # a (N, I) @ b (O, I)^T; numba's np.dot calls BLAS sgemm/dgemm
    return np.dot(a, b.T)


@njit(parallel=True, cache=True)
def _accumulate_column_sum(acc, a):
    n, o = a.shape
    for j in prange(o):
        s = 0.0
        for i in range(n):
            s += a[i, j]
        acc[j] += s


@registry.register("linear_forward", "numba", 1, default=True,
                   doc="BLAS GEMM + fused parallel bias add")
def linear_forward_numba_v1(x, weight, bias=None):
    x, weight, bias = check_linear(x, weight, bias)
    out = _gemm_nt(x, weight)
    if bias is not None:
        _add_bias_rows(out, bias)
    return out


@registry.register("linear_backward_data", "numba", 1, default=True, doc="BLAS GEMM dout @ W")
def linear_backward_data_numba_v1(dout, weight):
    weight = check_float_array("weight", weight, ndim=2)
    dout = check_float_array("dout", dout, ndim=2, dtype=weight.dtype)
    if dout.shape[1] != weight.shape[0]:
        raise ValueError(f"dout: expected {weight.shape[0]} columns (weight shape "
                         f"{tuple(weight.shape)}), got {tuple(dout.shape)}")
    return np.dot(dout, weight)


@registry.register("linear_backward_weight", "numba", 1, default=True,
                   doc="BLAS GEMM dout.T @ x, parallel column sum for the bias")
def linear_backward_weight_numba_v1(dweight, dbias, dout, x):
    x, dweight, dbias = check_linear(x, dweight, dbias)
    dout = _check_dout(dout, x.shape[0], dweight.shape[0], x.dtype)
    dweight += np.dot(dout.T, x)
    if dbias is not None:
        _accumulate_column_sum(dbias, dout)


# ----------------------------------------------------------------------------
# CUDA: the reference's array code on the backend's arrays (cuBLAS via cupy.matmul)
# ----------------------------------------------------------------------------
def _make_cuda_linear(ref):
    def factory(backend):
        def run(*args):
            return ref(*args, xp=device_xp(backend))
        run.__doc__ = f"{ref.__name__} on the {backend!r} backend's arrays."
        return run
    return factory


_DOC_CUDA = "cuBLAS GEMM via cupy.matmul + array ops (NumPy BLAS on cuda-emu)"
for _op, _ref in (("linear_forward", linear_forward_ref),
                  ("linear_backward_data", linear_backward_data_ref),
                  ("linear_backward_weight", linear_backward_weight_ref)):
    register_cuda(_op, 1, default=True, doc=_DOC_CUDA)(_make_cuda_linear(_ref))
del _op, _ref
