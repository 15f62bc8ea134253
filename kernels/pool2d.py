"""2-d pooling on NCHW arrays: max, average and adaptive average, forward and backward.

Semantics follow PyTorch exactly (``torch.nn.functional.max_pool2d(...,
return_indices=True)``, ``avg_pool2d``, ``adaptive_avg_pool2d``):

* ``stride=None`` means ``stride = kernel_size``; ``padding <= kernel_size // 2``.
* ``ceil_mode``: the output size is rounded up, but the last window must start
  inside the input or the left padding (:func:`pool2d_output_size`).
* max pooling pads with -inf (never selected); ``argmax`` is int64 ``(N, C, P, Q)``
  holding the flat index ``h * W + w`` into the input plane. Ties pick the first
  maximum in window order, a NaN in the window wins (the last NaN) and gives NaN out.
* average pooling: ``count_include_pad`` counts padding cells in the divisor but
  never cells beyond the padded input (ceil_mode's partial last window);
  ``divisor_override`` replaces the divisor.
* adaptive average pooling: output cell ``i`` averages input rows
  ``floor(i*H/P) .. ceil((i+1)*H/P) - 1`` (windows may overlap and differ in size).

Backward kernels return a fresh ``dx`` (activation gradients overwrite).

Versions
--------
maxpool2d_forward
    numpy v1  reference: -inf padding, one strided slice per window offset
    numba v1  direct loops, prange over N·C planes, any geometry
    numba v2  fused 2×2/stride-2 path (no padding/dilation) writing out and argmax in
              one pass over row pairs; other geometries fall back to v1 (default)
    cuda v1   one thread per output element (out + argmax), grid-stride, 64-bit indices
maxpool2d_backward
    numpy v1  reference: ``np.add.at`` scatter-add of dout at argmax
    numba v1  zero dx, then scatter-add per plane, prange over N·C planes
    numba v2  one pass per plane: zero the plane while it is in cache, then scatter-add
              (no separate zero pass over dx), any geometry (default). A direct write of
              2×2 cells (dout or 0, no zero fill) was measured and was not faster.
    cuda v1   one thread per dout element, atomicAdd scatter into a zeroed dx (the op
              carries no window geometry, so no gather); float32 sums of overlapping
              windows may differ in the last bits between runs
avgpool2d_forward
    numpy v1  reference: zero padding, sum of strided slices, separable divisor
    numba v1  direct loops over the clipped window, float64 accumulator, prange over planes
    cuda v1   one thread per output element, accumulator in the input dtype
avgpool2d_backward
    numpy v1  reference: strided-slice scatter of dout / divisor into padded dx
    numba v1  per-plane zero + scatter over the clipped window, prange over planes
    cuda v1   one thread per input element gathering from the windows covering it
              (deterministic, no atomics)
adaptive_avgpool2d_forward
    numpy v1  reference: loop over output cells, mean of each input block
    numba v1  direct loops, float64 accumulator, prange over planes
    cuda v1   one thread per output element
adaptive_avgpool2d_backward
    numpy v1  reference: loop over output cells, spread dout / count over the block
    numba v1  per-plane zero + scatter, prange over planes
    cuda v1   one thread per input element gathering from the output cells covering it

The ``cuda`` versions (source ``kernels/cuda/pool2d.cu``) are registered on ``cuda``
(CuPy arrays) and ``cuda-emu`` (NumPy arrays, the CPU emulator); they validate exactly
like the CPU versions and return arrays of the backend's array module.
"""
# N batch, C channels, H W in, P Q out, R S window
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import registry
from ._checks import check_float_array, check_shape, pair
from .cuda.common import THREADS as CUDA_THREADS
from .cuda.common import blocks_for, check_device_array, ctype, device_xp, register_cuda
from .cuda.loader import load_module

__all__ = ["pool2d_output_size"]


# ----------------------------------------------------------------------------
# geometry and argument checks (shared by every version)
# ----------------------------------------------------------------------------
def pool2d_output_size(in_size, kernel, stride, padding, dilation=1, ceil_mode=False):
    """Pooled length along one axis, PyTorch's rule (``pooling_output_shape``)::

        out = floor_or_ceil((in + 2*pad - dilation*(kernel-1) - 1) / stride) + 1
        if ceil_mode and (out-1)*stride >= in + pad:   # the last window must start
            out -= 1                                   # inside the input or left padding

    Arguments may be ints or ``(h, w)`` pairs; with any pair the result is a pair.
    The result can be <= 0 (callers reject that).
    """
    args = (in_size, kernel, stride, padding, dilation)
    if any(not isinstance(a, (int, np.integer)) for a in args):
        h, w = zip(*(pair("pool2d_output_size", a) if not isinstance(a, (int, np.integer))
                     else (int(a), int(a)) for a in args))
        return (pool2d_output_size(*h, ceil_mode=ceil_mode),
                pool2d_output_size(*w, ceil_mode=ceil_mode))
    in_size, kernel, stride, padding, dilation = (int(a) for a in args)
    span = in_size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= in_size + padding:
            out -= 1
    else:
        out = span // stride + 1
    return out


def _check_x(x):
    return check_float_array("x", x, ndim=4)


def _check_x_shape(x_shape, dout):
    try:
        shape = tuple(int(s) for s in x_shape)
        ok = len(shape) == 4 and min(shape) >= 0 and all(float(s) == int(s) for s in x_shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"x_shape: expected 4 non-negative ints (N, C, H, W), got {x_shape!r}")
    if shape[:2] != tuple(dout.shape[:2]):
        raise ValueError(f"x_shape: N, C of {shape} do not match dout's shape {tuple(dout.shape)}")
    return shape


def _geometry(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    """Validate pooling hyper-parameters; return ``(kh, kw, sh, sw, ph, pw, dh, dw, P, Q)``."""
    kh, kw = pair("kernel_size", kernel_size, minimum=1)
    sh, sw = (kh, kw) if stride is None else pair("stride", stride, minimum=1)
    ph, pw = pair("padding", padding, minimum=0)
    dh, dw = pair("dilation", dilation, minimum=1)
    ceil_mode = _check_bool("ceil_mode", ceil_mode)
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(
            f"padding: must be at most half the kernel size (padding <= kernel_size // 2), "
            f"got padding=({ph}, {pw}) with kernel_size=({kh}, {kw})")
    H, W = x_shape[2], x_shape[3]
    P = pool2d_output_size(H, kh, sh, ph, dh, ceil_mode)
    Q = pool2d_output_size(W, kw, sw, pw, dw, ceil_mode)
    if P <= 0 or Q <= 0:
        raise ValueError(
            f"kernel_size: window ({kh}, {kw}) with dilation ({dh}, {dw}) does not fit the "
            f"input {H}x{W} padded by ({ph}, {pw}); the output size would be {P}x{Q}")
    return kh, kw, sh, sw, ph, pw, dh, dw, P, Q


def _check_divisor(divisor_override):
    if divisor_override is None:
        return 0
    if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)):
        raise TypeError(f"divisor_override: expected None or an int, got {divisor_override!r}")
    if divisor_override == 0:
        raise ValueError("divisor_override: must not be zero")
    return int(divisor_override)


def _check_bool(name, value):
    if not (isinstance(value, (bool, np.bool_))
            or (isinstance(value, (int, np.integer)) and value in (0, 1))):
        raise TypeError(f"{name}: expected a bool, got {value!r}")
    return bool(value)


def _check_argmax(argmax, dout, x_shape, xp=np):
    """``argmax`` an int64 array of ``dout``'s shape in module ``xp`` (NumPy, or CuPy for
    the ``cuda`` launchers); returned C-contiguous."""
    if not isinstance(argmax, xp.ndarray):
        if xp is np:
            raise TypeError(f"argmax: expected a NumPy array, got {type(argmax).__name__}")
        if isinstance(argmax, np.ndarray):
            raise TypeError(f"argmax: expected a {xp.__name__} array (GPU memory), got a NumPy "
                            "(host) array; move it with cupy.asarray()")
        raise TypeError(f"argmax: expected a {xp.__name__} array, got "
                        f"{type(argmax).__module__}.{type(argmax).__name__}")
    if argmax.dtype != np.int64:
        raise TypeError(f"argmax: expected dtype int64, got {argmax.dtype}")
    check_shape("argmax", argmax, tuple(dout.shape))
    if not argmax.flags.c_contiguous:
        argmax = xp.ascontiguousarray(argmax)
    return argmax


def _adaptive_size(output_size, H, W):
    """Normalise ``output_size`` (int, pair, ``None`` entries = keep input size)."""
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(d if s is None else s for s, d in zip(output_size, (H, W)))
    P, Q = pair("output_size", output_size)
    if P < 1 or Q < 1:
        raise ValueError(f"output_size: expected values >= 1, got {output_size!r}")
    return P, Q


def _adaptive_bounds(n_in, n_out):
    """PyTorch's adaptive windows: start = floor(i*n_in/n_out), end = ceil((i+1)*n_in/n_out)."""
    i = np.arange(n_out)
    return (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)


# ----------------------------------------------------------------------------
# NumPy reference
# ----------------------------------------------------------------------------
def _first_valid(start, step):
    """First index ``>= 0`` of ``start, start+step, ...`` (PyTorch's skip over left padding)."""
    return np.where(start < 0, start + (-start + step - 1) // step * step, start)


def maxpool2d_forward_numpy(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Reference max pooling: returns ``(out, argmax)``."""
    x = _check_x(x)
    kh, kw, sh, sw, ph, pw, dh, dw, P, Q = _geometry(x.shape, kernel_size, stride, padding,
                                                     dilation, ceil_mode)
    N, C, H, W = x.shape
    # -inf padding, wide enough for every window incl. ceil_mode's partial last one;
    # in padded coordinates window (p, q) starts at (p*sh, q*sw)
    Hp = max(H + 2 * ph, (P - 1) * sh + (kh - 1) * dh + 1)
    Wp = max(W + 2 * pw, (Q - 1) * sw + (kw - 1) * dw + 1)
    xp = np.full((N, C, Hp, Wp), -np.inf, dtype=x.dtype)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    h0 = np.arange(P) * sh - ph                     # window start rows in input coordinates
    w0 = np.arange(Q) * sw - pw
    out = np.full((N, C, P, Q), -np.inf, dtype=x.dtype)
    # PyTorch starts from the first in-bounds cell (kept when every value is -inf)
    argmax = np.broadcast_to(_first_valid(h0, dh)[:, None] * W + _first_valid(w0, dw)[None, :],
                             out.shape).astype(np.int64)
    for r in range(kh):
        for s in range(kw):
            v = xp[:, :, r * dh:r * dh + (P - 1) * sh + 1:sh, s * dw:s * dw + (Q - 1) * sw + 1:sw]
            idx = (h0 + r * dh)[:, None] * W + (w0 + s * dw)[None, :]
            take = (v > out) | np.isnan(v)          # first maximum wins; NaN always wins
            out = np.where(take, v, out)
            argmax = np.where(take, idx, argmax)
    return out, argmax


def maxpool2d_backward_numpy(dout, argmax, x_shape):
    """Reference: ``dx`` with ``dout`` scatter-added at ``argmax``."""
    dout = check_float_array("dout", dout, ndim=4)
    argmax = _check_argmax(argmax, dout, x_shape)
    N, C, H, W = _check_x_shape(x_shape, dout)
    if argmax.size and (argmax.min() < 0 or argmax.max() >= H * W):
        raise ValueError(f"argmax: indices must lie in [0, {H * W}) for an input plane of "
                         f"{H}x{W}, got [{argmax.min()}, {argmax.max()}]")
    dx = np.zeros((N * C, H * W), dtype=dout.dtype)
    PQ = dout.shape[2] * dout.shape[3]
    planes = np.arange(N * C)[:, None]
    np.add.at(dx, (planes, argmax.reshape(N * C, PQ)), dout.reshape(N * C, PQ))
    return dx.reshape(N, C, H, W)


def _avg_divisor(H, W, kh, kw, sh, sw, ph, pw, P, Q, count_include_pad, divisor):
    """``(P, Q)`` divisor: window cells inside the padded input (count_include_pad) or
    inside the input; ``divisor_override`` wins."""
    if divisor:
        return np.full((P, Q), float(divisor))

    def counts(n, k, s, p, m):
        start = np.arange(m) * s - p
        end = np.minimum(start + k, n + p)          # never past the padded input
        if count_include_pad:
            return end - start
        return np.minimum(end, n) - np.maximum(start, 0)
    return np.outer(counts(H, kh, sh, ph, P), counts(W, kw, sw, pw, Q)).astype(np.float64)


def avgpool2d_forward_numpy(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                            count_include_pad=True, divisor_override=None):
    """Reference average pooling."""
    x = _check_x(x)
    kh, kw, sh, sw, ph, pw, _, _, P, Q = _geometry(x.shape, kernel_size, stride, padding, 1,
                                                   ceil_mode)
    cip = _check_bool("count_include_pad", count_include_pad)
    div = _check_divisor(divisor_override)
    N, C, H, W = x.shape
    Hp = max(H + 2 * ph, (P - 1) * sh + kh)
    Wp = max(W + 2 * pw, (Q - 1) * sw + kw)
    xp = np.zeros((N, C, Hp, Wp), dtype=x.dtype)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    total = np.zeros((N, C, P, Q), dtype=x.dtype)
    for r in range(kh):
        for s in range(kw):
            total += xp[:, :, r:r + (P - 1) * sh + 1:sh, s:s + (Q - 1) * sw + 1:sw]
    return (total / _avg_divisor(H, W, kh, kw, sh, sw, ph, pw, P, Q, cip, div)).astype(x.dtype)


def avgpool2d_backward_numpy(dout, x_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                             count_include_pad=True, divisor_override=None):
    """Reference: each window spreads ``dout / divisor`` over its cells."""
    dout = check_float_array("dout", dout, ndim=4)
    N, C, H, W = _check_x_shape(x_shape, dout)
    kh, kw, sh, sw, ph, pw, _, _, P, Q = _geometry((N, C, H, W), kernel_size, stride, padding, 1,
                                                   ceil_mode)
    cip = _check_bool("count_include_pad", count_include_pad)
    div = _check_divisor(divisor_override)
    check_shape("dout", dout, (N, C, P, Q))
    g = (dout / _avg_divisor(H, W, kh, kw, sh, sw, ph, pw, P, Q, cip, div)).astype(dout.dtype)
    Hp = max(H + 2 * ph, (P - 1) * sh + kh)
    Wp = max(W + 2 * pw, (Q - 1) * sw + kw)
    dxp = np.zeros((N, C, Hp, Wp), dtype=dout.dtype)
    for r in range(kh):
        for s in range(kw):
            dxp[:, :, r:r + (P - 1) * sh + 1:sh, s:s + (Q - 1) * sw + 1:sw] += g
    return np.ascontiguousarray(dxp[:, :, ph:ph + H, pw:pw + W])


def adaptive_avgpool2d_forward_numpy(x, output_size):
    """Reference adaptive average pooling."""
    x = _check_x(x)
    N, C, H, W = x.shape
    P, Q = _adaptive_size(output_size, H, W)
    hs, he = _adaptive_bounds(H, P)
    ws, we = _adaptive_bounds(W, Q)
    out = np.empty((N, C, P, Q), dtype=x.dtype)
    for i in range(P):
        for j in range(Q):
            out[:, :, i, j] = x[:, :, hs[i]:he[i], ws[j]:we[j]].mean(axis=(2, 3))
    return out


def adaptive_avgpool2d_backward_numpy(dout, x_shape):
    """Reference: each output cell spreads ``dout / block size`` over its input block."""
    dout = check_float_array("dout", dout, ndim=4)
    N, C, H, W = _check_x_shape(x_shape, dout)
    P, Q = dout.shape[2:]
    if P < 1 or Q < 1:
        raise ValueError(f"dout: expected output sizes >= 1, got shape {tuple(dout.shape)}")
    hs, he = _adaptive_bounds(H, P)
    ws, we = _adaptive_bounds(W, Q)
    dx = np.zeros((N, C, H, W), dtype=dout.dtype)
    for i in range(P):
        for j in range(Q):
            count = (he[i] - hs[i]) * (we[j] - ws[j])
            dx[:, :, hs[i]:he[i], ws[j]:we[j]] += dout[:, :, i, j, None, None] / count
    return dx


# ----------------------------------------------------------------------------
# Numba kernels (x, out viewed as (N·C, H, W) / (N·C, P, Q))
# ----------------------------------------------------------------------------
@njit(parallel=True, fastmath=False, cache=True)
def _maxpool_fwd_v1(x, out, argmax, kh, kw, sh, sw, ph, pw, dh, dw):
    NC, H, W = x.shape
    P, Q = out.shape[1], out.shape[2]
    for nc in prange(NC):
        for p in range(P):
            h0 = p * sh - ph
            hs = h0
            while hs < 0:
                hs += dh
            for q in range(Q):
                w0 = q * sw - pw
                ws = w0
                while ws < 0:
                    ws += dw
                m = -np.inf
                idx = hs * W + ws
                for r in range(kh):
                    h = h0 + r * dh
                    if h < 0 or h >= H:
                        continue
                    for s in range(kw):
                        w = w0 + s * dw
                        if w < 0 or w >= W:
                            continue
                        v = x[nc, h, w]
                        if v > m or v != v:
                            m = v
                            idx = h * W + w
                out[nc, p, q] = m
                argmax[nc, p, q] = idx


@njit(parallel=True, fastmath=False, cache=True)
def _maxpool_fwd_2x2(x, out, argmax):
    # 2×2 windows, stride 2, no padding/dilation, every window inside the input
    NC, H, W = x.shape
    P, Q = out.shape[1], out.shape[2]
    for nc in prange(NC):
        xc = x[nc]
        oc = out[nc]
        ac = argmax[nc]
        for p in range(P):
            x0 = xc[2 * p]
            x1 = xc[2 * p + 1]
            o = oc[p]
            a = ac[p]
            base = 2 * p * W
            for q in range(Q):
                c = 2 * q
                m = x0[c]
                k = 0
                v = x0[c + 1]
                if (v > m) | (v != v):
                    m = v
                    k = 1
                v = x1[c]
                if (v > m) | (v != v):
                    m = v
                    k = W
                v = x1[c + 1]
                if (v > m) | (v != v):
                    m = v
                    k = W + 1
                o[q] = m
                a[q] = base + c + k


@njit(parallel=True, fastmath=False, cache=True)
def _maxpool_bwd_v1(dout, argmax, dx):
    # dx zero-filled by the caller; returns the number of planes with bad indices
    NC, P, Q = dout.shape
    HW = dx.shape[1]
    bad = np.zeros(NC, dtype=np.int64)
    for nc in prange(NC):
        for p in range(P):
            for q in range(Q):
                i = argmax[nc, p, q]
                if i < 0 or i >= HW:
                    bad[nc] = 1
                else:
                    dx[nc, i] += dout[nc, p, q]
    return bad.sum()


@njit(parallel=True, fastmath=False, cache=True)
def _maxpool_bwd_scatter(dout, argmax, dx):
    # per-plane zero fill (in cache) + scatter-add; returns the number of bad planes
    NC, P, Q = dout.shape
    HW = dx.shape[1]
    bad = np.zeros(NC, dtype=np.int64)
    for nc in prange(NC):
        d = dx[nc]
        d[:] = 0
        for p in range(P):
            for q in range(Q):
                i = argmax[nc, p, q]
                if i < 0 or i >= HW:
                    bad[nc] = 1
                else:
                    d[i] += dout[nc, p, q]
    return bad.sum()


@njit(parallel=True, fastmath=False, cache=True)
def _avgpool_fwd_v1(x, out, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    NC, H, W = x.shape
    P, Q = out.shape[1], out.shape[2]
    for nc in prange(NC):
        for p in range(P):
            h0 = p * sh - ph
            h1 = min(h0 + kh, H + ph)
            pool_h = h1 - h0
            h0 = max(h0, 0)
            h1 = min(h1, H)
            for q in range(Q):
                w0 = q * sw - pw
                w1 = min(w0 + kw, W + pw)
                pool_w = w1 - w0
                w0 = max(w0, 0)
                w1 = min(w1, W)
                acc = 0.0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        acc += x[nc, h, w]
                if divisor != 0:
                    div = divisor
                elif count_include_pad:
                    div = pool_h * pool_w
                else:
                    div = (h1 - h0) * (w1 - w0)
                out[nc, p, q] = acc / div if div != 0 else 0.0


@njit(parallel=True, fastmath=False, cache=True)
def _avgpool_bwd_v1(dout, dx, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    NC, P, Q = dout.shape
    H, W = dx.shape[1], dx.shape[2]
    for nc in prange(NC):
        d = dx[nc]
        d[:, :] = 0
        for p in range(P):
            h0 = p * sh - ph
            h1 = min(h0 + kh, H + ph)
            pool_h = h1 - h0
            h0 = max(h0, 0)
            h1 = min(h1, H)
            for q in range(Q):
                w0 = q * sw - pw
                w1 = min(w0 + kw, W + pw)
                pool_w = w1 - w0
                w0 = max(w0, 0)
                w1 = min(w1, W)
                if divisor != 0:
                    div = divisor
                elif count_include_pad:
                    div = pool_h * pool_w
                else:
                    div = (h1 - h0) * (w1 - w0)
                if div == 0:
                    continue
                g = dout[nc, p, q] / div
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        d[h, w] += g


@njit(parallel=True, fastmath=False, cache=True)
def _adaptive_fwd_v1(x, out):
    NC, H, W = x.shape
    P, Q = out.shape[1], out.shape[2]
    for nc in prange(NC):
        for p in range(P):
            h0 = (p * H) // P
            h1 = ((p + 1) * H + P - 1) // P
            for q in range(Q):
                w0 = (q * W) // Q
                w1 = ((q + 1) * W + Q - 1) // Q
                acc = 0.0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        acc += x[nc, h, w]
                out[nc, p, q] = acc / ((h1 - h0) * (w1 - w0))


@njit(parallel=True, fastmath=False, cache=True)
def _adaptive_bwd_v1(dout, dx):
    NC, P, Q = dout.shape
    H, W = dx.shape[1], dx.shape[2]
    for nc in prange(NC):
        d = dx[nc]
        d[:, :] = 0
        for p in range(P):
            h0 = (p * H) // P
            h1 = ((p + 1) * H + P - 1) // P
            for q in range(Q):
                w0 = (q * W) // Q
                w1 = ((q + 1) * W + Q - 1) // Q
                g = dout[nc, p, q] / ((h1 - h0) * (w1 - w0))
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        d[h, w] += g


# ----------------------------------------------------------------------------
# Numba wrappers (validation, views, fallbacks)
# ----------------------------------------------------------------------------
def _planes(a):
    n, c = a.shape[:2]
    return a.reshape(n * c, *a.shape[2:])


def _bad_argmax(H, W):
    return ValueError(f"argmax: indices must lie in [0, {H * W}) for an input plane of {H}x{W}")


def maxpool2d_forward_numba_v1(x, kernel_size, stride=None, padding=0, dilation=1,
                               ceil_mode=False):
    x = _check_x(x)
    kh, kw, sh, sw, ph, pw, dh, dw, P, Q = _geometry(x.shape, kernel_size, stride, padding,
                                                     dilation, ceil_mode)
    N, C = x.shape[:2]
    out = np.empty((N, C, P, Q), dtype=x.dtype)
    argmax = np.empty((N, C, P, Q), dtype=np.int64)
    _maxpool_fwd_v1(_planes(x), _planes(out), _planes(argmax), kh, kw, sh, sw, ph, pw, dh, dw)
    return out, argmax


def maxpool2d_forward_numba_v2(x, kernel_size, stride=None, padding=0, dilation=1,
                               ceil_mode=False):
    x = _check_x(x)
    geom = _geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    kh, kw, sh, sw, ph, pw, dh, dw, P, Q = geom
    N, C, H, W = x.shape
    out = np.empty((N, C, P, Q), dtype=x.dtype)
    argmax = np.empty((N, C, P, Q), dtype=np.int64)
    if (kh, kw, sh, sw, ph, pw, dh, dw) == (2, 2, 2, 2, 0, 0, 1, 1) and 2 * P <= H \
            and 2 * Q <= W:  # ceil_mode's partial last window goes to v1
        _maxpool_fwd_2x2(_planes(x), _planes(out), _planes(argmax))
        return out, argmax
    _maxpool_fwd_v1(_planes(x), _planes(out), _planes(argmax), kh, kw, sh, sw, ph, pw, dh, dw)
    return out, argmax


def _max_bwd_args(dout, argmax, x_shape):
    dout = check_float_array("dout", dout, ndim=4)
    argmax = _check_argmax(argmax, dout, x_shape)
    shape = _check_x_shape(x_shape, dout)
    return dout, argmax, shape


def maxpool2d_backward_numba_v1(dout, argmax, x_shape):
    dout, argmax, (N, C, H, W) = _max_bwd_args(dout, argmax, x_shape)
    dx = np.zeros((N, C, H, W), dtype=dout.dtype)
    if _maxpool_bwd_v1(_planes(dout), _planes(argmax), dx.reshape(N * C, H * W)):
        raise _bad_argmax(H, W)
    return dx


def maxpool2d_backward_numba_v2(dout, argmax, x_shape):
    dout, argmax, (N, C, H, W) = _max_bwd_args(dout, argmax, x_shape)
    dx = np.empty((N, C, H, W), dtype=dout.dtype)
    if _maxpool_bwd_scatter(_planes(dout), _planes(argmax), dx.reshape(N * C, H * W)):
        raise _bad_argmax(H, W)
    return dx


def avgpool2d_forward_numba_v1(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                               count_include_pad=True, divisor_override=None):
    x = _check_x(x)
    kh, kw, sh, sw, ph, pw, _, _, P, Q = _geometry(x.shape, kernel_size, stride, padding, 1,
                                                   ceil_mode)
    cip = _check_bool("count_include_pad", count_include_pad)
    div = _check_divisor(divisor_override)
    N, C = x.shape[:2]
    out = np.empty((N, C, P, Q), dtype=x.dtype)
    _avgpool_fwd_v1(_planes(x), _planes(out), kh, kw, sh, sw, ph, pw, cip, div)
    return out


def avgpool2d_backward_numba_v1(dout, x_shape, kernel_size, stride=None, padding=0,
                                ceil_mode=False, count_include_pad=True, divisor_override=None):
    dout = check_float_array("dout", dout, ndim=4)
    N, C, H, W = _check_x_shape(x_shape, dout)
    kh, kw, sh, sw, ph, pw, _, _, P, Q = _geometry((N, C, H, W), kernel_size, stride, padding, 1,
                                                   ceil_mode)
    cip = _check_bool("count_include_pad", count_include_pad)
    div = _check_divisor(divisor_override)
    check_shape("dout", dout, (N, C, P, Q))
    dx = np.empty((N, C, H, W), dtype=dout.dtype)
    _avgpool_bwd_v1(_planes(dout), _planes(dx), kh, kw, sh, sw, ph, pw, cip, div)
    return dx


def adaptive_avgpool2d_forward_numba_v1(x, output_size):
    x = _check_x(x)
    N, C, H, W = x.shape
    P, Q = _adaptive_size(output_size, H, W)
    out = np.empty((N, C, P, Q), dtype=x.dtype)
    _adaptive_fwd_v1(_planes(x), _planes(out))
    return out


def adaptive_avgpool2d_backward_numba_v1(dout, x_shape):
    dout = check_float_array("dout", dout, ndim=4)
    N, C, H, W = _check_x_shape(x_shape, dout)
    if dout.shape[2] < 1 or dout.shape[3] < 1:
        raise ValueError(f"dout: expected output sizes >= 1, got shape {tuple(dout.shape)}")
    dx = np.empty((N, C, H, W), dtype=dout.dtype)
    _adaptive_bwd_v1(_planes(dout), _planes(dx))
    return dx


# ----------------------------------------------------------------------------
# CUDA launchers (kernels/cuda/pool2d.cu): registered on "cuda" (CuPy arrays) and
# "cuda-emu" (NumPy arrays, CPU emulator). Same validation as the CPU versions; one thread
# per output (forward) / input (backward) element, grid-stride loops over 64-bit indices.
# ----------------------------------------------------------------------------
_CU_FILE = "pool2d.cu"
_CU_KERNELS = ("maxpool2d_fwd", "maxpool2d_bwd_scatter", "avgpool2d_fwd", "avgpool2d_bwd",
               "adaptive_avgpool2d_fwd", "adaptive_avgpool2d_bwd")
_CU_TEMPLATES = tuple(f"{k}<{t}>" for k in _CU_KERNELS for t in ("float", "double"))
_CU_MAX_BLOCKS = 65535        # grid-stride loops cover the rest


def _cu_launch(backend, kernel, dtype, total, arrays, scalars):
    """Launch ``kernel<ctype(dtype)>(*arrays, (long long)total, *scalars)`` with one thread
    per element (grid-stride beyond ``_CU_MAX_BLOCKS`` blocks); nothing to do when 0."""
    if total == 0:
        return
    mod = load_module(_CU_FILE, backend, name_expressions=_CU_TEMPLATES)
    fn = mod.get_function(f"{kernel}<{ctype(dtype)}>")
    grid = min(blocks_for(total, CUDA_THREADS), _CU_MAX_BLOCKS)
    fn((grid,), (CUDA_THREADS,), tuple(arrays) + (np.int64(total),) + tuple(scalars))


def _i32(*values):
    return tuple(np.int32(v) for v in values)


@register_cuda("maxpool2d_forward", 1, default=True,
               doc="one thread per output element (out + argmax), grid-stride")
def _make_maxpool_forward_cuda(backend):
    def maxpool2d_forward_cuda_v1(x, kernel_size, stride=None, padding=0, dilation=1,
                                  ceil_mode=False):
        x = check_device_array("x", x, backend, ndim=4)
        kh, kw, sh, sw, ph, pw, dh, dw, P, Q = _geometry(x.shape, kernel_size, stride, padding,
                                                         dilation, ceil_mode)
        xp = device_xp(backend)
        N, C, H, W = x.shape
        out = xp.empty((N, C, P, Q), dtype=x.dtype)
        argmax = xp.empty((N, C, P, Q), dtype=np.int64)
        _cu_launch(backend, "maxpool2d_fwd", x.dtype, out.size, (out, argmax, x),
                   _i32(H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw))
        return out, argmax
    return maxpool2d_forward_cuda_v1


@register_cuda("maxpool2d_backward", 1, default=True,
               doc="one thread per dout element, atomicAdd scatter at argmax")
def _make_maxpool_backward_cuda(backend):
    def maxpool2d_backward_cuda_v1(dout, argmax, x_shape):
        dout = check_device_array("dout", dout, backend, ndim=4)
        xp = device_xp(backend)
        argmax = _check_argmax(argmax, dout, x_shape, xp)
        N, C, H, W = _check_x_shape(x_shape, dout)
        dx = xp.zeros((N, C, H, W), dtype=dout.dtype)
        bad = xp.zeros(1, dtype=np.int32)
        _cu_launch(backend, "maxpool2d_bwd_scatter", dout.dtype, dout.size,
                   (dx, bad, dout, argmax),
                   (np.int64(H * W), np.int64(dout.shape[2] * dout.shape[3])))
        if int(bad[0]):
            raise _bad_argmax(H, W)
        return dx
    return maxpool2d_backward_cuda_v1


@register_cuda("avgpool2d_forward", 1, default=True, doc="one thread per output element")
def _make_avgpool_forward_cuda(backend):
    def avgpool2d_forward_cuda_v1(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                                  count_include_pad=True, divisor_override=None):
        x = check_device_array("x", x, backend, ndim=4)
        kh, kw, sh, sw, ph, pw, _, _, P, Q = _geometry(x.shape, kernel_size, stride, padding, 1,
                                                       ceil_mode)
        cip = _check_bool("count_include_pad", count_include_pad)
        div = _check_divisor(divisor_override)
        xp = device_xp(backend)
        N, C, H, W = x.shape
        out = xp.empty((N, C, P, Q), dtype=x.dtype)
        _cu_launch(backend, "avgpool2d_fwd", x.dtype, out.size,
                   (out, x),
                   _i32(H, W, P, Q, kh, kw, sh, sw, ph, pw, cip, div))
        return out
    return avgpool2d_forward_cuda_v1


@register_cuda("avgpool2d_backward", 1, default=True,
               doc="one thread per input element gathering from its windows (no atomics)")
def _make_avgpool_backward_cuda(backend):
    def avgpool2d_backward_cuda_v1(dout, x_shape, kernel_size, stride=None, padding=0,
                                   ceil_mode=False, count_include_pad=True,
                                   divisor_override=None):
        dout = check_device_array("dout", dout, backend, ndim=4)
        N, C, H, W = _check_x_shape(x_shape, dout)
        kh, kw, sh, sw, ph, pw, _, _, P, Q = _geometry((N, C, H, W), kernel_size, stride,
                                                       padding, 1, ceil_mode)
        cip = _check_bool("count_include_pad", count_include_pad)
        div = _check_divisor(divisor_override)
        check_shape("dout", dout, (N, C, P, Q))
        xp = device_xp(backend)
        dx = xp.empty((N, C, H, W), dtype=dout.dtype)
        _cu_launch(backend, "avgpool2d_bwd", dout.dtype, dx.size,
                   (dx, dout),
                   _i32(H, W, P, Q, kh, kw, sh, sw, ph, pw, cip, div))
        return dx
    return avgpool2d_backward_cuda_v1


@register_cuda("adaptive_avgpool2d_forward", 1, default=True,
               doc="one thread per output element")
def _make_adaptive_forward_cuda(backend):
    def adaptive_avgpool2d_forward_cuda_v1(x, output_size):
        x = check_device_array("x", x, backend, ndim=4)
        N, C, H, W = x.shape
        P, Q = _adaptive_size(output_size, H, W)
        xp = device_xp(backend)
        out = xp.empty((N, C, P, Q), dtype=x.dtype)
        _cu_launch(backend, "adaptive_avgpool2d_fwd", x.dtype, out.size,
                   (out, x), _i32(H, W, P, Q))
        return out
    return adaptive_avgpool2d_forward_cuda_v1


@register_cuda("adaptive_avgpool2d_backward", 1, default=True,
               doc="one thread per input element gathering from its output cells")
def _make_adaptive_backward_cuda(backend):
    def adaptive_avgpool2d_backward_cuda_v1(dout, x_shape):
        dout = check_device_array("dout", dout, backend, ndim=4)
        N, C, H, W = _check_x_shape(x_shape, dout)
        if dout.shape[2] < 1 or dout.shape[3] < 1:
            raise ValueError(f"dout: expected output sizes >= 1, got shape {tuple(dout.shape)}")
        xp = device_xp(backend)
        dx = xp.empty((N, C, H, W), dtype=dout.dtype)
        _cu_launch(backend, "adaptive_avgpool2d_bwd", dout.dtype, dx.size,
                   (dx, dout),
                   _i32(H, W, dout.shape[2], dout.shape[3]))
        return dx
    return adaptive_avgpool2d_backward_cuda_v1


# ----------------------------------------------------------------------------
# registrations
# ----------------------------------------------------------------------------
_R = registry.register
_R("maxpool2d_forward", "numpy", 1, doc="reference: -inf padding, strided slice per window "
   "offset")(maxpool2d_forward_numpy)
_R("maxpool2d_forward", "numba", 1, doc="direct loops, prange over N·C planes")(
    maxpool2d_forward_numba_v1)
_R("maxpool2d_forward", "numba", 2, default=True,
   doc="fused 2x2/s2 path over row pairs (out + argmax in one pass); else v1")(
    maxpool2d_forward_numba_v2)
_R("maxpool2d_backward", "numpy", 1, doc="reference: np.add.at scatter at argmax")(
    maxpool2d_backward_numpy)
_R("maxpool2d_backward", "numba", 1, doc="zero dx + scatter-add, prange over N·C planes")(
    maxpool2d_backward_numba_v1)
_R("maxpool2d_backward", "numba", 2, default=True,
   doc="per-plane zero (in cache) + scatter-add in one pass, any geometry")(maxpool2d_backward_numba_v2)
_R("avgpool2d_forward", "numpy", 1, doc="reference: sum of strided slices / separable divisor")(
    avgpool2d_forward_numpy)
_R("avgpool2d_forward", "numba", 1, default=True,
   doc="direct loops over the clipped window, prange over planes")(avgpool2d_forward_numba_v1)
_R("avgpool2d_backward", "numpy", 1, doc="reference: strided-slice scatter of dout/divisor")(
    avgpool2d_backward_numpy)
_R("avgpool2d_backward", "numba", 1, default=True,
   doc="per-plane zero + scatter over the clipped window, prange over planes")(
    avgpool2d_backward_numba_v1)
_R("adaptive_avgpool2d_forward", "numpy", 1, doc="reference: mean of each input block")(
    adaptive_avgpool2d_forward_numpy)
_R("adaptive_avgpool2d_forward", "numba", 1, default=True,
   doc="direct loops, prange over planes")(adaptive_avgpool2d_forward_numba_v1)
_R("adaptive_avgpool2d_backward", "numpy", 1, doc="reference: spread dout/count over each "
   "block")(adaptive_avgpool2d_backward_numpy)
_R("adaptive_avgpool2d_backward", "numba", 1, default=True,
   doc="per-plane zero + scatter, prange over planes")(adaptive_avgpool2d_backward_numba_v1)
