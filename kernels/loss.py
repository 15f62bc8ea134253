"""Losses: softmax cross-entropy (integer class targets) and mean squared error.

Both return the mean over the batch, like PyTorch's default ``reduction="mean"``.

Versions
--------
numpy v1  reference (log-sum-exp with the row max subtracted)
numba v1  one parallel pass over rows: max, exp-sum, probabilities, loss
"""
# N rows, C classes
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import registry
from ._checks import check_float_array, check_shape


def check_targets(targets, n: int, num_classes: int):
    """Integer class indices, shape (N,), each in [0, C)."""
    if not isinstance(targets, np.ndarray) or targets.dtype.kind not in "iu":
        raise TypeError(f"targets: expected an integer NumPy array of class indices, "
                        f"got {getattr(targets, 'dtype', type(targets))}")
    check_shape("targets", targets, (n,))
    if n and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"targets: class indices must lie in [0, {num_classes}), got range "
                         f"[{targets.min()}, {targets.max()}]")
    return np.ascontiguousarray(targets, dtype=np.int64)


def _check_ce(logits, targets):
    logits = check_float_array("logits", logits, ndim=2)
    targets = check_targets(targets, logits.shape[0], logits.shape[1])
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


def _check_mse(pred, target):
    pred = check_float_array("pred", pred)
    target = check_float_array("target", target, dtype=pred.dtype)
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
