"""Losses: softmax cross-entropy (integer class targets) and mean squared error.

Both return the mean over the batch, like PyTorch's default ``reduction="mean"``.

Versions
--------
numpy v1  reference (log-sum-exp with the row max subtracted)
numba v1  one parallel pass over rows: max, exp-sum, probabilities, loss
cuda v1   (kernels/cuda/loss.cu, on "cuda" and "cuda-emu") softmax CE: one thread per row
          forward, one per element backward; MSE: a library mean forward, one thread per
          element backward
"""
# N rows, C classes
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import registry
from ._checks import check_float_array, check_shape
from .cuda.common import THREADS as CUDA_THREADS
from .cuda.common import blocks_for, ctype, device_xp, register_cuda
from .cuda.loader import load_module


def check_targets(targets, n: int, num_classes: int, xp=None):
    """Integer class indices, shape (N,), each in [0, C), in ``xp``'s memory (default NumPy;
    a host array is also accepted for a device backend and copied over)."""
    xp = np if xp is None else xp
    where = "NumPy" if xp is np else "NumPy or CuPy"
    if (not isinstance(targets, (np.ndarray, xp.ndarray))
            or targets.dtype.kind not in "iu"):
        raise TypeError(f"targets: expected an integer {where} array of class indices, "
                        f"got {getattr(targets, 'dtype', type(targets))}")
    check_shape("targets", targets, (n,))
    if n:
        lo, hi = int(targets.min()), int(targets.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"targets: class indices must lie in [0, {num_classes}), got range "
                             f"[{lo}, {hi}]")
    return xp.ascontiguousarray(xp.asarray(targets), dtype=np.int64)


def _check_ce(logits, targets, xp=None):
    logits = check_float_array("logits", logits, ndim=2, xp=xp)
    targets = check_targets(targets, logits.shape[0], logits.shape[1], xp=xp)
    return logits, targets


@registry.register("softmax_cross_entropy_forward", "numpy", 1,
                   doc="reference: mean(-log softmax(logits)[target]); returns (loss, probs)")
def softmax_cross_entropy_forward_ref(logits, targets):
    logits, targets = _check_ce(logits, targets)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_z
    loss = -log_p[np.arange(len(targets)), targets].mean()
    return logits.dtype.type(loss), np.exp(log_p)


@registry.register("softmax_cross_entropy_backward", "numpy", 1,
                   doc="reference: (probs - onehot) * dloss / N")
def softmax_cross_entropy_backward_ref(probs, targets, dloss=1.0):
    probs = check_float_array("probs", probs, ndim=2)
    targets = check_targets(targets, probs.shape[0], probs.shape[1])
    d = probs.copy()
    d[np.arange(len(targets)), targets] -= 1
    d *= dloss / max(len(targets), 1)
    return d


@njit(parallel=True, cache=True)
def _ce_forward(logits, targets, probs, row_loss):
    n, c = logits.shape
    for i in prange(n):
        m = logits[i, 0]
        for j in range(1, c):
            # NaN-propagating max: a NaN anywhere makes m NaN
            if logits[i, j] > m or logits[i, j] != logits[i, j]:
                m = logits[i, j]
        s = 0.0
        for j in range(c):
            e = math.exp(logits[i, j] - m)
            probs[i, j] = e
            s += e
        for j in range(c):
            probs[i, j] /= s
        row_loss[i] = math.log(s) - (logits[i, targets[i]] - m)


@njit(parallel=True, cache=True)
def _ce_backward(probs, targets, scale, d):
    n, c = probs.shape
    for i in prange(n):
        for j in range(c):
            d[i, j] = probs[i, j] * scale
        d[i, targets[i]] -= scale


@registry.register("softmax_cross_entropy_forward", "numba", 1, default=True,
                   doc="one parallel pass per row")
def softmax_cross_entropy_forward_numba_v1(logits, targets):
    logits, targets = _check_ce(logits, targets)
    probs = np.empty_like(logits)
    row_loss = np.empty(logits.shape[0], dtype=np.float64)
    _ce_forward(logits, targets, probs, row_loss)
    return logits.dtype.type(row_loss.mean() if len(row_loss) else np.nan), probs


@registry.register("softmax_cross_entropy_backward", "numba", 1, default=True,
                   doc="one parallel pass per row")
def softmax_cross_entropy_backward_numba_v1(probs, targets, dloss=1.0):
    probs = check_float_array("probs", probs, ndim=2)
    targets = check_targets(targets, probs.shape[0], probs.shape[1])
    d = np.empty_like(probs)
    _ce_backward(probs, targets, float(dloss) / max(len(targets), 1), d)
    return d


def _check_mse(pred, target, xp=None):
    pred = check_float_array("pred", pred, xp=xp)
    target = check_float_array("target", target, dtype=pred.dtype, xp=xp)
    check_shape("target", target, pred.shape)
    return pred, target


@registry.register("mse_forward", "numpy", 1, doc="reference: mean((pred - target)^2)")
def mse_forward_ref(pred, target):
    pred, target = _check_mse(pred, target)
    return pred.dtype.type(np.mean((pred - target) ** 2))


@registry.register("mse_backward", "numpy", 1, doc="reference: 2 (pred - target) dloss / size")
def mse_backward_ref(pred, target, dloss=1.0):
    pred, target = _check_mse(pred, target)
    return (2 * dloss / pred.size * (pred - target)).astype(pred.dtype)


@njit(parallel=True, cache=True)
def _mse_bwd(pred, target, scale, d):
    for i in prange(pred.size):
        d[i] = scale * (pred[i] - target[i])


@registry.register("mse_forward", "numba", 1, default=True, doc="same as reference (a reduction)")
def mse_forward_numba_v1(pred, target):
    return mse_forward_ref(pred, target)


@registry.register("mse_backward", "numba", 1, default=True, doc="fused parallel loop")
def mse_backward_numba_v1(pred, target, dloss=1.0):
    pred, target = _check_mse(pred, target)
    d = np.empty_like(pred)
    _mse_bwd(pred.reshape(-1), target.reshape(-1), 2 * float(dloss) / pred.size, d.reshape(-1))
    return d


# ----------------------------------------------------------------------------
# CUDA launchers (kernels/cuda/loss.cu): "cuda" (CuPy arrays) and "cuda-emu"
# ----------------------------------------------------------------------------
_CU_TEMPLATES = tuple(f"{k}<{t}>" for k in ("softmax_ce_fwd", "softmax_ce_bwd", "mse_bwd")
                      for t in ("float", "double"))
_CU_MAX_BLOCKS = 65535


def _cu_launch(backend, name, dtype, n, args):
    mod = load_module("loss.cu", backend, name_expressions=_CU_TEMPLATES)
    fn = mod.get_function(f"{name}<{ctype(dtype)}>")
    fn((min(blocks_for(n, CUDA_THREADS), _CU_MAX_BLOCKS),), (CUDA_THREADS,), args)


@register_cuda("softmax_cross_entropy_forward", 1, default=True,
               doc="one thread per row (max, exp-sum, probs, row loss); returns (loss, probs)")
def _make_ce_forward_cuda(backend):
    def softmax_cross_entropy_forward(logits, targets):
        xp = device_xp(backend)
        logits, targets = _check_ce(logits, targets, xp=xp)
        n, c = logits.shape
        probs = xp.empty_like(logits)
        row_loss = xp.empty(n, dtype=np.float64)
        if n:
            _cu_launch(backend, "softmax_ce_fwd", logits.dtype, n,
                       (probs, row_loss, logits, targets, np.int64(n), np.int32(c)))
        return logits.dtype.type(float(row_loss.mean()) if n else np.nan), probs
    return softmax_cross_entropy_forward


@register_cuda("softmax_cross_entropy_backward", 1, default=True,
               doc="one thread per element: (probs - onehot) * dloss / N")
def _make_ce_backward_cuda(backend):
    def softmax_cross_entropy_backward(probs, targets, dloss=1.0):
        xp = device_xp(backend)
        probs, targets = _check_ce(probs, targets, xp=xp)
        n, c = probs.shape
        d = xp.empty_like(probs)
        if n:
            _cu_launch(backend, "softmax_ce_bwd", probs.dtype, n * c,
                       (d, probs, targets, np.float64(float(dloss) / n), np.int64(n),
                        np.int32(c)))
        return d
    return softmax_cross_entropy_backward


@register_cuda("mse_forward", 1, default=True, doc="library reduction (xp.mean)")
def _make_mse_forward_cuda(backend):
    def mse_forward(pred, target):
        xp = device_xp(backend)
        pred, target = _check_mse(pred, target, xp=xp)
        return pred.dtype.type(float(xp.mean((pred - target) ** 2)))
    return mse_forward


@register_cuda("mse_backward", 1, default=True, doc="one thread per element")
def _make_mse_backward_cuda(backend):
    def mse_backward(pred, target, dloss=1.0):
        xp = device_xp(backend)
        pred, target = _check_mse(pred, target, xp=xp)
        d = xp.empty_like(pred)
        if pred.size:
            _cu_launch(backend, "mse_bwd", pred.dtype, pred.size,
                       (d, pred, target, np.float64(2.0 * float(dloss) / pred.size),
                        np.int64(pred.size)))
        return d
    return mse_backward
