"""Batch normalisation over ``(N, C, *spatial)`` arrays, forward and backward
(``torch.nn.functional.batch_norm`` semantics).

Per channel ``c``, over the N batch entries and all spatial positions (M = N·S values)::

    training:  mean, var = batch mean and biased variance (divisor M)
               running_mean = (1 - momentum) * running_mean + momentum * mean
               running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)
    eval:      mean, var = running_mean, running_var
    y = (x - mean) / sqrt(var + eps) * weight + bias

``batchnorm_forward`` returns ``(y, cache)``; the cache (a :class:`BatchNormCache`, the same
layout for every backend) holds the input and per-channel mean and 1/std for the backward.
``batchnorm_backward(dweight, dbias, dy, cache)`` returns a fresh ``dx`` and accumulates (``+=``)
``dweight += sum(dy * xhat)``, ``dbias += sum(dy)``. With batch statistics the gradient flows
through the mean and variance too::

    dx = weight / std * (dy - mean(dy) - xhat * mean(dy * xhat))

in eval mode the statistics are constants: ``dx = weight / std * dy``.

``weight``/``bias`` may be None (``affine=False``: 1 and 0); ``running_mean``/``running_var`` may
be None with ``training=True`` (``track_running_stats=False``: nothing is updated).

Versions
--------
batchnorm_forward / batchnorm_backward
    numpy v1     reference, array ops over the (N, C, S) view (NumPy's pairwise sums)
    numba v1     one fused loop per channel, prange over channels, float64 accumulators,
                 two-pass variance (default)
    cuda v1      the reference's array ops on CuPy arrays, no custom kernel
    cuda-emu v1  the same array-op code on NumPy arrays (so models with BatchNorm run on the
                 emulated backend); no CUDA C is involved
"""
# N batch, C channels, S spatial positions (H·W, L or 1), M = N·S values per channel
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import registry
from ._checks import check_float_array, check_shape

__all__ = ["BatchNormCache"]


class BatchNormCache:
    """What the backward needs from a forward (identical for every backend).

    Attributes
    ----------
    x3 : array (N, C, S)
        the input (a view, not a copy).
    mean, invstd : array (C,)
        statistics used to normalise, in the input's dtype.
    weight : array (C,) or None
        the scale used in the forward.
    batch_stats : bool
        True if the statistics were computed from the batch (training), so the gradient flows
        through them.
    shape : tuple
        the input's shape, for ``dx``.
    """

    __slots__ = ("x3", "mean", "invstd", "weight", "batch_stats", "shape")

    def __init__(self, x3, mean, invstd, weight, batch_stats, shape):
        self.x3, self.mean, self.invstd, self.weight = x3, mean, invstd, weight
        self.batch_stats, self.shape = bool(batch_stats), tuple(shape)


def _check_forward(xp, x, weight, bias, running_mean, running_var, training, momentum, eps):
    """Validate arguments; return ``x`` contiguous and its (N, C, S) view plus the vectors."""
    x = check_float_array("x", x, xp=xp)
    if x.ndim < 2:
        raise ValueError(f"x: expected an (N, C, *spatial) array with at least 2 dims, got shape "
                         f"{tuple(x.shape)}")
    N, C = x.shape[:2]
    vecs = []
    for name, v in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if v is not None:
            checked = check_float_array(name, v, ndim=1, dtype=x.dtype, xp=xp)
            check_shape(name, checked, (C,))
            if name.startswith("running") and checked is not v:
                # a contiguous copy would be updated and thrown away
                raise ValueError(f"{name}: expected a contiguous array (it is updated in place)")
            v = checked
        vecs.append(v)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean/running_var: expected both arrays or both None, got "
                         f"{type(running_mean).__name__} and {type(running_var).__name__}")
    if not training and running_mean is None:
        raise ValueError("running_mean: required when training=False (eval mode normalises with "
                         "the running statistics); pass training=True to use batch statistics")
    momentum = float(momentum)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum: expected a number in [0, 1], got {momentum!r}")
    eps = float(eps)
    if not eps >= 0:
        raise ValueError(f"eps: expected a number >= 0, got {eps!r}")
    x3 = x.reshape(N, C, -1)
    if training and N * x3.shape[2] < 2:
        raise ValueError(f"x: expected more than 1 value per channel when training, got input "
                         f"shape {tuple(x.shape)}")
    return (x, x3, *vecs, momentum, eps)


def _update_running(running_mean, running_var, mean, var, momentum, m):
    """In-place exponential moving average; the variance fed in is the unbiased one (like torch)."""
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += (momentum * m / (m - 1)) * var


def _check_backward(xp, dweight, dbias, dy, cache):
    if not isinstance(cache, BatchNormCache):
        raise TypeError(f"cache: expected the BatchNormCache returned by batchnorm_forward, got "
                        f"{type(cache).__name__}")
    x3 = cache.x3
    dy = check_float_array("dy", dy, dtype=x3.dtype, xp=xp)
    check_shape("dy", dy, cache.shape)
    C = x3.shape[1]
    for name, v in (("dweight", dweight), ("dbias", dbias)):
        if v is not None:
            check_float_array(name, v, ndim=1, dtype=x3.dtype, xp=xp)
            check_shape(name, v, (C,))
            if not v.flags.c_contiguous:
                raise ValueError(f"{name}: expected a contiguous array (it is accumulated in "
                                 "place)")
    return dy.reshape(x3.shape)


# ----------------------------------------------------------------------------
# reference (array ops; NumPy on "numpy", also run with CuPy / NumPy on the GPU backends)
# ----------------------------------------------------------------------------
def _forward_xp(xp, x, weight, bias, running_mean, running_var, training, momentum, eps):
    x, x3, weight, bias, running_mean, running_var, momentum, eps = _check_forward(
        xp, x, weight, bias, running_mean, running_var, training, momentum, eps)
    if training:
        mean = x3.mean(axis=(0, 2))
        var = ((x3 - mean[:, None]) ** 2).mean(axis=(0, 2))      # two-pass: no cancellation
        if running_mean is not None:
            _update_running(running_mean, running_var, mean, var, momentum,
                            x3.shape[0] * x3.shape[2])
    else:
        mean, var = running_mean.copy(), running_var     # copy: later training steps update it
    invstd = 1 / xp.sqrt(var + x.dtype.type(eps))
    scale = invstd if weight is None else weight * invstd
    shift = -mean * scale if bias is None else bias - mean * scale
    y = x3 * scale[:, None] + shift[:, None]
    return y.reshape(x.shape), BatchNormCache(x3, mean, invstd, weight, training, x.shape)


def _backward_xp(xp, dweight, dbias, dy, cache):
    dy3 = _check_backward(xp, dweight, dbias, dy, cache)
    x3, mean, invstd = cache.x3, cache.mean, cache.invstd
    xhat = (x3 - mean[:, None]) * invstd[:, None]
    sum_dy = dy3.sum(axis=(0, 2))
    sum_dy_xhat = (dy3 * xhat).sum(axis=(0, 2))
    if dweight is not None:
        dweight += sum_dy_xhat
    if dbias is not None:
        dbias += sum_dy
    k = invstd if cache.weight is None else cache.weight * invstd
    if cache.batch_stats:
        m = x3.shape[0] * x3.shape[2]
        dx = k[:, None] * (dy3 - (sum_dy / m)[:, None] - xhat * (sum_dy_xhat / m)[:, None])
    else:
        dx = dy3 * k[:, None]
    return dx.reshape(cache.shape)


@registry.register("batchnorm_forward", "numpy", 1, doc="reference: array ops over (N, C, S)")
def batchnorm_forward_ref(x, weight, bias, running_mean, running_var, training, momentum, eps):
    return _forward_xp(np, x, weight, bias, running_mean, running_var, training, momentum, eps)


@registry.register("batchnorm_backward", "numpy", 1, doc="reference: array ops over (N, C, S)")
def batchnorm_backward_ref(dweight, dbias, dy, cache):
    return _backward_xp(np, dweight, dbias, dy, cache)


# ----------------------------------------------------------------------------
# Numba: one task per channel; each reads its channel's N strided rows of S values
# ----------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _bn_forward_numba(x3, weight, bias, mean_in, var_in, batch, eps, y, mean_out, var_out,
                      invstd_out):
    N, C, S = x3.shape
    M = N * S
    for c in prange(C):
        if batch:
            s = 0.0
            for n in range(N):
                for i in range(S):
                    s += x3[n, c, i]
            mu = s / M
            q = 0.0
            for n in range(N):
                for i in range(S):
                    d = x3[n, c, i] - mu
                    q += d * d
            v = q / M
        else:
            mu = np.float64(mean_in[c])
            v = np.float64(var_in[c])
        inv = 1.0 / np.sqrt(v + eps)
        mean_out[c] = mu
        var_out[c] = v
        invstd_out[c] = inv
        a = weight[c] * inv
        b = bias[c] - mu * a
        for n in range(N):
            for i in range(S):
                y[n, c, i] = x3[n, c, i] * a + b


@njit(parallel=True, cache=True)
def _bn_backward_numba(dy3, x3, mean, invstd, weight, batch, dx, sum_dy, sum_dy_xhat):
    N, C, S = x3.shape
    M = N * S
    for c in prange(C):
        mu = np.float64(mean[c])
        inv = np.float64(invstd[c])
        s1 = 0.0
        s2 = 0.0
        for n in range(N):
            for i in range(S):
                g = dy3[n, c, i]
                s1 += g
                s2 += g * (x3[n, c, i] - mu) * inv
        sum_dy[c] = s1
        sum_dy_xhat[c] = s2
        k = weight[c] * inv
        if batch:
            a = s1 / M
            b = s2 / M
            for n in range(N):
                for i in range(S):
                    dx[n, c, i] = k * (dy3[n, c, i] - a - (x3[n, c, i] - mu) * inv * b)
        else:
            for n in range(N):
                for i in range(S):
                    dx[n, c, i] = k * dy3[n, c, i]


@registry.register("batchnorm_forward", "numba", 1, default=True,
                   doc="fused stats + normalise per channel, prange over channels")
def batchnorm_forward_numba_v1(x, weight, bias, running_mean, running_var, training, momentum,
                               eps):
    x, x3, weight, bias, running_mean, running_var, momentum, eps = _check_forward(
        np, x, weight, bias, running_mean, running_var, training, momentum, eps)
    C, dt = x3.shape[1], x.dtype
    # affine=False / no running stats: neutral arrays keep one compiled signature
    w = np.ones(C, dt) if weight is None else weight
    b = np.zeros(C, dt) if bias is None else bias
    rm = np.zeros(C, dt) if running_mean is None else running_mean
    rv = np.ones(C, dt) if running_var is None else running_var
    y = np.empty_like(x3)
    mean, var, invstd = np.empty(C, np.float64), np.empty(C, np.float64), np.empty(C, np.float64)
    _bn_forward_numba(x3, w, b, rm, rv, bool(training), eps, y, mean, var, invstd)
    if training and running_mean is not None:
        _update_running(running_mean, running_var, mean.astype(dt), var.astype(dt), momentum,
                        x3.shape[0] * x3.shape[2])
    return y.reshape(x.shape), BatchNormCache(x3, mean.astype(dt), invstd.astype(dt), weight,
                                              training, x.shape)


@registry.register("batchnorm_backward", "numba", 1, default=True,
                   doc="fused reductions + dx per channel, prange over channels")
def batchnorm_backward_numba_v1(dweight, dbias, dy, cache):
    dy3 = _check_backward(np, dweight, dbias, dy, cache)
    x3 = cache.x3
    C, dt = x3.shape[1], x3.dtype
    w = np.ones(C, dt) if cache.weight is None else cache.weight
    dx = np.empty_like(x3)
    sum_dy, sum_dy_xhat = np.empty(C, np.float64), np.empty(C, np.float64)
    _bn_backward_numba(dy3, x3, cache.mean, cache.invstd, w, cache.batch_stats, dx, sum_dy,
                       sum_dy_xhat)
    if dweight is not None:
        dweight += sum_dy_xhat.astype(dt)
    if dbias is not None:
        dbias += sum_dy.astype(dt)
    return dx.reshape(cache.shape)


# ----------------------------------------------------------------------------
# GPU backends: the reference's array ops on the backend's array module
# ----------------------------------------------------------------------------
def _make_gpu(backend):
    from .cuda.common import device_xp

    def batchnorm_forward_array_ops(x, weight, bias, running_mean, running_var, training,
                                    momentum, eps):
        return _forward_xp(device_xp(backend), x, weight, bias, running_mean, running_var,
                           training, momentum, eps)

    def batchnorm_backward_array_ops(dweight, dbias, dy, cache):
        return _backward_xp(device_xp(backend), dweight, dbias, dy, cache)

    what = "CuPy" if backend == "cuda" else "NumPy (emulated backend)"
    registry.register("batchnorm_forward", backend, 1, default=True,
                      doc=f"{what} array ops, no custom kernel")(batchnorm_forward_array_ops)
    registry.register("batchnorm_backward", backend, 1, default=True,
                      doc=f"{what} array ops, no custom kernel")(batchnorm_backward_array_ops)


for _backend in ("cuda", "cuda-emu"):
    _make_gpu(_backend)
del _backend
