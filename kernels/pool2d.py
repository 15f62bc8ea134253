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
              one pass over row pairs; other geometries fall back to v1
    numba v3  branch-free selects (``(v > m) | (v != v)``) in vector loops with no scalar
              remainder (trip counts padded to 32 lanes; LLVM turns scalar select pairs
              into unpredictable branches), uint64 indices, int32 window offsets: 2×2 and
              3×3 / stride 2 without padding read rows directly, any other geometry goes
              through a per-plane -inf-padded scratch split by (row mod sh, col mod sw) so
              that every window is one unit-stride loop (default). Forward+backward (v3),
              float32, 2 threads, EPYC, median ms v3 / torch: N8 pool16 0.24 / 0.75,
              alexnet-pool1 2.2 / 13.3, pool2 2.6 / 9.6, pool5 0.66 / 2.18; N16 C64 112²
              2×2/2 19.1 / 83 (v2 19.7: both at the memory bound), 3×3/2 17.7 / 70
    numba v4  2×2/stride 2 without padding: the flat input viewed as (even, odd) column pairs
              (complex64 / complex128), so the stride-2 loads are unit-stride struct loads
              that LLVM splits with shuffles (as plain strided loads they became gathers on
              the AVX-512 EPYC); rows at odd offsets read the pairs' other halves. Horizontal
              maxima of the two rows, then down: the reference's first-maximum / NaN order.
              3×3/stride 2 without padding: each plane copied to an even pitch, then the
              across and down passes as single flat pair loops over the whole plane (junk
              lanes past each row instead of short rows that never reach the vector body);
              forward, float32, random data, 2 threads: N8 C96 55² (AlexNet pool1) 1.0-1.3 ->
              0.65-0.97 ms, C256 27² 0.65 -> 0.47, 13² 0.21 -> 0.16 (float64 1.6 -> 1.4 at
              55²). The copy reads x at ~36 GB/s; the across / down / copy-out loops then take
              ~0.16 / 0.27 / 0.22 ms at 55²: ~0.5 ns per element, far from what their vector
              bodies should reach (left to study: LLVM's IR for them). Everything else runs v3.
              Forward, float32, 2 threads, AVX-512 EPYC, v3 -> v4: N8 C64 16² 0.075 -> 0.04 ms,
              N16 C64 112² 2.7-2.8 -> 2.25 ms
    numba v5  float32 planes of at most 4096 elements (any window, stride, padding,
              dilation, ceil_mode): VW planes (16 on AVX-512) transposed in register blocks
              so that each plane is one vector lane; every in-bounds window tap is then one
              full-width load shared by VW planes (a per-geometry tap table), the first
              maximum and its index kept in registers (an LLVM IR intrinsic), and the results
              transposed back. Forward kernel, float32, 2 threads, AVX-512 EPYC, vs v4:
              N8 C256 13² 3×3/2 63 vs 160 us, 27² 267 vs 425, C96 55² 450 vs 695, C64 16²
              2×2/2 21 vs 43. Larger planes and float64 run v4 (default)
    cuda v1   one thread per output element (out + argmax), grid-stride, 64-bit indices
    cuda v2   bandwidth-oriented: grid.y over groups of G planes (looping past 65535), 32-bit
              math inside a plane (2 integer divisions per thread, none per element), each
              thread 2 vertically adjacent outputs (p, q), (p+1, q) with warps along q
              (coalesced out / argmax stores); 2x2/2 and 3x3/2 without padding, dilation or
              ceil_mode partial windows: unrolled template paths loading the window rows into
              registers (float2 / double2 __ldg of columns 2q, 2q+1 when rows are aligned;
              3x3/2 shares the middle row), else v1's loop. Same results as v1 bit for bit.
              The cuda default: H200, N64 C64 112x112, forward 2.06 TB/s (50% of copy) 2x2/2,
              1.79 TB/s 3x3/2 (v1 1.49 / 1.24), 0.99x / 1.08x PyTorch. Those are single
              calls; back to back (H100) it moves 98% / 93% of copy bandwidth, and ~0.09 ms of
              a single call is host overhead. A v3 with 2 output columns x 2-4 rows per thread
              and 16-byte row loads tied it on 2x2/2 and lost on 3x3/2 (not kept).
maxpool2d_backward
    numpy v1  reference: ``np.add.at`` scatter-add of dout at argmax
    numba v1  zero dx, then scatter-add per plane, prange over N·C planes
    numba v2  one pass per plane: zero the plane while it is in cache, then scatter-add
              (no separate zero pass over dx), any geometry. A direct write of
              2×2 cells (dout or 0, no zero fill) was measured and was not faster.
    numba v3  v2 plus one vectorized min/max range check of argmax per plane and an
              unchecked uint64-indexed scatter (default); memory-bound on large planes
    cuda v1   one thread per dout element, atomicAdd scatter into a zeroed dx (the op
              carries no window geometry, so no gather); float32 sums of overlapping
              windows may differ in the last bits between runs
avgpool2d_forward
    numpy v1  reference: zero padding, sum of strided slices, separable divisor
    numba v1  direct loops over the clipped window, float64 accumulator, prange over planes
    numba v3  max v3's loops and scratch (0 padding); sums in the input dtype in window
              order, like the reference: the reference's bits (default). Forward+backward
              (v3) median ms v3 / torch: N8 pool16 0.16 / 0.82; N16 C64 112² 2×2/2
              8.3 / 82, 3×3/2 14.8 / 90
    cuda v1   one thread per output element, accumulator in the input dtype
    cuda v2   maxpool2d_forward v2's grid and fast paths; v1's summation order and division
              (same bits). The cuda default: H200 N64 forward 42% / 40% of copy bandwidth
              (2x2/2 / 3x3/2), 1.10x / 1.12x PyTorch; back to back (H100) 96% / 94%
avgpool2d_backward
    numpy v1  reference: strided-slice scatter of dout / divisor into padded dx
    numba v1  per-plane zero + scatter over the clipped window, prange over planes
    numba v3  2×2/2 without padding: each window's dout/divisor expanded into its cells;
              else dout/divisor added tap by tap (the reference's order and bits) into
              v3's phase-split scratch by vector loops, real cells copied out (default)
    cuda v1   one thread per input element gathering from the windows covering it
              (deterministic, no atomics) (default)
    cuda v2   v2's plane-group grid over input cells, 2 rows per thread, 32-bit math, the
              column window range once per thread; v1's gather (same bits). Not the default:
              on an H200 it was faster than v1 on 2x2/2 (0.49 vs 0.64 ms) but slower on 3x3/2
              (0.82 vs 0.74 ms)
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
like the CPU versions and return arrays of the backend's array module. The v2 kernels need
H*W and P*Q below 2^31 (they fall back to v1's kernels otherwise); v1 stays the default on
both GPU backends until v2 is timed on a GPU.
"""
# N batch, C channels, H W in, P Q out, R S window
from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import get_num_threads, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import registry
from ._checks import check_float_array, check_shape, pair
from ._packed_gemm import VW, _offsets_type, transpose_block
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


def _avg_backward_geometry(dout, x_shape, kernel_size, stride, padding, ceil_mode,
                           count_include_pad, divisor_override):
    """The checks every avgpool2d_backward shares, on an already validated ``dout``: x_shape
    against it, the window geometry, the flags and dout's (N, C, P, Q) shape. Returns
    ``(N, C, H, W, kh, kw, sh, sw, ph, pw, P, Q, count_include_pad, divisor)``."""
    N, C, H, W = _check_x_shape(x_shape, dout)
    kh, kw, sh, sw, ph, pw, _, _, P, Q = _geometry((N, C, H, W), kernel_size, stride, padding,
                                                   1, ceil_mode)
    cip = _check_bool("count_include_pad", count_include_pad)
    div = _check_divisor(divisor_override)
    check_shape("dout", dout, (N, C, P, Q))
    return N, C, H, W, kh, kw, sh, sw, ph, pw, P, Q, cip, div


def avgpool2d_backward_numpy(dout, x_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                             count_include_pad=True, divisor_override=None):
    """Reference: each window spreads ``dout / divisor`` over its cells."""
    dout = check_float_array("dout", dout, ndim=4)
    N, C, H, W, kh, kw, sh, sw, ph, pw, P, Q, cip, div = _avg_backward_geometry(
        dout, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override)
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


# ---- v3: padded, phase-split scratch; one branch-free vector loop per plane --------------
# The padded input of one plane (-inf for max, 0 for avg) is split into sh*sw sub-planes by
# (row mod sh, column mod sw), each of pitch Qs (:func:`_v3_layout`). Window (p, q)'s tap
# (r, s) then sits at scratch index v + tap[r*kw + s] with v = p*Qs + q: every window,
# border ones included, is the same unit-stride loop over v (no bounds checks, no per-tap
# branches), rounded up to _V3_LANES iterations so LLVM's vector body runs with no scalar
# remainder. (A scalar float select whose condition also drives the argmax select is lowered
# to a branch by LLVM, unpredictable on random data.) Indices are uint64: no negative-index
# wraparound code. 2x2 and 3x3 windows (4 or 9 taps) get the taps as tuples, unrolled into one
# pass; other windows run one vector pass per tap. 2x2 and 3x3 / stride 2 without padding
# (every window inside the input) skip the scratch: rows are read directly (max: when rows
# are long enough for padded lanes, _v3_direct), and avg 2x2/2's backward is an expansion.
# Avg sums in the input dtype in window order like the NumPy reference: the same bits.
_V3_LANES = 32
_U = np.uint64


@njit(inline="always")
def _v3_copy_rows(xf, A, H, W, sh, sw, ph, pw, SZ, Qs, to_scratch):
    # real cells of the flat plane xf (H*W) to the scratch (to_scratch) or back; padding
    # cells are preset by the caller. Rows are walked phase by phase: no division per row.
    for fh in range(sh):
        h0 = (fh - ph) % sh                                # first row of row phase fh
        i = (h0 + ph) // sh
        for h in range(h0, H, sh):
            row = fh * sw * SZ + i * Qs
            i += 1
            src = _U(h * W)
            if sw == 1:
                d = _U(row + pw)
                if to_scratch:
                    for w in range(W):
                        A[d + _U(w)] = xf[src + _U(w)]
                else:
                    for w in range(W):
                        xf[src + _U(w)] = A[d + _U(w)]
            elif sw == 2:                                  # both column phases in one loop
                a = pw % 2                                 # column phase of column 0
                d0 = _U(row + a * SZ + pw // 2)
                d1 = _U(row + (1 - a) * SZ + (pw + 1) // 2)
                if to_scratch:
                    for m in range(W // 2):
                        A[d0 + _U(m)] = xf[src + _U(2 * m)]
                        A[d1 + _U(m)] = xf[src + _U(2 * m + 1)]
                    if W % 2:
                        A[d0 + _U(W // 2)] = xf[src + _U(W - 1)]
                else:
                    for m in range(W // 2):
                        xf[src + _U(2 * m)] = A[d0 + _U(m)]
                        xf[src + _U(2 * m + 1)] = A[d1 + _U(m)]
                    if W % 2:
                        xf[src + _U(W - 1)] = A[d0 + _U(W // 2)]
            else:
                for f in range(sw):
                    w0 = (f - pw) % sw                     # first column of column phase f
                    d = _U(row + f * SZ + (w0 + pw) // sw)
                    s0 = src + _U(w0)
                    if to_scratch:
                        for m in range((W - w0 + sw - 1) // sw):
                            A[d + _U(m)] = xf[s0 + _U(m * sw)]
                    else:
                        for m in range((W - w0 + sw - 1) // sw):
                            xf[s0 + _U(m * sw)] = A[d + _U(m)]


@njit(inline="always")
def _v3_copy(xf, A, H, W, sh, sw, ph, pw, SZ, Qs, to_scratch):
    if sw == 1:                                            # literal strides: LLVM vectorizes
        _v3_copy_rows(xf, A, H, W, sh, 1, ph, pw, SZ, Qs, to_scratch)
    elif sw == 2:
        _v3_copy_rows(xf, A, H, W, sh, 2, ph, pw, SZ, Qs, to_scratch)
    else:
        _v3_copy_rows(xf, A, H, W, sh, sw, ph, pw, SZ, Qs, to_scratch)


@njit(inline="always")
def _v3_max_taps(A, ob, kb, nv, tap, koff, fk, ninf, fused):
    # ob[v], kb[v]: max of window v and its cell's offset from the window origin in the input
    # plane (fk[v], the first in-bounds cell, when the max is -inf: padding is never chosen)
    if fused:                                              # tap, koff: 4- or 9-tuples
        for v in range(nv):
            uv = _U(v)
            m = A[_U(tap[0]) + uv]
            k = np.int32(koff[0])
            for t in range(1, len(tap)):
                a = A[_U(tap[t]) + uv]
                u = (a > m) | (a != a)                     # first maximum; NaN wins
                kt = np.int32(koff[t])
                m = a if u else m
                k = kt if u else k
            ob[uv] = m
            kb[uv] = fk[uv] if m == ninf else k
    else:                                                  # one pass per tap (any window)
        c = _U(tap[0])
        k0 = np.int32(koff[0])
        for v in range(nv):
            ob[_U(v)] = A[c + _U(v)]
            kb[_U(v)] = k0
        for t in range(1, len(tap)):
            c = _U(tap[t])
            kt = np.int32(koff[t])
            for v in range(nv):
                uv = _U(v)
                a = A[c + uv]
                m = ob[uv]
                k = kb[uv]
                u = (a > m) | (a != a)
                ob[uv] = a if u else m
                kb[uv] = kt if u else k
        for v in range(nv):
            uv = _U(v)
            k = kb[uv]
            kb[uv] = fk[uv] if ob[uv] == ninf else k


@njit(inline="always")
def _v3_max_direct(xf, oc, ac, H, W, P, Q, kh, kw, s, ob, kb, qp):
    # windows kh x kw / stride s (literals) all inside the plane, read straight from the flat
    # plane xf (one pass, no scratch): per output row qp lanes (a multiple of _V3_LANES) into
    # row buffers, or exactly Q where the overrun would leave the plane, then copied out
    for p in range(P):
        n = qp
        if (p * s + kh - 1) * W + (qp - 1) * s + kw - 1 >= H * W:
            n = Q
        base = _U(p * s * W)
        for q in range(n):
            c = base + _U(q * s)
            m = xf[c]
            k = np.int32(0)
            for r in range(kh):
                for t in range(kw):
                    if r + t > 0:
                        a = xf[c + _U(r * W + t)]
                        u = (a > m) | (a != a)                 # first maximum; NaN wins
                        m = a if u else m
                        k = np.int32(r * W + t) if u else k
            ob[_U(q)] = m
            kb[_U(q)] = k
        o = oc[p]
        a = ac[p]
        r0 = p * s * W
        for q in range(Q):
            o[_U(q)] = ob[_U(q)]
            a[_U(q)] = r0 + q * s + np.int64(kb[_U(q)])


@njit(inline="always")
def _v3_max_planes(x, out, argmax, lo, hi, H, W, sh, sw, ph, pw, Qs, SZ, size, nv, tap, koff,
                   fk, ninf, fused):
    # planes lo..hi-1 through the scratch: split, window maxima, copy out
    P, Q = out.shape[1], out.shape[2]
    A = np.full(size, ninf, dtype=x.dtype)                 # padding cells stay -inf
    ob = np.empty(nv, dtype=x.dtype)
    kb = np.empty(nv, dtype=np.int32)
    for nc in range(lo, hi):
        _v3_copy(x[nc], A, H, W, sh, sw, ph, pw, SZ, Qs, True)
        _v3_max_taps(A, ob, kb, nv, tap, koff, fk, ninf, fused)
        of = out[nc]
        af = argmax[nc]
        for p in range(P):
            v0 = _U(p * Qs)
            r0 = (p * sh - ph) * W - pw                    # window (p, 0)'s origin
            o = of[p]
            a = af[p]
            for q in range(Q):
                o[_U(q)] = ob[v0 + _U(q)]
                a[_U(q)] = r0 + q * sw + np.int64(kb[v0 + _U(q)])


# x: (N*C, H*W) C-contiguous; out, argmax: (N*C, P, Q); nchunk runs of planes, one scratch each
@njit(parallel=True, cache=True)
def _maxpool_fwd_v3(x, out, argmax, H, W, sh, sw, ph, pw, Qs, SZ, size, nv, tap, koff, fk,
                    nchunk, ninf):
    # tap, koff: 4- or 9-tuples, unrolled into one pass
    NC = x.shape[0]
    for c in prange(nchunk):
        _v3_max_planes(x, out, argmax, c * NC // nchunk, (c + 1) * NC // nchunk, H, W, sh, sw,
                       ph, pw, Qs, SZ, size, nv, tap, koff, fk, ninf, True)


@njit(parallel=True, cache=True)
def _maxpool_fwd_v3_any(x, out, argmax, H, W, sh, sw, ph, pw, Qs, SZ, size, nv, tap, koff, fk,
                        nchunk, ninf):
    # tap, koff: arrays (any window), one pass per tap
    NC = x.shape[0]
    for c in prange(nchunk):
        _v3_max_planes(x, out, argmax, c * NC // nchunk, (c + 1) * NC // nchunk, H, W, sh, sw,
                       ph, pw, Qs, SZ, size, nv, tap, koff, fk, ninf, False)


@njit(parallel=True, cache=True)
def _maxpool_fwd_v3_rows(x, out, argmax, H, W, k, qp, nchunk):
    # k x k windows, stride 2, read straight from the input (_v3_max_direct)
    NC = x.shape[0]
    P, Q = out.shape[1], out.shape[2]
    for c in prange(nchunk):
        ob = np.empty(qp, dtype=x.dtype)
        kb = np.empty(qp, dtype=np.int32)
        for nc in range(c * NC // nchunk, (c + 1) * NC // nchunk):
            if k == 2:
                _v3_max_direct(x[nc], out[nc], argmax[nc], H, W, P, Q, 2, 2, 2, ob, kb, qp)
            else:
                _v3_max_direct(x[nc], out[nc], argmax[nc], H, W, P, Q, 3, 3, 2, ob, kb, qp)


# ---- v4: 2x2/2 through a pair view: unit-stride struct loads instead of gathers -----------
# Reading columns 2q and 2q+1 of a row, LLVM vectorises the stride-2 loads as gathers here
# (Zen 4); through the flat input viewed as complex pairs (complex64 for float32), the same
# loads become one unit-stride struct load that LLVM splits with shuffles. A row starting at
# an odd flat offset s reads the pairs' other halves: x[s+2q] = xc[(s-1)/2+q].imag, x[s+2q+1]
# = xc[(s+1)/2+q].real. 3x3/2 through pairs row by row lost to v3 (short rows: 13-27 outputs
# leave LLVM's 64-lane vector body unused, and padding the trip count as v3 does cost more than
# it saved); instead each plane is copied to an even pitch We and both passes run as ONE flat
# loop over the plane (_maxpool_fwd_v4_flat3), computing junk lanes past each row's Q outputs
# rather than leaving the vector body. Every other geometry runs v3.
@njit(inline="always")
def _v4_pick(a, m, i, j):
    u = (a > m) | (a != a)                                 # first maximum; NaN wins
    return (a if u else m), (j if u else i)


@njit(inline="always")
def _v4_pair_row(xc, s, Q, hv, hk):
    # hv[q], hk[q] = max of x[s+2q], x[s+2q+1] and its column in the window (0 or 1)
    i0, i1 = np.int32(0), np.int32(1)
    if s % 2 == 0:
        b = _U(s // 2)
        for q in range(Q):
            z = xc[b + _U(q)]
            m, i = _v4_pick(z.imag, z.real, i0, i1)
            hv[_U(q)] = m
            hk[_U(q)] = i
    else:
        b = _U((s - 1) // 2)
        for q in range(Q):
            m, i = _v4_pick(xc[b + _U(q + 1)].real, xc[b + _U(q)].imag, i0, i1)
            hv[_U(q)] = m
            hk[_U(q)] = i


# xc: the flat input (N*C*H*W, even) as pairs; out, argmax: (N*C, P, Q); 2x2/2, no padding
@njit(parallel=True, cache=True)
def _maxpool_fwd_v4_pairs(xc, out, argmax, H, W, nchunk):
    NC, P, Q = out.shape
    for c in prange(nchunk):
        hv = np.empty((2, Q), out.dtype)
        hk = np.empty((2, Q), np.int32)
        v0, v1, k0, k1 = hv[0], hv[1], hk[0], hk[1]
        w1 = np.int32(W)
        for nc in range(c * NC // nchunk, (c + 1) * NC // nchunk):
            for p in range(P):
                s0 = (nc * H + 2 * p) * W
                _v4_pair_row(xc, s0, Q, v0, k0)            # horizontal maxima, rows 2p, 2p+1
                _v4_pair_row(xc, s0 + W, Q, v1, k1)
                o = out[nc, p]
                a = argmax[nc, p]
                base = 2 * p * W
                for q in range(Q):                         # then down: the window's scan order
                    uq = _U(q)
                    m, i = _v4_pick(v1[uq], v0[uq], k0[uq], k1[uq] + w1)
                    o[uq] = m
                    a[uq] = base + 2 * q + np.int64(i)


@njit(parallel=True, cache=True)
def _maxpool_bwd_v3(dout, argmax, dx):
    # per plane: vectorized min/max check of argmax (one branch per plane), zero the plane
    # while it is in cache, unchecked scatter-add; returns the number of planes with bad indices
    NC, PQ = dout.shape
    HW = dx.shape[1]
    bad = np.zeros(NC, dtype=np.int64)
    for nc in prange(NC):
        a = argmax[nc]
        g = dout[nc]
        d = dx[nc]
        lo = 0
        hi = 0
        if PQ > 0:
            lo = a[0]
            hi = a[0]
            for i in range(1, PQ):
                v = a[_U(i)]
                lo = min(lo, v)
                hi = max(hi, v)
        for i in range(HW):
            d[_U(i)] = 0
        if lo < 0 or hi >= HW:
            bad[nc] = 1
            continue
        for i in range(PQ):
            d[_U(a[_U(i)])] += g[_U(i)]
    return bad.sum()


@njit(inline="always")
def _v3_avg_planes(x, out, divs, lo, hi, H, W, sh, sw, ph, pw, Qs, SZ, size, nv, tap, fused):
    # window sums in x's dtype and window order over the zero-padded input (the reference's
    # arithmetic), divided by divs (P, Q) while copied out
    P, Q = out.shape[1], out.shape[2]
    A = np.zeros(size, dtype=x.dtype)                      # padding cells stay 0
    ob = np.empty(nv, dtype=x.dtype)
    for nc in range(lo, hi):
        _v3_copy(x[nc], A, H, W, sh, sw, ph, pw, SZ, Qs, True)
        if fused:                                          # tap: 4- or 9-tuple
            for v in range(nv):
                uv = _U(v)
                acc = A[_U(tap[0]) + uv]
                for t in range(1, len(tap)):
                    acc += A[_U(tap[t]) + uv]
                ob[uv] = acc
        else:                                              # one pass per tap
            c0 = _U(tap[0])
            for v in range(nv):
                ob[_U(v)] = A[c0 + _U(v)]
            for t in range(1, len(tap)):
                ct = _U(tap[t])
                for v in range(nv):
                    ob[_U(v)] += A[ct + _U(v)]
        of = out[nc]
        for p in range(P):
            v0 = _U(p * Qs)
            o = of[p]
            dv = divs[p]
            for q in range(Q):
                o[_U(q)] = ob[v0 + _U(q)] / dv[_U(q)]


@njit(parallel=True, cache=True)
def _avgpool_fwd_v3(x, out, divs, H, W, sh, sw, ph, pw, Qs, SZ, size, nv, tap, nchunk):
    # tap: 4- or 9-tuple, unrolled into one pass
    NC = x.shape[0]
    for c in prange(nchunk):
        _v3_avg_planes(x, out, divs, c * NC // nchunk, (c + 1) * NC // nchunk, H, W, sh, sw,
                       ph, pw, Qs, SZ, size, nv, tap, True)


@njit(parallel=True, cache=True)
def _avgpool_fwd_v3_any(x, out, divs, H, W, sh, sw, ph, pw, Qs, SZ, size, nv, tap, nchunk):
    # tap: array (any window), one pass per tap
    NC = x.shape[0]
    for c in prange(nchunk):
        _v3_avg_planes(x, out, divs, c * NC // nchunk, (c + 1) * NC // nchunk, H, W, sh, sw,
                       ph, pw, Qs, SZ, size, nv, tap, False)


@njit(inline="always")
def _v3_avg_direct(xf, oc, W, P, Q, kh, kw, s, dv):
    # windows kh x kw / stride s (literals) all inside the plane, summed straight from the
    # flat plane xf in window order; dv: their common divisor in x's dtype
    for p in range(P):
        o = oc[p]
        base = _U(p * s * W)
        for q in range(Q):
            c = base + _U(q * s)
            acc = xf[c]
            for r in range(kh):
                for t in range(kw):
                    if r + t > 0:
                        acc += xf[c + _U(r * W + t)]
            o[_U(q)] = acc / dv


@njit(parallel=True, cache=True)
def _avgpool_fwd_v3_rows(x, out, W, k, dv, nchunk):
    # k x k windows, stride 2, read straight from the input (_v3_avg_direct)
    NC = x.shape[0]
    P, Q = out.shape[1], out.shape[2]
    for c in prange(nchunk):
        for nc in range(c * NC // nchunk, (c + 1) * NC // nchunk):
            if k == 2:
                _v3_avg_direct(x[nc], out[nc], W, P, Q, 2, 2, 2, dv)
            else:
                _v3_avg_direct(x[nc], out[nc], W, P, Q, 3, 3, 2, dv)


@njit(parallel=True, cache=True)
def _avgpool_bwd_v3(dout, dx, divs, H, W, sh, sw, ph, pw, Qs, SZ, size, nv, tap, nchunk):
    # dout: (N*C, P, Q), dx: (N*C, H*W). g = dout / divisor laid out like the forward's
    # windows; tap by tap (the reference's order) S[v + tap] += g[v] into the zeroed
    # phase-split scratch, then its real cells to dx
    NC, P, Q = dout.shape
    for c in prange(nchunk):
        S = np.empty(size, dtype=dx.dtype)
        gv = np.zeros(nv, dtype=dx.dtype)                  # lanes past a row's Q stay 0
        for nc in range(c * NC // nchunk, (c + 1) * NC // nchunk):
            for i in range(size):
                S[_U(i)] = 0
            g = dout[nc]
            for p in range(P):
                v0 = _U(p * Qs)
                gr = g[p]
                dv = divs[p]
                for q in range(Q):
                    gv[v0 + _U(q)] = gr[q] / dv[_U(q)]
            for t in range(len(tap)):
                ct = _U(tap[t])
                for v in range(nv):
                    S[ct + _U(v)] += gv[_U(v)]
            _v3_copy(dx[nc], S, H, W, sh, sw, ph, pw, SZ, Qs, False)


@njit(parallel=True, cache=True)
def _avgpool_bwd_v3_2x2(dout, dx, divs, H, W, nchunk):
    # 2x2 windows, stride 2, no padding: each cell of dx lies in at most one window, so it
    # is that window's dout / divisor (or 0), written row by row with no scratch
    NC, P, Q = dout.shape
    n = min(Q, W // 2)                                     # windows with both columns
    for c in prange(nchunk):
        for nc in range(c * NC // nchunk, (c + 1) * NC // nchunk):
            g = dout[nc]
            d = dx[nc]
            for h in range(H):
                base = _U(h * W)
                p = h // 2
                if p < P:
                    gr = g[p]
                    dv = divs[p]
                    for q in range(n):
                        v = gr[_U(q)] / dv[_U(q)]
                        d[base + _U(2 * q)] = v
                        d[base + _U(2 * q + 1)] = v
                    for w in range(2 * n, W):
                        q = w // 2
                        d[base + _U(w)] = gr[q] / dv[q] if q < Q else 0
                else:
                    for w in range(W):
                        d[base + _U(w)] = 0


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
    N, C, H, W, kh, kw, sh, sw, ph, pw, P, Q, cip, div = _avg_backward_geometry(
        dout, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override)
    dx = np.empty((N, C, H, W), dtype=dout.dtype)
    _avgpool_bwd_v1(_planes(dout), _planes(dx), kh, kw, sh, sw, ph, pw, cip, div)
    return dx


def _v3_layout(H, W, P, Q, kh, kw, sh, sw, ph, pw, dh=1, dw=1):
    """Scratch layout of the v3 kernels, the same for every plane of a call:
    ``(Qs, SZ, nv, size, tap, koff)``. The padded input (every window's cells, ceil_mode's
    last one included) is split into ``sh * sw`` sub-planes of ``SZ = Hs * Qs`` cells, cell
    ``(hp, wp)`` to sub-plane ``(hp % sh, wp % sw)`` at ``(hp // sh) * Qs + wp // sw``;
    window ``(p, q)`` is ``v = p * Qs + q`` and its tap ``(r, s)`` lies at ``v + tap[r*kw+s]``,
    ``koff[r*kw+s] = r*dh*W + s*dw`` cells from the window's origin in the input plane.
    ``nv``: windows rounded up to ``_V3_LANES``; ``size``: scratch cells."""
    Hp = max(H + 2 * ph, (P - 1) * sh + (kh - 1) * dh + 1)
    Wp = max(W + 2 * pw, (Q - 1) * sw + (kw - 1) * dw + 1)
    Qs = -(-Wp // sw)
    SZ = -(-Hp // sh) * Qs
    r = np.arange(kh)[:, None] * dh
    s = np.arange(kw)[None, :] * dw
    tap = ((r % sh * sw + s % sw) * SZ + r // sh * Qs + s // sw).ravel().astype(np.int64)
    koff = (r * W + s).ravel()
    nv = -(-((P - 1) * Qs + Q) // _V3_LANES) * _V3_LANES
    return Qs, SZ, nv, max(sh * sw * SZ, int(tap.max()) + nv), tap, koff


@functools.lru_cache(maxsize=32)
def _v3_plan(H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw):
    """``_v3_layout`` plus what the kernels take, cached per geometry (saves the NumPy work
    on repeated calls): ``(Qs, SZ, nv, size, tap, koff, fk, fused)``. 4- and 9-tap windows get
    ``tap`` and ``koff`` as tuples (unrolled into one fused pass), others as arrays (one
    pass per tap). ``fk[v]``: offset of window v's first in-bounds cell, its argmax when
    every cell is -inf (PyTorch; padding is never chosen)."""
    Qs, SZ, nv, size, tap, koff = _v3_layout(H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw)
    h0, w0 = np.arange(P) * sh - ph, np.arange(Q) * sw - pw
    fk = np.zeros(nv, dtype=np.int32)
    fk[(np.arange(P)[:, None] * Qs + np.arange(Q)).ravel()] = \
        ((_first_valid(h0, dh) - h0)[:, None] * W + (_first_valid(w0, dw) - w0)).ravel()
    fused = tap.size in (4, 9)
    if fused:
        tap, koff = tuple(tap.tolist()), tuple(koff.tolist())
    else:
        koff = koff.astype(np.int64)
    for a in (tap, koff, fk):
        if isinstance(a, np.ndarray):
            a.flags.writeable = False
    return Qs, SZ, nv, size, tap, koff, fk, fused


@functools.lru_cache(maxsize=32)
def _v3_divisors(H, W, kh, kw, sh, sw, ph, pw, P, Q, cip, div, dtype):
    d = _avg_divisor(H, W, kh, kw, sh, sw, ph, pw, P, Q, cip, div).astype(dtype)
    d.flags.writeable = False
    return d


def _v3_inside(H, W, P, Q, kh, kw, sh, sw, ph, pw, dh=1, dw=1):
    """2x2 or 3x3 windows, stride 2, no padding or dilation, every window inside the input
    (no ceil_mode partial window): the kernels may read the input directly."""
    return (kh == kw and kh in (2, 3) and sh == sw == 2 and ph == pw == 0 and dh == dw == 1
            and 2 * (P - 1) + kh <= H and 2 * (Q - 1) + kw <= W)


def _v3_direct(H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw):
    """2 or 3 where max pooling reads the input directly (:func:`_v3_inside`, rows of at
    least 80% useful lanes), else 0: the scratch path."""
    if (_v3_inside(H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw)
            and 4 * -(-Q // _V3_LANES) * _V3_LANES <= 5 * Q):
        return kh
    return 0


def _v3_chunks(planes):
    return min(planes, 4 * get_num_threads())


def maxpool2d_forward_numba_v3(x, kernel_size, stride=None, padding=0, dilation=1,
                               ceil_mode=False):
    x = _check_x(x)
    kh, kw, sh, sw, ph, pw, dh, dw, P, Q = _geometry(x.shape, kernel_size, stride, padding,
                                                     dilation, ceil_mode)
    N, C, H, W = x.shape
    out = np.empty((N, C, P, Q), dtype=x.dtype)
    argmax = np.empty((N, C, P, Q), dtype=np.int64)
    if (kh - 1) * dh * W + (kw - 1) * dw > 2**31 - 1:       # int32 in-window offsets
        _maxpool_fwd_v1(_planes(x), _planes(out), _planes(argmax), kh, kw, sh, sw, ph, pw,
                        dh, dw)
        return out, argmax
    direct = _v3_direct(H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw)
    xf = np.ascontiguousarray(x).reshape(N * C, H * W)
    if direct:
        _maxpool_fwd_v3_rows(xf, _planes(out), _planes(argmax), H, W, direct,
                             -(-Q // _V3_LANES) * _V3_LANES, _v3_chunks(N * C))
        return out, argmax
    Qs, SZ, nv, size, tap, koff, fk, fused = _v3_plan(H, W, P, Q, kh, kw, sh, sw, ph, pw,
                                                      dh, dw)
    kernel = _maxpool_fwd_v3 if fused else _maxpool_fwd_v3_any
    kernel(xf, _planes(out), _planes(argmax), H, W, sh, sw, ph, pw, Qs, SZ, size, nv, tap, koff,
           fk, _v3_chunks(N * C), x.dtype.type(-np.inf))
    return out, argmax


def _v4_pairs(x, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, H, W):
    """The flat input as (even, odd) pairs where v4's 2x2/2 path applies, else None: 2x2
    windows, stride 2, no padding or dilation, every window inside, and a buffer the pair
    view can alias (even size, aligned to a pair)."""
    if not (kh == kw == 2 and _v3_inside(H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw)
            and x.flags.c_contiguous and x.size % 2 == 0 and x.size > 0
            and x.ctypes.data % (2 * x.itemsize) == 0):
        return None
    return x.reshape(-1).view(np.complex64 if x.dtype == np.float32 else np.complex128)


def maxpool2d_forward_numba_v4(x, kernel_size, stride=None, padding=0, dilation=1,
                               ceil_mode=False):
    x = _check_x(x)
    kh, kw, sh, sw, ph, pw, dh, dw, P, Q = _geometry(x.shape, kernel_size, stride, padding,
                                                     dilation, ceil_mode)
    N, C, H, W = x.shape
    if kh == kw == 3 and _v3_inside(H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw) and x.size:
        out = np.empty((N, C, P, Q), dtype=x.dtype)
        argmax = np.empty((N, C, P, Q), dtype=np.int64)
        S2 = np.zeros((_v3_chunks(N * C), H * (W + W % 2)), x.dtype)
        pairs = S2.view(np.complex64 if x.dtype == np.float32 else np.complex128)
        _maxpool_fwd_v4_flat3(np.ascontiguousarray(x).reshape(N * C, H * W), _planes(out),
                              _planes(argmax), H, W, S2, pairs)
        return out, argmax
    xc = _v4_pairs(x, kh, kw, sh, sw, ph, pw, dh, dw, P, Q, H, W)
    if xc is None:
        return maxpool2d_forward_numba_v3(x, kernel_size, stride, padding, dilation, ceil_mode)
    out = np.empty((N, C, P, Q), dtype=x.dtype)
    argmax = np.empty((N, C, P, Q), dtype=np.int64)
    _maxpool_fwd_v4_pairs(xc, _planes(out), _planes(argmax), H, W, _v3_chunks(N * C))
    return out, argmax


# x: (N*C, H*W); out, argmax: (N*C, P, Q); 3x3 windows, stride 2, no padding, all inside.
# S2 / Sc2: per-chunk scratch planes of pitch We = W rounded up to even, as floats and as
# (even, odd) pairs; the pad column stays 0 and only feeds junk lanes.
@njit(parallel=True, cache=True)
def _maxpool_fwd_v4_flat3(x, out, argmax, H, W, S2, Sc2):
    NC, P, Q = out.shape
    We = S2.shape[1] // H
    half = We // 2
    nh = H * half - 1                  # pair starts with a next pair: across, all rows at once
    nv = (P - 1) * We + Q              # flat index p*We + q of window (p, q): down
    nchunk = S2.shape[0]
    w1, w2 = np.int32(W), np.int32(2 * W)
    i0, i1, i2 = np.int32(0), np.int32(1), np.int32(2)
    for c in prange(nchunk):
        S, Sc = S2[c], Sc2[c]
        hv = np.empty(nh, S2.dtype)
        hk = np.empty(nh, np.int32)
        vv = np.empty(nv, S2.dtype)
        vk = np.empty(nv, np.int32)
        for nc in range(c * NC // nchunk, (c + 1) * NC // nchunk):
            xp = x[nc]
            if We == W:
                for m in range(H * W):
                    S[_U(m)] = xp[_U(m)]
            else:
                for r in range(H):
                    d, src = S[r * We:r * We + W], xp[r * W:r * W + W]
                    for m in range(W):
                        d[_U(m)] = src[_U(m)]
            for m in range(nh):        # columns 2q, 2q+1, 2q+2 of every row: pairs m, m+1
                um = _U(m)
                z = Sc[um]
                v, k = _v4_pick(z.imag, z.real, i0, i1)
                v, k = _v4_pick(Sc[um + _U(1)].real, v, k, i2)
                hv[um] = v
                hk[um] = k
            for i in range(nv):        # rows 2p, 2p+1, 2p+2: the window's scan order
                ui = _U(i)
                v, k = _v4_pick(hv[ui + _U(half)], hv[ui], hk[ui], hk[ui + _U(half)] + w1)
                v, k = _v4_pick(hv[ui + _U(We)], v, k, hk[ui + _U(We)] + w2)
                vv[ui] = v
                vk[ui] = k
            for p in range(P):
                o, a = out[nc, p], argmax[nc, p]
                b = p * We
                base = 2 * p * W
                for q in range(Q):
                    o[_U(q)] = vv[_U(b + q)]
                    a[_U(q)] = base + 2 * q + np.int64(vk[_U(b + q)])


# ---- v5: small planes as vector lanes ------------------------------------------------------
# VW planes (16 float32 on AVX-512, 8 on AVX2) are transposed in VW x VW register blocks into a
# scratch T with T[e*VW + j] = plane j's element e, so that every window tap is ONE full-width
# vector load shared by the VW planes, whatever the geometry: for each output, its in-bounds
# taps in the window's scan order (a table built once per geometry) run through
# _lane_window_max (first maximum; NaN wins, as _v4_pick), and the VW results go back through
# the same block transposes. No per-plane short rows, no junk lanes, no stride-2 loads (v4's
# across pass read column 2q+2 through gathers: 0.85 ns per element). The indices ride along as
# float32 (exact below 2^24) so that they share the float transposes. Forward, float32, 2
# threads, AVX-512 EPYC, kernel only vs v4's full call: N8 C256 13x13 3x3/2 63 vs 160 us, 27x27
# 267 vs 425, C96 55x55 450 vs 695, N8 C64 16x16 2x2/2 21 vs 43, N4 C64 56x56 2x2/2 98 vs 129;
# at N16 C64 112x112 2x2/2 3712 vs 2490 (v4's pair view runs at the memory bound there, while
# T, VW planes x 12544 floats, leaves L2), hence the plane-size bound _LANES_MAX_HW.
_LANES_MAX_HW = 4096


def _make_lane_window_max(VW=VW):
    """``_lane_window_max(T, taps, i0, i1, mo, ko, o_off)``: over the VW-lane rows of T at the
    taps ``taps[i0:i1]`` (in scan order), the lane-wise first maximum (NaN wins) into
    ``mo[o_off:o_off+VW]`` and its tap, as float32, into ``ko[o_off:...]``."""
    f32 = types.Array(types.float32, 1, "C")

    def codegen(context, builder, sig, args):
        def data(i):
            return context.make_array(sig.args[i])(context, builder, args[i]).data

        _, _, i0, i1, _, _, o_off = args
        T, taps, mo, ko = data(0), data(1), data(4), data(5)
        vec = ir.VectorType(ir.FloatType(), VW)
        vptr = vec.as_pointer()
        intp, i32 = i0.type, ir.IntType(32)
        undef = ir.Constant(vec, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, VW), [0] * VW)

        def tap(i):                    # (the tap's VW values, the tap index in every lane)
            t = builder.load(builder.gep(taps, [i]))
            row = builder.gep(T, [builder.mul(t, ir.Constant(intp, VW))])
            a = builder.load(builder.bitcast(row, vptr), align=4)
            tf = builder.insert_element(undef, builder.sitofp(t, ir.FloatType()),
                                        ir.Constant(i32, 0))
            return a, builder.shuffle_vector(tf, undef, splat)

        a0, t0 = tap(i0)
        m = cgutils.alloca_once_value(builder, a0)    # SROA keeps both in registers
        k = cgutils.alloca_once_value(builder, t0)
        with cgutils.for_range_slice(builder, builder.add(i0, ir.Constant(intp, 1)), i1,
                                     ir.Constant(intp, 1)) as (i, _):
            a, tv = tap(i)
            mv = builder.load(m)
            take = builder.or_(builder.fcmp_ordered(">", a, mv),
                               builder.fcmp_unordered("uno", a, a))
            builder.store(builder.select(take, a, mv), m)
            builder.store(builder.select(take, tv, builder.load(k)), k)
        for acc, dst in ((m, mo), (k, ko)):
            builder.store(builder.load(acc), builder.bitcast(builder.gep(dst, [o_off]), vptr),
                          align=4)
        return context.get_dummy_value()

    @intrinsic
    def kernel(typingctx, T, taps, i0, i1, mo, ko, o_off):
        if not (T == f32 and mo == f32 and ko == f32 and _offsets_type(taps)):
            return None
        ip = types.intp
        return types.void(T, taps, ip, ip, mo, ko, ip), codegen

    return kernel


_lane_window_max = _make_lane_window_max()


# x: (N*C, H*W) float32; out, argmax: (N*C, P*Q); taps[tap_ptr[o]:tap_ptr[o+1]]: output o's
# in-bounds window taps (flat in-plane indices) in scan order; groups of VW planes split into
# nchunk parallel items. A last group of fewer planes is copied lane by lane (idle lanes
# compute junk that is not written back).
@njit(parallel=True, cache=True)
def _maxpool_fwd_v5_lanes(x, out, argmax, tap_ptr, taps, nchunk):
    NC, HW = x.shape
    PQ = out.shape[1]
    G = (NC + VW - 1) // VW
    PQp = (PQ + VW - 1) // VW * VW
    xf, of = x.reshape(-1), out.reshape(-1)
    for c in prange(nchunk):
        T = np.zeros(HW * VW, np.float32)
        mo = np.empty(PQp * VW, np.float32)
        ko = np.empty(PQp * VW, np.float32)
        kt = np.empty(VW * PQp, np.float32)           # ko transposed: (VW, PQp)
        for g in range(c * G // nchunk, (c + 1) * G // nchunk):
            n0 = g * VW
            nl = min(VW, NC - n0)
            e_lo, o_lo = 0, 0
            if nl == VW:
                e_lo, o_lo = HW - HW % VW, PQ - PQ % VW
                for e0 in range(0, e_lo, VW):
                    transpose_block(xf, n0 * HW + e0, HW, T, e0 * VW, VW)
            for j in range(nl):
                xj = x[n0 + j]
                for e in range(e_lo, HW):
                    T[_U(e * VW + j)] = xj[_U(e)]
            for o in range(PQ):
                _lane_window_max(T, taps, tap_ptr[o], tap_ptr[o + 1], mo, ko, o * VW)
            for o0 in range(0, PQp, VW):
                transpose_block(ko, o0 * VW, VW, kt, o0, PQp)
            for o0 in range(0, o_lo, VW):
                transpose_block(mo, o0 * VW, VW, of, n0 * PQ + o0, PQ)
            for j in range(nl):
                oj, aj, kj = out[n0 + j], argmax[n0 + j], kt[j * PQp:j * PQp + PQ]
                for o in range(o_lo, PQ):
                    oj[_U(o)] = mo[_U(o * VW + j)]
                for o in range(PQ):
                    aj[_U(o)] = np.int64(kj[_U(o)])


@functools.lru_cache(maxsize=32)
def _v5_taps(H, W, kh, kw, sh, sw, ph, pw, dh, dw, P, Q):
    """``(tap_ptr, taps)`` of :func:`_maxpool_fwd_v5_lanes`: each output's in-bounds taps in
    the window's row-major scan order (the reference's order, -inf padding never wins), or
    None where some window holds no input element (a dilated window straddling the input)."""
    rows = np.arange(P)[:, None] * sh - ph + np.arange(kh)[None, :] * dh     # (P, kh)
    cols = np.arange(Q)[:, None] * sw - pw + np.arange(kw)[None, :] * dw     # (Q, kw)
    inside = (((rows >= 0) & (rows < H))[:, None, :, None]
              & ((cols >= 0) & (cols < W))[None, :, None, :]).reshape(P * Q, kh * kw)
    counts = inside.sum(axis=1)
    if counts.min() == 0:
        return None
    flat = (rows[:, None, :, None] * W + cols[None, :, None, :]).reshape(P * Q, kh * kw)
    tap_ptr = np.zeros(P * Q + 1, np.int64)
    np.cumsum(counts, out=tap_ptr[1:])
    taps = flat[inside].astype(np.int64)                 # row by row: scan order kept
    tap_ptr.flags.writeable = taps.flags.writeable = False   # shared by the lru_cache
    return tap_ptr, taps


def maxpool2d_forward_numba_v5(x, kernel_size, stride=None, padding=0, dilation=1,
                               ceil_mode=False):
    x = _check_x(x)
    geo = _geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    N, C, H, W = x.shape
    tables = (_v5_taps(H, W, *geo) if x.dtype == np.float32 and x.size
              and H * W <= _LANES_MAX_HW else None)
    if tables is None:
        return maxpool2d_forward_numba_v4(x, kernel_size, stride, padding, dilation, ceil_mode)
    P, Q = geo[-2:]
    out = np.empty((N, C, P, Q), dtype=x.dtype)
    argmax = np.empty((N, C, P, Q), dtype=np.int64)
    _maxpool_fwd_v5_lanes(np.ascontiguousarray(x).reshape(N * C, H * W),
                          out.reshape(N * C, P * Q), argmax.reshape(N * C, P * Q), *tables,
                          _v3_chunks(-(-N * C // VW)))
    return out, argmax


def maxpool2d_backward_numba_v3(dout, argmax, x_shape):
    dout, argmax, (N, C, H, W) = _max_bwd_args(dout, argmax, x_shape)
    dx = np.empty((N, C, H, W), dtype=dout.dtype)
    PQ = dout.shape[2] * dout.shape[3]
    if _maxpool_bwd_v3(np.ascontiguousarray(dout).reshape(N * C, PQ),
                       argmax.reshape(N * C, PQ), dx.reshape(N * C, H * W)):
        raise _bad_argmax(H, W)
    return dx


def avgpool2d_forward_numba_v3(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                               count_include_pad=True, divisor_override=None):
    x = _check_x(x)
    kh, kw, sh, sw, ph, pw, _, _, P, Q = _geometry(x.shape, kernel_size, stride, padding, 1,
                                                   ceil_mode)
    cip = _check_bool("count_include_pad", count_include_pad)
    div = _check_divisor(divisor_override)
    N, C, H, W = x.shape
    out = np.empty((N, C, P, Q), dtype=x.dtype)
    xf = np.ascontiguousarray(x).reshape(N * C, H * W)
    if _v3_inside(H, W, P, Q, kh, kw, sh, sw, ph, pw):       # every window's divisor: k*k
        _avgpool_fwd_v3_rows(xf, _planes(out), W, kh, x.dtype.type(div or kh * kw),
                             _v3_chunks(N * C))
        return out
    divs = _v3_divisors(H, W, kh, kw, sh, sw, ph, pw, P, Q, cip, div, x.dtype)
    Qs, SZ, nv, size, tap, _, _, fused = _v3_plan(H, W, P, Q, kh, kw, sh, sw, ph, pw, 1, 1)
    kernel = _avgpool_fwd_v3 if fused else _avgpool_fwd_v3_any
    kernel(xf, _planes(out), divs, H, W, sh, sw, ph, pw, Qs, SZ, size, nv, tap,
           _v3_chunks(N * C))
    return out


def avgpool2d_backward_numba_v3(dout, x_shape, kernel_size, stride=None, padding=0,
                                ceil_mode=False, count_include_pad=True, divisor_override=None):
    dout = check_float_array("dout", dout, ndim=4)
    N, C, H, W, kh, kw, sh, sw, ph, pw, P, Q, cip, div = _avg_backward_geometry(
        dout, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override)
    dx = np.empty((N, C, H, W), dtype=dout.dtype)
    divs = _v3_divisors(H, W, kh, kw, sh, sw, ph, pw, P, Q, cip, div, dout.dtype)
    if (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0):
        _avgpool_bwd_v3_2x2(np.ascontiguousarray(dout).reshape(N * C, P, Q),
                            dx.reshape(N * C, H * W), divs, H, W, _v3_chunks(N * C))
        return dx
    Qs, SZ, nv, size, tap, _, _, _ = _v3_plan(H, W, P, Q, kh, kw, sh, sw, ph, pw, 1, 1)
    _avgpool_bwd_v3(_planes(dout), dx.reshape(N * C, H * W), divs, H, W, sh, sw, ph, pw, Qs,
                    SZ, size, nv, np.asarray(tap, dtype=np.int64), _v3_chunks(N * C))
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
# "cuda-emu" (NumPy arrays, CPU emulator). Same validation as the CPU versions. v1: one thread
# per output (forward) / input (backward) element, grid-stride loops over 64-bit indices;
# v2 (max/avg forward, avg backward): see "v2" below and the header of pool2d.cu.
# ----------------------------------------------------------------------------
_CU_FILE = "pool2d.cu"
_CU_KERNELS = ("maxpool2d_fwd", "maxpool2d_bwd_scatter", "avgpool2d_fwd", "avgpool2d_bwd",
               "adaptive_avgpool2d_fwd", "adaptive_avgpool2d_bwd", "avgpool2d_bwd_v2")
_CU_TEMPLATES = tuple(f"{k}<{t}>" for k in _CU_KERNELS for t in ("float", "double")) + tuple(
    f"{k}<{t}, {fast}>" for k in ("maxpool2d_fwd_v2", "avgpool2d_fwd_v2")
    for t in ("float", "double") for fast in (0, 2, 3))   # FAST: 0 generic, 2 / 3 = k x k / 2
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


@register_cuda("maxpool2d_forward", 1,
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


@register_cuda("avgpool2d_forward", 1, doc="one thread per output element")
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


def _cu_avg_backward_setup(backend, dout, x_shape, kernel_size, stride, padding, ceil_mode,
                           count_include_pad, divisor_override):
    """Validated dout, a fresh dx (N, C, H, W) and the kernels' int32 geometry arguments."""
    dout = check_device_array("dout", dout, backend, ndim=4)
    N, C, H, W, kh, kw, sh, sw, ph, pw, P, Q, cip, div = _avg_backward_geometry(
        dout, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override)
    dx = device_xp(backend).empty((N, C, H, W), dtype=dout.dtype)
    return dout, dx, _i32(H, W, P, Q, kh, kw, sh, sw, ph, pw, cip, div)


@register_cuda("avgpool2d_backward", 1, default=True,
               doc="one thread per input element gathering from its windows (no atomics)")
def _make_avgpool_backward_cuda(backend):
    def avgpool2d_backward_cuda_v1(dout, x_shape, kernel_size, stride=None, padding=0,
                                   ceil_mode=False, count_include_pad=True,
                                   divisor_override=None):
        dout, dx, args = _cu_avg_backward_setup(backend, dout, x_shape, kernel_size, stride,
                                                padding, ceil_mode, count_include_pad,
                                                divisor_override)
        _cu_launch(backend, "avgpool2d_bwd", dout.dtype, dx.size, (dx, dout), args)
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


# ---- v2: plane groups on grid.y, 2 output rows per thread, 2x2/2 and 3x3/2 fast paths ----
_CU_V2_ROWS = 2               # POOL2_ROWS in pool2d.cu: vertically adjacent items per thread
_CU_V2_GROUP = 4 * CUDA_THREADS  # small planes: up to this many items per plane group
_CU_MAX_GRID_Y = 65535        # grid.y limit; the kernels loop over the planes beyond it
_I32_MAX = 2**31 - 1


def _cu_v2_fits(*plane_sizes):
    """The v2 kernels index inside a plane with int: every H*W / P*Q must fit."""
    return max(plane_sizes) <= _I32_MAX


def _cu_v2_fast(H, W, P, Q, kh, kw, sh, sw, ph, pw, dh=1, dw=1):
    """2 or 3 where the K x K / stride-2 fast path applies (no padding or dilation, every
    window inside the input, so no ceil_mode partial window), else 0 (generic path)."""
    if (kh == kw and kh in (2, 3) and sh == sw == 2 and ph == pw == 0 and dh == dw == 1
            and 2 * (P - 1) + kh <= H and 2 * (Q - 1) + kw <= W):
        return kh
    return 0


def _cu_pairs(backend, x):
    """1 when every row of ``x`` (C-contiguous, last axis W) starts 2-element aligned, so the
    fast path may load columns 2q, 2q+1 as one float2 / double2."""
    ptr = x.data.ptr if backend == "cuda" else x.ctypes.data
    return int(x.shape[-1] % 2 == 0 and ptr % (2 * x.itemsize) == 0)


@functools.lru_cache(maxsize=256)
def _cu_v2_group(NC, work):
    """Planes per grid.y index: the G in 1 .. max(16, _CU_V2_GROUP // work) (at most NC) that
    launches the fewest threads, ``ceil(NC / G) * ceil(G * work / THREADS) * THREADS`` (idle
    threads: the last block of each group and the last group's missing planes); the smallest
    such G. 56x56 outputs (work 1568): G = 8, no idle thread; 6x6 (work 18): G = 14."""
    top = max(1, min(NC, max(16, _CU_V2_GROUP // work), _I32_MAX // work))
    best, best_g = None, 1
    for G in range(1, top + 1):
        launched = -(-NC // G) * blocks_for(G * work, CUDA_THREADS)
        if best is None or launched < best:
            best, best_g = launched, G
    return best_g


def _cu_v2_launch(backend, kernel, dtype, NC, rows, cols, arrays, scalars, fast=None):
    """Launch ``kernel<ctype(dtype)[, fast]>(*arrays, (long long)NC, (int)G, *scalars)`` over
    NC planes of ``rows x cols`` items, ``_CU_V2_ROWS`` rows per thread, G planes per grid.y
    index (consecutive blocks cover one group; grid.y loops beyond ``_CU_MAX_GRID_Y``)."""
    if NC == 0:
        return
    work = -(-rows // _CU_V2_ROWS) * cols
    G = _cu_v2_group(NC, work)
    mod = load_module(_CU_FILE, backend, name_expressions=_CU_TEMPLATES)
    targs = ctype(dtype) if fast is None else f"{ctype(dtype)}, {fast}"
    fn = mod.get_function(f"{kernel}<{targs}>")
    grid = (blocks_for(G * work, CUDA_THREADS), min(-(-NC // G), _CU_MAX_GRID_Y))
    fn(grid, (CUDA_THREADS,), tuple(arrays) + (np.int64(NC), np.int32(G)) + tuple(scalars))


@register_cuda("maxpool2d_forward", 2, default=True,
               doc="plane groups on grid.y, 2 outputs per thread, 32-bit in-plane math, "
                   "unrolled 2x2/2 and 3x3/2 paths")
def _make_maxpool_forward_cuda_v2(backend):
    def maxpool2d_forward_cuda_v2(x, kernel_size, stride=None, padding=0, dilation=1,
                                  ceil_mode=False):
        x = check_device_array("x", x, backend, ndim=4)
        kh, kw, sh, sw, ph, pw, dh, dw, P, Q = _geometry(x.shape, kernel_size, stride, padding,
                                                         dilation, ceil_mode)
        xp = device_xp(backend)
        N, C, H, W = x.shape
        out = xp.empty((N, C, P, Q), dtype=x.dtype)
        argmax = xp.empty((N, C, P, Q), dtype=np.int64)
        hyper = (kh, kw, sh, sw, ph, pw, dh, dw)
        if not _cu_v2_fits(H * W, P * Q):
            _cu_launch(backend, "maxpool2d_fwd", x.dtype, out.size, (out, argmax, x),
                       _i32(H, W, P, Q, *hyper))
            return out, argmax
        _cu_v2_launch(backend, "maxpool2d_fwd_v2", x.dtype, N * C, P, Q, (out, argmax, x),
                      _i32(H, W, P, Q, *hyper, _cu_pairs(backend, x)),
                      fast=_cu_v2_fast(H, W, P, Q, *hyper))
        return out, argmax
    return maxpool2d_forward_cuda_v2


@register_cuda("avgpool2d_forward", 2, default=True,
               doc="plane groups on grid.y, 2 outputs per thread, 32-bit in-plane math, "
                   "unrolled 2x2/2 and 3x3/2 paths")
def _make_avgpool_forward_cuda_v2(backend):
    def avgpool2d_forward_cuda_v2(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                                  count_include_pad=True, divisor_override=None):
        x = check_device_array("x", x, backend, ndim=4)
        kh, kw, sh, sw, ph, pw, _, _, P, Q = _geometry(x.shape, kernel_size, stride, padding, 1,
                                                       ceil_mode)
        cip = _check_bool("count_include_pad", count_include_pad)
        div = _check_divisor(divisor_override)
        xp = device_xp(backend)
        N, C, H, W = x.shape
        out = xp.empty((N, C, P, Q), dtype=x.dtype)
        hyper = (kh, kw, sh, sw, ph, pw)
        if not _cu_v2_fits(H * W, P * Q):
            _cu_launch(backend, "avgpool2d_fwd", x.dtype, out.size, (out, x),
                       _i32(H, W, P, Q, *hyper, cip, div))
            return out
        _cu_v2_launch(backend, "avgpool2d_fwd_v2", x.dtype, N * C, P, Q, (out, x),
                      _i32(H, W, P, Q, *hyper, cip, div, _cu_pairs(backend, x)),
                      fast=_cu_v2_fast(H, W, P, Q, *hyper))
        return out
    return avgpool2d_forward_cuda_v2


@register_cuda("avgpool2d_backward", 2,
               doc="plane groups on grid.y, 2 input cells per thread, 32-bit in-plane math, "
                   "v1's gather")
def _make_avgpool_backward_cuda_v2(backend):
    def avgpool2d_backward_cuda_v2(dout, x_shape, kernel_size, stride=None, padding=0,
                                   ceil_mode=False, count_include_pad=True,
                                   divisor_override=None):
        dout, dx, args = _cu_avg_backward_setup(backend, dout, x_shape, kernel_size, stride,
                                                padding, ceil_mode, count_include_pad,
                                                divisor_override)
        N, C, H, W = dx.shape
        P, Q = dout.shape[2:]
        if not _cu_v2_fits(H * W, P * Q):
            _cu_launch(backend, "avgpool2d_bwd", dout.dtype, dx.size, (dx, dout), args)
            return dx
        _cu_v2_launch(backend, "avgpool2d_bwd_v2", dout.dtype, N * C, H, W, (dx, dout), args)
        return dx
    return avgpool2d_backward_cuda_v2


# ----------------------------------------------------------------------------
# registrations
# ----------------------------------------------------------------------------
_R = registry.register
_R("maxpool2d_forward", "numpy", 1, doc="reference: -inf padding, strided slice per window "
   "offset")(maxpool2d_forward_numpy)
_R("maxpool2d_forward", "numba", 1, doc="direct loops, prange over N·C planes")(
    maxpool2d_forward_numba_v1)
_R("maxpool2d_forward", "numba", 2,
   doc="fused 2x2/s2 path over row pairs (out + argmax in one pass); else v1")(
    maxpool2d_forward_numba_v2)
_R("maxpool2d_backward", "numpy", 1, doc="reference: np.add.at scatter at argmax")(
    maxpool2d_backward_numpy)
_R("maxpool2d_backward", "numba", 1, doc="zero dx + scatter-add, prange over N·C planes")(
    maxpool2d_backward_numba_v1)
_R("maxpool2d_backward", "numba", 2,
   doc="per-plane zero (in cache) + scatter-add in one pass, any geometry")(maxpool2d_backward_numba_v2)
_R("maxpool2d_forward", "numba", 3,
   doc="branch-free vector loops: 2x2/3x3 stride-2 rows read directly, else a padded "
       "phase-split scratch per plane")(maxpool2d_forward_numba_v3)
_R("maxpool2d_forward", "numba", 4,
   doc="2x2/2 through a complex-pair view of the input (shuffles, not gathers), 3x3/2 as "
       "flat pair loops over an even-pitch copy of each plane; other geometries run v3")(
    maxpool2d_forward_numba_v4)
_R("maxpool2d_forward", "numba", 5, default=True,
   doc="float32 planes up to 4096 elements: VW planes as the vector lanes (register-block "
       "transposes), every window tap one vector load, any geometry; else v4")(
    maxpool2d_forward_numba_v5)
_R("maxpool2d_backward", "numba", 3, default=True,
   doc="vectorized argmax range check per plane, zero in cache, unchecked scatter-add")(
    maxpool2d_backward_numba_v3)
_R("avgpool2d_forward", "numpy", 1, doc="reference: sum of strided slices / separable divisor")(
    avgpool2d_forward_numpy)
_R("avgpool2d_forward", "numba", 1,
   doc="direct loops over the clipped window, prange over planes")(avgpool2d_forward_numba_v1)
_R("avgpool2d_backward", "numpy", 1, doc="reference: strided-slice scatter of dout/divisor")(
    avgpool2d_backward_numpy)
_R("avgpool2d_backward", "numba", 1,
   doc="per-plane zero + scatter over the clipped window, prange over planes")(
    avgpool2d_backward_numba_v1)
_R("avgpool2d_forward", "numba", 3, default=True,
   doc="2x2/3x3 stride-2 rows read directly, else a zero-padded phase-split scratch; "
       "the reference's arithmetic (same bits)")(avgpool2d_forward_numba_v3)
_R("avgpool2d_backward", "numba", 3, default=True,
   doc="2x2/2: direct expansion; else dout/divisor added tap by tap into a phase-split "
       "scratch (same bits as the reference)")(avgpool2d_backward_numba_v3)
_R("adaptive_avgpool2d_forward", "numpy", 1, doc="reference: mean of each input block")(
    adaptive_avgpool2d_forward_numpy)
_R("adaptive_avgpool2d_forward", "numba", 1, default=True,
   doc="direct loops, prange over planes")(adaptive_avgpool2d_forward_numba_v1)
_R("adaptive_avgpool2d_backward", "numpy", 1, doc="reference: spread dout/count over each "
   "block")(adaptive_avgpool2d_backward_numpy)
_R("adaptive_avgpool2d_backward", "numba", 1, default=True,
   doc="per-plane zero + scatter, prange over planes")(adaptive_avgpool2d_backward_numba_v1)
