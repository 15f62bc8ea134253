"""2-D convolution (cross-correlation, like ``torch.nn.functional.conv2d``): forward,
backward w.r.t. the input (data) and backward w.r.t. weight and bias.

Ops and signatures (every version of an op has the same one)::

    conv2d_forward(x, weight, bias, stride=1, padding=0, dilation=1) -> out     # new (N,K,P,Q)
    conv2d_backward_data(dout, weight, x_shape, stride=1, padding=0, dilation=1) -> dx  # new
    conv2d_backward_weight(dweight, dbias, dout, x, stride=1, padding=0, dilation=1) -> None
        # ACCUMULATES: dweight += dL/dweight, dbias += dL/dbias (dbias may be None)

``stride``, ``padding`` and ``dilation`` are an int or an ``(h, w)`` pair; padding is zeros.
``out[n,k,p,q] = bias[k] + sum_{c,r,s} weight[k,c,r,s] * x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw]``
(terms outside the input are zero). float32 and float64; results have x's dtype.

Versions
--------
numpy v1  reference: a sum over the R*S filter taps of einsum products with strided
          (sliding-window) views of the zero-padded input; plain and obviously right.
numba v1  direct loops: forward parallel (prange) over N*K, backward-data over N*C,
          backward-weight over K*C; each task owns the output elements it writes.
numba v2  im2col + BLAS, one image at a time in the calling thread; the GEMM is one
          ``np.dot`` (SciPy's OpenBLAS sgemm/dgemm), which BLAS threads itself:
          forward  out[n] (K,PQ)  = W (K,CRS) @ col (CRS,PQ)
          bwd-data dcol (CRS,PQ)  = W^T @ dout[n], then col2im (scatter-add) -> dx[n]
          bwd-wt   dW   (K,CRS)  += dout[n] @ col^T
          Best for N=1; for batches BLAS only sees one image and the gathers are serial.
numba v3  the same per-image work, images in parallel: prange over N (handed out one at a
          time), each thread with its own col buffer and BLAS limited to one thread (via
          threadpoolctl) so the two thread pools do not fight over the cores; bwd-weight
          keeps one partial dW per thread. Falls back to v2 when N == 1.
          The numba default until v4. (Tried and
          dropped: chunks of images gathered side by side into one wide col buffer for
          one all-thread GEMM per chunk. Gathering 5 AlexNet-conv3 images into the
          7.8 MB chunk took 12.4 ms against 4.0 ms into a 1.5 MB per-image buffer, and
          the forward took 152 ms against v3's 50 ms on one thread.)
numba v4  shape-specialized (the numba default until v5):
          * Winograd F(2x2, 3x3) and F(2x2, 5x5) (Lavin & Gray 2016) on 3x3 and 5x5 stride-1
            undilated convolutions with >= 32 input and output channels
            (:func:`winograd_applies`; any padding). Each 2x2 output tile is
            A^T [(G g G^T) . (B^T d B)] A of its a x a input tile d (a = R + 1), so the work
            becomes a*a GEMMs (one per transform-domain position) over all tiles of a chunk
            of images: forward U (K,C) @ V (C,tiles); bwd-data U^T @ Dy with Dy = A dy A^T,
            then B E B^T added back onto overlapping tiles; bwd-weight Dy @ V^T, then
            G^T dU G. 2.25x (3x3) and 2.78x (5x5) fewer GEMM FLOPs than im2col; the
            transforms are cheap, parallel over planes (prange); the GEMMs run in parallel
            with 1-thread BLAS each. float32 error: 3x3 about 1.5x im2col's; 5x5 about
            15-40x (AlexNet conv2: 5e-6 forward, 1.5e-5 dW, relative to the largest value;
            the 6x6 transforms have entries up to 5).
          * few output pixels (:func:`batched_im2col_applies`: N >= 2, N*P*Q <= 256, e.g.
            VGG's 7x7 layers): every image's im2col matrix side by side, one BLAS-threaded
            GEMM per pass over all N*P*Q columns (Winograd's per-position GEMMs get only 32
            columns there and its weight transforms cost as much as the GEMMs).
          * 1x1 stride-1 unpadded convolutions (:func:`pointwise_applies`, N > 1): x[n] seen
            as (C, H*W) is already the im2col matrix, so v3 without the gather: images in
            parallel, one 1-thread GEMM each.
          * v3 elsewhere.
numba v5  v4 with Winograd F(4x4, 3x3) for the 3x3 layers with enough tiles per channel
          (``_wino_tile``: N * 4x4 tiles per image >= 0.75 max(C, K)): 6x6 input tiles (the
          B^T of F(2x2, 5x5)) give 4x4 outputs, 36 GEMMs over a quarter of the tiles: 2.25
          multiplies per output instead of F(2x2, 3x3)'s 4 (9 for im2col), and fewer, larger
          transforms per output. float32 error about F(2x2, 5x5)'s (A^T entries up to 8).
          Other 3x3 layers, 5x5 layers and every other path as v4. The numba default until v6.
numba v6  v5 with the batched-im2col path (few output pixels, e.g. VGG's 7x7 layers) on
          numba's threads: the gathers / scatters in parallel over (image, channel) planes,
          the GEMMs split by rows into one single-threaded BLAS call per thread
          (``kernels/_pool_blas.py``), bias and the NCHW reorder in one parallel pass. v4 /
          v5 ran one BLAS-threaded GEMM per pass, whose speed depended on what ran before it
          (96-176 GFLOP/s for VGG 7x7 256->512 at N=4's 512 x 2304 x 196 forward GEMM, the
          OpenMP threads of numba or PyTorch still spinning on the cores), with the gathers
          in the calling thread (0.95 ms of a 4 ms forward). ``seqgrid compare`` (fwd+bwd,
          2-core AVX-512 EPYC, scaled DeepBench): that layer at N=4 11.0 -> 9.8 ms, 0.67 ->
          0.75x PyTorch (oneDNN runs it at 95% of the sgemm peak: at that shape im2col's
          GEMMs leave no room to catch up); N=2 a tie. The numba default until v7.
numba v7  v6 with a direct convolution for float32 stride-1 layers with few input channels
          (:func:`direct_applies`: C*R*S <= 288, any padding and dilation, not 1x1 unpadded),
          forward and weight gradient; backward-data as v6. Every image plane is padded to
          rows of Wp = W + 2 pw and flattened, so output position f = p*Wp + q reads input
          f + r*dh*Wp + s*dw for tap (r, s): 48 consecutive outputs of one tap read 48
          consecutive inputs (the q >= Q junk positions are computed and dropped). Forward:
          the packed micro-kernel (``kernels/_packed_gemm.py``) with 4 output channels' weights
          as its A panel and its B rows gathered from the padded input at per-tap offsets, no
          im2col matrix; weight gradient: ``dot_tile``, 4 channels x 4 taps of dot products
          along the vector lanes over dout in the same flat layout. VGG's 3 -> 64 layer at 56x56,
          N=2 (2-core AVX-512 EPYC): forward 0.50 -> 0.19 ms, weight gradient 0.42 -> 0.22 ms
          (PyTorch 0.22 / 0.25). The numba default until v8.
numba v8  v7 with the few-output-pixel layers (:func:`gathered_gemm_applies`: float32,
          N*P*Q <= 256, any N, stride, padding, dilation; e.g. VGG's 7x7 layers) in all three
          passes through the micro-kernel with a GATHERED A operand (``mk_tile_gather_a``:
          A's (k, r) value at ``rows[r] + taps[k]``, an implicit im2col matrix never stored)
          and a B operand in contiguous panels, MR output pixels x NR channels per tile (no
          position computed and dropped): forward X~ @ W^T (W^T packed by register-block
          transposes), backward-data dout^T @ W (tiles into dcol^T, then col2im), weight
          gradient dout @ col^T accumulated in place into dW. VGG 7x7 256 -> 512 at N=4
          (2-core AVX-512 EPYC, passes timed alone): forward 3.3-3.5 -> 2.5-2.9 ms,
          backward-data 3.4-3.6 -> 2.8-4.0, weight gradient 3.2-3.3 -> 2.4-2.9 (PyTorch
          2.0 / 1.9-2.5 / 2.8-3.6); in ``seqgrid compare`` (fwd+bwd in turn, each pass finding
          the others' data in cache) N=2 5.5 -> 5.0 ms, N=4 10.1 -> 9.9 ms (PyTorch 4.1 /
          7.1). The numba default until v9.
numba v9  v8 with Winograd in CHANNEL LANES (``kernels/_wino_lanes.py``;
          :func:`lane_winograd_applies`: v8's Winograd layers in float32 with C and K whole
          vector widths and padding <= R - 1): the rows of a tile row transposed into a
          per-thread zero-padded NHWC buffer, the tile transforms hand-written LLVM IR over VW
          channels at a time (generated from the scalar 1-D transforms below: the same bits
          per value), GEMM operands (a*a, tiles, channels); F(4x4, 3x3) from 64 4x4 tiles per
          pass on (_LANE_WINO4_MIN_TILES). Forward: where a micro-kernel panel width (64, 48
          or 32 on AVX-512) divides K, the per-position products go through the gathered
          micro-kernel into a per-thread buffer read by the output transform (M never stored);
          else BLAS GEMMs, then the output transform. Backward-data: the forward correlation
          of dout, padded by R - 1 - pad, with the filters rotated by 180 degrees and C, K
          swapped (no scatter-add of overlapping tiles). Weight gradient: lane transforms of x
          and dout, D^T V GEMMs per position through the micro-kernel, the inverse weight
          transforms in lanes. The GEMMs run at 150-200 GFLOP/s with the output transform
          included (v8's OpenBLAS calls: 111-141). Passes timed alone, interleaved (2-core
          AVX-512 EPYC, fwd / dx / dW ms): VGG 28 px 64->128 N=8 v8 5.1 / 5.5 / 4.6, v9 2.4 /
          3.8 / 2.6 (PyTorch 4.7 / 5.1 / 5.2); AlexNet conv4 v8 14.6 / 15.6 / 14.8, v9 11.9 /
          12.9 / 12.9 (PyTorch 15.4 / 15.7 / 18.0). ``seqgrid compare`` (scaled DeepBench,
          seeds): VGG 28 px 1.21-1.91x PyTorch (v8 0.94-1.23x), AlexNet conv1-5 1.22-1.75x (v8
          0.89-1.74x). The numba default.
cuda v1   (kernels/cuda/conv2d.cu, on "cuda" and "cuda-emu") direct: one thread per
          output element (forward) / per input element gathering over the taps (k,r,s)
          that reach it (backward-data, no atomics); backward-weight one block per
          (k,c,r,s) reducing over N*P*Q in shared memory.
cuda v2   shared-memory tiled implicit GEMM (the im2col matrix is gathered tile by tile,
          never stored): 64x64 output tile per 256-thread block, 16-deep steps, a 4x4
          register tile per thread. forward (K, NPQ) = W (K, CRS) @ col; backward-data
          (C, NHW) = W^T @ dout gathered, one GEMM per stride phase over its valid taps
          only; backward-weight (K, CRS) += dout (K, NPQ) @ col^T, NPQ split over blocks
          into a workspace summed in a fixed order (deterministic).
cuda v3   forward: the same implicit GEMM with the classic SGEMM structure: a 128x128 tile
          per 256-thread block (8x8 outputs per thread), 8-deep reduction stages
          double-buffered in shared memory (stage t+1's global loads in flight in registers
          while stage t is computed), weights stored transposed so both operands are read as
          float4s, bias in the epilogue, float4 stores. Smaller tiles when 128x128 would not
          fit the GEMM (:func:`_cu_forward_gemm_plan`): 32x128 (4x4 per thread) for K <= 32;
          64x64 (4x4) for K <= 64 or fewer 128x128 tiles than the 132 SMs of an H100/H200.
          The im2col gather computes each thread's column (n,p,q) once and reads the
          stage's (c,r,s) rows from a small per-stage table in shared memory (no division
          in the loop); 1x1 stride-1 unpadded convolutions (P*Q % 4 == 0, x 16-byte
          aligned) load 4 contiguous columns as one vector. 32-bit offsets: tensors near
          2^31 elements go to v2's forward (:func:`_cu3_fits_int`). Backward: v2's kernels.
cuda v4   v3's forward; both backward passes on v3's GEMM structure, one
          kernel with two modes (``conv2d_bwd_gemm``) reading its operands through a
          per-stage reduction-row table and per-thread column registers (no division in
          the loads). backward-data: (C, NHW) = W^T @ dout gathered, per stride phase
          (v2's split: valid taps only), 32x128 tiles for C <= 32 else 128x128
          (:func:`_cu4_data_plan`); C <= 4 runs v1's direct kernel (a GEMM that narrow
          idles most of a tile; a per-stride-phase direct kernel was 5-47% slower than
          v1's on an H200 and is not kept). backward-weight: (K, CRS) += dout @ col^T with the
          N*P*Q reduction split until ~4x (16x for 128x128 tiles) the SMs' worth of blocks
          run, into a workspace summed in a fixed order (:func:`_cu4_weight_plan`); x is
          read with consecutive threads on consecutive pixels (coalesced) and stored
          transposed into padded shared rows. 32-bit offsets: larger tensors go to v2's
          kernels. H100, DeepBench training shapes: training steps 0.36-1.20x cuDNN
          (TF32 off) against v3's 0.04-0.88x; per pass see ``bench/results``.
cuda v5   (the cuda default) Winograd F(2x2, 3x3) for 3x3 stride-1 undilated layers with
          C, K >= 32 (forward, dx) / >= 128 (dW), v4 elsewhere (:func:`_cu5_applies`): five
          transform kernels around cuBLAS strided-batched GEMMs (``cupy.matmul``) over the 16
          transformed elements, chunked over images; dx is the same correlation of dout with
          W flipped and transposed, dW the transposed algorithm F(3x3, 2x2). H200, DeepBench
          training shapes: VGG 3x3 layers of >= 64 channels forward 1.15-1.91x cuDNN, training
          steps 0.79-1.62x; every row's forward >= 0.56x (``bench/results``).
          dbias on cuda (every version): one block per k, shared-memory reduction.

Helpers used by every version: :func:`conv2d_output_shape` and :func:`check_conv2d`.
"""
# N batch, C in-ch, K out-ch, H W in, P Q out, R S filter
from __future__ import annotations

import functools
import threading
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

from . import _wino_lanes as _wl
from . import registry
from ._checks import check_float_array, check_shape, pair
from ._pool_blas import SingleThreadedBLAS as _SingleThreadedBLAS
from ._packed_gemm import GATHER_NR as _GNR
from ._packed_gemm import (DOT_MI, DOT_NJ, dot_tile, mk_tile_gather, mk_tile_gather_a,
                           pack_col_panels, pack_row_panels, transpose_into)
from ._packed_gemm import MR as _MR
from ._packed_gemm import NR as _NR
from ._packed_gemm import _VW
from ._pool_blas import pool_matmul, pool_matmul_nt_accumulate, pool_matmul_tn
from ._tile_gemm import tile_gemm, tile_groups
from .cuda.common import THREADS as CUDA_THREADS
from .cuda.common import blocks_for, ctype, device_xp, register_cuda
from .cuda.loader import load_module

__all__ = ["conv2d_output_shape", "check_conv2d", "ConvGeometry", "winograd_applies",
           "pointwise_applies", "batched_im2col_applies",
           "direct_applies", "gathered_gemm_applies", "free_conv2d_workspace",
           "free_winograd_workspace"]


# ----------------------------------------------------------------------------
# shapes and validation (shared by every version)
# ----------------------------------------------------------------------------
class ConvGeometry(NamedTuple):
    """Every size a kernel needs; stride/padding/dilation already split into (h, w)."""
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    P: int
    Q: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int


def _shape4(name: str, shape) -> tuple[int, int, int, int]:
    try:
        out = tuple(int(d) for d in shape)
    except TypeError:
        raise TypeError(f"{name}: expected a 4-tuple of ints, got {shape!r}") from None
    if len(out) != 4:
        raise ValueError(f"{name}: expected a 4-d shape, got {tuple(shape)} ({len(out)}-d)")
    if min(out) < 1:
        raise ValueError(f"{name}: every dimension must be >= 1, got {out}")
    return out


def conv_geometry(x_shape, w_shape, stride=1, padding=0, dilation=1, *,
                  x_name: str = "x", w_name: str = "weight") -> ConvGeometry:
    """Validate shapes and hyper-parameters and return the full :class:`ConvGeometry`.

    Raises ``ValueError`` for a rank other than 4, a channel mismatch between the input
    and the weight, bad stride/padding/dilation, or an output size <= 0; ``TypeError``
    for a non-int stride/padding/dilation. Messages start with the argument's name.
    """
    N, C, H, W = _shape4(x_name, x_shape)
    K, Cw, R, S = _shape4(w_name, w_shape)
    if Cw != C:
        raise ValueError(f"{w_name}: has {Cw} input channels (shape {(K, Cw, R, S)}) but "
                         f"{x_name} has {C} (shape {(N, C, H, W)}); expected {w_name}.shape[1] "
                         f"== {x_name}.shape[1]")
    sh, sw = pair("stride", stride, minimum=1)
    ph, pw = pair("padding", padding, minimum=0)
    dh, dw = pair("dilation", dilation, minimum=1)
    P = (H + 2 * ph - dh * (R - 1) - 1) // sh + 1
    Q = (W + 2 * pw - dw * (S - 1) - 1) // sw + 1
    for axis, out, size, pad, dil, f in (("height", P, H, ph, dh, R), ("width", Q, W, pw, dw, S)):
        if out <= 0:
            raise ValueError(
                f"{x_name}: output {axis} would be {out} <= 0: input {axis} {size} + 2*padding "
                f"{pad} is smaller than the dilated filter {axis} {dil * (f - 1) + 1} "
                f"(filter {f}, dilation {dil})")
    return ConvGeometry(N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw)


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, dilation=1
                        ) -> tuple[int, int, int, int]:
    """``(N, K, P, Q)`` of ``conv2d_forward(x, weight, ...)`` for ``x.shape == x_shape`` and
    ``weight.shape == w_shape``; raises the same errors as the kernels for bad arguments."""
    g = conv_geometry(x_shape, w_shape, stride, padding, dilation)
    return g.N, g.K, g.P, g.Q


def _check_accumulator(name: str, acc, ndim: int, dtype, xp=None) -> None:
    """A caller-owned gradient array: right type, dtype, rank, writeable; never copied."""
    check_float_array(name, acc, ndim=ndim, dtype=dtype, xp=xp)  # (its copy is discarded)
    if not getattr(acc.flags, "writeable", True):   # (CuPy arrays have no such flag)
        raise ValueError(f"{name}: must be writeable (gradients are accumulated into it)")


def check_conv2d(x=None, weight=None, bias=None, stride=1, padding=0, dilation=1, *,
                 dout=None, x_shape=None, dweight=None, dbias=None, xp=None):
    """Validate the arguments of any conv2d op; return ``(x, weight, bias, dout, geometry)``
    with every input array C-contiguous (copied once if it was not).

    Forward: ``x, weight, bias``; backward-data: ``weight, dout, x_shape``; backward-weight:
    ``x, dout, dweight, dbias`` (``dweight`` gives the filter shape). ``dweight``/``dbias``
    are caller-owned accumulators: checked for dtype and shape, never copied. ``xp`` is the
    array module every array must belong to (default NumPy; CuPy for the ``cuda`` backend).
    """
    dtype = None
    if x is not None:
        x = check_float_array("x", x, ndim=4, xp=xp)
        dtype, shp, x_name = x.dtype, x.shape, "x"
    else:
        shp, x_name = x_shape, "x_shape"
    if weight is not None:
        weight = check_float_array("weight", weight, ndim=4, dtype=dtype, xp=xp)
        dtype, w_shape, w_name = weight.dtype, weight.shape, "weight"
    else:
        _check_accumulator("dweight", dweight, 4, dtype, xp)
        w_shape, w_name = dweight.shape, "dweight"
    g = conv_geometry(shp, w_shape, stride, padding, dilation, x_name=x_name, w_name=w_name)
    if bias is not None:
        bias = check_float_array("bias", bias, ndim=1, dtype=dtype, xp=xp)
        check_shape("bias", bias, (g.K,))
    if dout is not None:
        dout = check_float_array("dout", dout, ndim=4, dtype=dtype, xp=xp)
        check_shape("dout", dout, (g.N, g.K, g.P, g.Q))
    if dbias is not None:
        _check_accumulator("dbias", dbias, 1, dtype, xp)
        check_shape("dbias", dbias, (g.K,))
    return x, weight, bias, dout, g


def _accumulate(acc, kernel, *args):
    """Run ``kernel(target, *args)`` which does ``target += ...``; ``acc`` itself if it is
    C-contiguous, else a zero temporary added to ``acc`` afterwards."""
    if acc.flags.c_contiguous:
        kernel(acc, *args)
    else:
        tmp = np.zeros(acc.shape, acc.dtype)
        kernel(tmp, *args)
        acc += tmp


# ----------------------------------------------------------------------------
# NumPy reference
# ----------------------------------------------------------------------------
def _windows(xp, g: ConvGeometry, r: int, s: int):
    """View of the padded input seen by filter tap (r, s): ``[:, :, p, q] -> xp[:, :, h, w]``
    with ``h = p*sh + r*dh`` and ``w = q*sw + s*dw`` (xp is already zero-padded)."""
    h0, w0 = r * g.dh, s * g.dw
    return xp[:, :, h0:h0 + g.sh * (g.P - 1) + 1:g.sh, w0:w0 + g.sw * (g.Q - 1) + 1:g.sw]


def _pad(x, g: ConvGeometry):
    return np.pad(x, ((0, 0), (0, 0), (g.ph, g.ph), (g.pw, g.pw)))


def conv2d_forward_numpy(x, weight, bias, stride=1, padding=0, dilation=1):
    """Reference forward: out = bias + sum over taps (r, s) of weight[:, :, r, s] . window."""
    x, weight, bias, _, g = check_conv2d(x, weight, bias, stride, padding, dilation)
    xp = _pad(x, g)
    out = np.zeros((g.N, g.K, g.P, g.Q), x.dtype)
    for r in range(g.R):
        for s in range(g.S):
            out += np.einsum("ncpq,kc->nkpq", _windows(xp, g, r, s), weight[:, :, r, s])
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv2d_backward_data_numpy(dout, weight, x_shape, stride=1, padding=0, dilation=1):
    """Reference dL/dx: every tap scatters weight[:, :, r, s]^T . dout back onto its window."""
    _, weight, _, dout, g = check_conv2d(None, weight, None, stride, padding, dilation,
                                         dout=dout, x_shape=x_shape)
    dxp = np.zeros((g.N, g.C, g.H + 2 * g.ph, g.W + 2 * g.pw), weight.dtype)
    for r in range(g.R):
        for s in range(g.S):
            _windows(dxp, g, r, s)[...] += np.einsum("nkpq,kc->ncpq", dout, weight[:, :, r, s])
    return np.ascontiguousarray(dxp[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W])


def conv2d_backward_weight_numpy(dweight, dbias, dout, x, stride=1, padding=0, dilation=1):
    """Reference dL/dweight (+=) and dL/dbias (+=)."""
    x, _, _, dout, g = check_conv2d(x, None, None, stride, padding, dilation,
                                    dout=dout, dweight=dweight, dbias=dbias)
    xp = _pad(x, g)
    for r in range(g.R):
        for s in range(g.S):
            dweight[:, :, r, s] += np.einsum("nkpq,ncpq->kc", dout, _windows(xp, g, r, s))
    if dbias is not None:
        dbias += dout.sum(axis=(0, 2, 3))


# ----------------------------------------------------------------------------
# Numba helpers
# ----------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _valid_range(off, stride, size, n):
    """``[lo, hi)``: the output indices ``i < n`` whose input index ``i*stride + off`` lies in
    ``[0, size)`` (the others read zero padding)."""
    lo = 0 if off >= 0 else (-off + stride - 1) // stride
    hi = (size - 1 - off) // stride + 1
    hi = max(0, min(hi, n))
    return min(lo, hi), hi


def _bias_or_zeros(bias, K, dtype):
    return bias if bias is not None else np.zeros(K, dtype)


def _hyper(g: ConvGeometry):
    return g.sh, g.sw, g.ph, g.pw, g.dh, g.dw


# ----------------------------------------------------------------------------
# Numba v1: direct loops
# ----------------------------------------------------------------------------
@njit(parallel=True, fastmath=False, cache=True)
def _forward_direct(x, w, b, out, sh, sw, ph, pw, dh, dw):
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = out.shape[2], out.shape[3]
    for nk in prange(N * K):
        n, k = nk // K, nk % K
        o = out[n, k]
        o[:, :] = b[k]
        for c in range(C):
            for r in range(R):
                plo, phi = _valid_range(r * dh - ph, sh, H, P)
                for s in range(S):
                    woff = s * dw - pw
                    qlo, qhi = _valid_range(woff, sw, W, Q)
                    wv = w[k, c, r, s]
                    for p in range(plo, phi):
                        h = p * sh - ph + r * dh
                        for q in range(qlo, qhi):
                            o[p, q] += wv * x[n, c, h, q * sw + woff]


@njit(parallel=True, fastmath=False, cache=True)
def _backward_data_direct(dout, w, dx, sh, sw, ph, pw, dh, dw):
    N, C, H, W = dx.shape
    K, _, R, S = w.shape
    P, Q = dout.shape[2], dout.shape[3]
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        d = dx[n, c]
        d[:, :] = 0
        for k in range(K):
            for r in range(R):
                plo, phi = _valid_range(r * dh - ph, sh, H, P)
                for s in range(S):
                    woff = s * dw - pw
                    qlo, qhi = _valid_range(woff, sw, W, Q)
                    wv = w[k, c, r, s]
                    for p in range(plo, phi):
                        h = p * sh - ph + r * dh
                        for q in range(qlo, qhi):
                            d[h, q * sw + woff] += wv * dout[n, k, p, q]


@njit(parallel=True, fastmath=False, cache=True)
def _backward_weight_direct(dw_acc, dout, x, sh, sw, ph, pw, dh, dw):
    N, C, H, W = x.shape
    K, _, R, S = dw_acc.shape
    P, Q = dout.shape[2], dout.shape[3]
    for kc in prange(K * C):
        k, c = kc // C, kc % C
        for r in range(R):
            plo, phi = _valid_range(r * dh - ph, sh, H, P)
            for s in range(S):
                woff = s * dw - pw
                qlo, qhi = _valid_range(woff, sw, W, Q)
                acc = 0.0
                for n in range(N):
                    for p in range(plo, phi):
                        h = p * sh - ph + r * dh
                        for q in range(qlo, qhi):
                            acc += dout[n, k, p, q] * x[n, c, h, q * sw + woff]
                dw_acc[k, c, r, s] += acc


# fastmath "reassoc" only (on the callers, where _bias_grad is inlined): lets LLVM split the
# float64 sum into vector lanes. One running sum is a chain of dependent adds, about 4 cycles
# each: VGG's 64 x 56 x 56 dbias at N=2 took 0.17 ms, as long as that layer's weight gradient.
_SUM_FASTMATH = {"reassoc"}


@njit(cache=True, inline="always")
def _bias_grad(dout, k):
    N, K, P, Q = dout.shape
    PQ = P * Q
    flat = dout.reshape(N * K * PQ)          # (callers pass C-contiguous dout)
    acc = 0.0
    for n in range(N):
        plane = flat[(n * K + k) * PQ: (n * K + k + 1) * PQ]
        for i in range(PQ):
            acc += plane[i]
    return acc


@njit(parallel=True, fastmath=_SUM_FASTMATH, cache=True)
def _backward_bias(db_acc, dout):
    for k in prange(dout.shape[1]):
        db_acc[k] += _bias_grad(dout, k)


# v2 (BLAS-threaded GEMMs) sums dbias in the calling thread: numba's thread pool started right
# after a multi-threaded OpenBLAS call waits for the core that OpenBLAS's idle worker, still
# spinning, holds (the deepspeech conv1 backward-weight at N=1: 8.0 ms against 0.47 ms).
# (Its own function: numba's cache would hand a py_func re-wrapped without parallel=True the
# parallel version cached under the same name and line.)
@njit(fastmath=_SUM_FASTMATH, cache=True)
def _backward_bias_serial(db_acc, dout):
    for k in range(dout.shape[1]):
        db_acc[k] += _bias_grad(dout, k)


def conv2d_forward_numba_v1(x, weight, bias, stride=1, padding=0, dilation=1):
    """Direct loops, parallel over N*K."""
    x, weight, bias, _, g = check_conv2d(x, weight, bias, stride, padding, dilation)
    out = np.empty((g.N, g.K, g.P, g.Q), x.dtype)
    _forward_direct(x, weight, _bias_or_zeros(bias, g.K, x.dtype), out, *_hyper(g))
    return out


def conv2d_backward_data_numba_v1(dout, weight, x_shape, stride=1, padding=0, dilation=1):
    """Direct loops, parallel over N*C."""
    _, weight, _, dout, g = check_conv2d(None, weight, None, stride, padding, dilation,
                                         dout=dout, x_shape=x_shape)
    dx = np.empty((g.N, g.C, g.H, g.W), weight.dtype)
    _backward_data_direct(dout, weight, dx, *_hyper(g))
    return dx


def conv2d_backward_weight_numba_v1(dweight, dbias, dout, x, stride=1, padding=0, dilation=1):
    """Direct loops, parallel over K*C; accumulates."""
    x, _, _, dout, g = check_conv2d(x, None, None, stride, padding, dilation,
                                    dout=dout, dweight=dweight, dbias=dbias)
    _accumulate(dweight, _backward_weight_direct, dout, x, *_hyper(g))
    if dbias is not None:
        _accumulate(dbias, _backward_bias, dout)


# ----------------------------------------------------------------------------
# Numba v2 / v3: im2col + BLAS GEMM
# ----------------------------------------------------------------------------
# Per image n, with col (C*R*S, P*Q) the unrolled input patches:
#     forward     out[n] (K, PQ)  = W (K, CRS) @ col
#     bwd-data    dcol (CRS, PQ)  = W^T @ dout[n]     then col2im (scatter-add) -> dx[n]
#     bwd-weight  dW (K, CRS)    += dout[n] @ col^T
@njit(cache=True, fastmath=False)
def _im2col_channels(xn, col, c0, c1, R, S, P, Q, sh, sw, ph, pw, dh, dw):
    """col[(c*R + r)*S + s, p*Q + q] = xn[c, p*sh - ph + r*dh, q*sw - pw + s*dw] (0 outside),
    for the channels c0 <= c < c1."""
    C, H, W = xn.shape
    xf = xn.reshape(-1)
    for c in range(c0, c1):
        for r in range(R):
            plo, phi = _valid_range(r * dh - ph, sh, H, P)
            for s in range(S):
                dst = col[(c * R + r) * S + s]
                woff = s * dw - pw
                qlo, qhi = _valid_range(woff, sw, W, Q)
                for i in range(plo * Q):
                    dst[i] = 0
                for p in range(plo, phi):
                    base = p * Q
                    src0 = (c * H + p * sh - ph + r * dh) * W + woff
                    for q in range(qlo):
                        dst[base + q] = 0
                    if sw == 1:     # views: an index from 0 vectorises, an offset one
                        d = dst[base + qlo: base + qhi]    # keeps its negative-index check
                        v = xf[src0 + qlo: src0 + qhi]     # and runs scalar (3-5x slower)
                        for q in range(qhi - qlo):
                            d[q] = v[q]
                    else:
                        for q in range(qlo, qhi):
                            dst[base + q] = xf[src0 + q * sw]
                    for q in range(qhi, Q):
                        dst[base + q] = 0
                for i in range(phi * Q, P * Q):
                    dst[i] = 0


@njit(cache=True, fastmath=False)
def _im2col_image(xn, col, R, S, P, Q, sh, sw, ph, pw, dh, dw):
    """col (C*R*S, P*Q) = image xn's im2col matrix (see :func:`_im2col_channels`)."""
    _im2col_channels(xn, col, 0, xn.shape[0], R, S, P, Q, sh, sw, ph, pw, dh, dw)


@njit(cache=True, fastmath=False)
def _col2im_channels(dcol, dxn, c0, c1, R, S, P, Q, sh, sw, ph, pw, dh, dw):
    """dxn[c0:c1] = the col rows of those channels scattered back to where
    :func:`_im2col_channels` read them (overwrites dxn[c0:c1])."""
    C, H, W = dxn.shape
    df = dxn.reshape(-1)
    for i in range(c0 * H * W, c1 * H * W):
        df[i] = 0
    for c in range(c0, c1):
        for r in range(R):
            plo, phi = _valid_range(r * dh - ph, sh, H, P)
            for s in range(S):
                src = dcol[(c * R + r) * S + s]
                woff = s * dw - pw
                qlo, qhi = _valid_range(woff, sw, W, Q)
                for p in range(plo, phi):
                    base = p * Q
                    dst0 = (c * H + p * sh - ph + r * dh) * W + woff
                    if sw == 1:     # views, as in _im2col_channels
                        d = df[dst0 + qlo: dst0 + qhi]
                        v = src[base + qlo: base + qhi]
                        for q in range(qhi - qlo):
                            d[q] += v[q]
                    else:
                        for q in range(qlo, qhi):
                            df[dst0 + q * sw] += src[base + q]


@njit(cache=True, fastmath=False)
def _col2im_image(dcol, dxn, R, S, P, Q, sh, sw, ph, pw, dh, dw):
    """dxn = the col rows scattered back to where _im2col_image read them (overwrites dxn)."""
    _col2im_channels(dcol, dxn, 0, dxn.shape[0], R, S, P, Q, sh, sw, ph, pw, dh, dw)


@njit(cache=True, fastmath=False)
def _add_bias(o, b):
    for k in range(o.shape[0]):
        o[k, :] += b[k]


@njit(cache=True, fastmath=False)
def _forward_gemm_serial(x, wm, b, out3, R, S, P, Q, sh, sw, ph, pw, dh, dw):
    col = np.empty((wm.shape[1], P * Q), x.dtype)
    for n in range(x.shape[0]):
        _im2col_image(x[n], col, R, S, P, Q, sh, sw, ph, pw, dh, dw)
        np.dot(wm, col, out3[n])
        _add_bias(out3[n], b)


@njit(cache=True, fastmath=False)
def _backward_data_gemm_serial(dout3, wm, dx, R, S, P, Q, sh, sw, ph, pw, dh, dw):
    wmT = wm.T
    dcol = np.empty((wm.shape[1], P * Q), dx.dtype)
    for n in range(dx.shape[0]):
        np.dot(wmT, dout3[n], dcol)
        _col2im_image(dcol, dx[n], R, S, P, Q, sh, sw, ph, pw, dh, dw)


@njit(cache=True, fastmath=False)
def _backward_weight_gemm_serial(dwm, dout3, x, R, S, P, Q, sh, sw, ph, pw, dh, dw):
    col = np.empty((dwm.shape[1], P * Q), x.dtype)
    tmp = np.empty(dwm.shape, x.dtype)
    for n in range(x.shape[0]):
        _im2col_image(x[n], col, R, S, P, Q, sh, sw, ph, pw, dh, dw)
        np.dot(dout3[n], col.T, tmp)
        dwm += tmp


# v3: prange over images, scheduled one image at a time (chunk size 1, so a thread that is
# slowed down does not hold up a fixed share); each thread owns buffer number get_thread_id().
@njit(parallel=True, fastmath=False, cache=True)
def _forward_gemm_images(x, wm, b, out3, T, R, S, P, Q, sh, sw, ph, pw, dh, dw):
    cols = np.empty((T, wm.shape[1], P * Q), x.dtype)
    for n in prange(x.shape[0]):
        col = cols[numba.get_thread_id()]
        _im2col_image(x[n], col, R, S, P, Q, sh, sw, ph, pw, dh, dw)
        np.dot(wm, col, out3[n])
        _add_bias(out3[n], b)


@njit(parallel=True, fastmath=False, cache=True)
def _backward_data_gemm_images(dout3, wm, dx, T, R, S, P, Q, sh, sw, ph, pw, dh, dw):
    wmT = wm.T
    dcols = np.empty((T, wm.shape[1], P * Q), dx.dtype)
    for n in prange(dx.shape[0]):
        dcol = dcols[numba.get_thread_id()]
        np.dot(wmT, dout3[n], dcol)
        _col2im_image(dcol, dx[n], R, S, P, Q, sh, sw, ph, pw, dh, dw)


@njit(parallel=True, fastmath=False, cache=True)
def _backward_weight_gemm_images(part, dout3, x, R, S, P, Q, sh, sw, ph, pw, dh, dw):
    """part[t] += this thread's images' dW (K, CRS); the caller sums over t. (No array
    expressions here: with chunk size 1 each would become a parfor of single elements.)"""
    T, K, CRS = part.shape
    cols = np.empty((T, CRS, P * Q), x.dtype)
    tmps = np.empty((T, K, CRS), x.dtype)
    for n in prange(x.shape[0]):
        t = numba.get_thread_id()
        col, pt, tt = cols[t], part[t], tmps[t]
        _im2col_image(x[n], col, R, S, P, Q, sh, sw, ph, pw, dh, dw)
        np.dot(dout3[n], col.T, tt)
        for k in range(K):
            for i in range(CRS):
                pt[k, i] += tt[k, i]


def _gemm_geometry(g: ConvGeometry):
    return (g.R, g.S, g.P, g.Q) + _hyper(g)


def _threads() -> int:
    """Number of per-thread buffers: numba's thread count (what prange's threads use)."""
    return numba.get_num_threads()


def conv2d_forward_numba_v2(x, weight, bias, stride=1, padding=0, dilation=1):
    """im2col + BLAS GEMM, one image at a time, BLAS threads the GEMM."""
    x, weight, bias, _, g = check_conv2d(x, weight, bias, stride, padding, dilation)
    out = np.empty((g.N, g.K, g.P * g.Q), x.dtype)
    _forward_gemm_serial(x, weight.reshape(g.K, -1), _bias_or_zeros(bias, g.K, x.dtype), out,
                         *_gemm_geometry(g))
    return out.reshape(g.N, g.K, g.P, g.Q)


def conv2d_backward_data_numba_v2(dout, weight, x_shape, stride=1, padding=0, dilation=1):
    """BLAS GEMM + col2im, one image at a time."""
    _, weight, _, dout, g = check_conv2d(None, weight, None, stride, padding, dilation,
                                         dout=dout, x_shape=x_shape)
    dx = np.empty((g.N, g.C, g.H, g.W), weight.dtype)
    _backward_data_gemm_serial(dout.reshape(g.N, g.K, -1), weight.reshape(g.K, -1), dx,
                               *_gemm_geometry(g))
    return dx


def _weight_gemm_serial_into(dw_acc, dout3, x, *geo):
    _backward_weight_gemm_serial(dw_acc.reshape(dw_acc.shape[0], -1), dout3, x, *geo)


def conv2d_backward_weight_numba_v2(dweight, dbias, dout, x, stride=1, padding=0, dilation=1):
    """im2col + BLAS GEMM, one image at a time; accumulates."""
    x, _, _, dout, g = check_conv2d(x, None, None, stride, padding, dilation,
                                    dout=dout, dweight=dweight, dbias=dbias)
    _accumulate(dweight, _weight_gemm_serial_into, dout.reshape(g.N, g.K, -1), x,
                *_gemm_geometry(g))
    if dbias is not None:
        _accumulate(dbias, _backward_bias_serial, dout)


def conv2d_forward_numba_v3(x, weight, bias, stride=1, padding=0, dilation=1):
    """Images in parallel (prange), each im2col + single-threaded BLAS GEMM."""
    x, weight, bias, _, g = check_conv2d(x, weight, bias, stride, padding, dilation)
    T = _threads()
    if g.N == 1:   # one image: nothing to share out; let BLAS thread the GEMM
        return conv2d_forward_numba_v2(x, weight, bias, stride, padding, dilation)
    out = np.empty((g.N, g.K, g.P * g.Q), x.dtype)
    with _SingleThreadedBLAS():
        _forward_gemm_images(x, weight.reshape(g.K, -1), _bias_or_zeros(bias, g.K, x.dtype),
                             out, T, *_gemm_geometry(g))
    return out.reshape(g.N, g.K, g.P, g.Q)


def conv2d_backward_data_numba_v3(dout, weight, x_shape, stride=1, padding=0, dilation=1):
    """Images in parallel (prange), each single-threaded BLAS GEMM + col2im."""
    _, weight, _, dout, g = check_conv2d(None, weight, None, stride, padding, dilation,
                                         dout=dout, x_shape=x_shape)
    T = _threads()
    if g.N == 1:   # one image: nothing to share out; let BLAS thread the GEMM
        return conv2d_backward_data_numba_v2(dout, weight, x_shape, stride, padding, dilation)
    dx = np.empty((g.N, g.C, g.H, g.W), weight.dtype)
    with _SingleThreadedBLAS():
        _backward_data_gemm_images(dout.reshape(g.N, g.K, -1), weight.reshape(g.K, -1), dx, T,
                                   *_gemm_geometry(g))
    return dx


def conv2d_backward_weight_numba_v3(dweight, dbias, dout, x, stride=1, padding=0, dilation=1):
    """Images in parallel (prange), each im2col + single-threaded BLAS GEMM; accumulates."""
    x, _, _, dout, g = check_conv2d(x, None, None, stride, padding, dilation,
                                    dout=dout, dweight=dweight, dbias=dbias)
    T = _threads()
    if g.N == 1:   # one image: nothing to share out; let BLAS thread the GEMM
        return conv2d_backward_weight_numba_v2(dweight, dbias, dout, x, stride, padding, dilation)
    part = np.zeros((T, g.K, g.C * g.R * g.S), x.dtype)
    with _SingleThreadedBLAS():
        _backward_weight_gemm_images(part, dout.reshape(g.N, g.K, -1), x, *_gemm_geometry(g))
    dweight += part.sum(axis=0).reshape(dweight.shape)
    if dbias is not None:
        _accumulate(dbias, _backward_bias, dout)


# ----------------------------------------------------------------------------
# Numba v4: Winograd F(2x2, 3x3) and F(2x2, 5x5); v5: F(4x4, 3x3); 1x1 convolutions as GEMMs
# ----------------------------------------------------------------------------
# Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016): a 2x2 output tile
# of one (k, c) pair from its a x a input tile d (a = R + 1) and R x R filter g is
#     y = A^T [ (G g G^T) ⊙ (B^T d B) ] A
# so each of the a*a transform-domain positions xi is one GEMM over all tiles t:
#     forward     M[xi] (K, T)  = U[xi] (K, C) @ V[xi] (C, T)     U = G g G^T, V = B^T d B
#     bwd-data    E[xi] (C, T)  = U[xi]^T @ Dy[xi] (K, T)         Dy = A dy A^T (dL/dM),
#                                                                 U[xi]^T stored contiguous
#                 dx tile       = B E B^T (dL/dd), overlapping tiles added
#     bwd-weight  dU[xi] (K, C) = Dy[xi] @ V[xi]^T,  dW = G^T dU G
# 3x3: 16 multiplies for 4 outputs instead of 36 (2.25x fewer GEMM FLOPs than im2col);
# 5x5: 36 instead of 100 (2.78x), with the interpolation points 0, 1, -1, 2, -2, inf (the
# B^T of F(4x4, 3x3)); v5's F(4x4, 3x3): 36 for 16 outputs instead of 144 (4x). Fewer where
# P or Q leaves part-used edge tiles. Tiles are
# numbered t = (image*TP + tile row)*TQ + tile column; images go through in chunks that keep
# the transform buffers near _WINO_CHUNK_BYTES. The a*a GEMMs run in parallel (prange,
# 1-thread BLAS each, like v3). ``k`` below is (1/2, 2, 4, 5, 8) in the data's dtype, so that
# float32 arithmetic stays float32 (a Python int or float constant would make it float64).
_WL = _VW             # filters per lane block of _wino_weight_grad6
_U = np.uint64         # unsigned indices: no negative-index wraparound code
_WINO_CHUNK_BYTES = 64 << 20     # AlexNet conv2 (5x5): 32 MB chunks 165 ms, 64 MB 156, 128 MB 144
_WINO_MIN_CHANNELS = 32
_WINO_SIZES = (3, 5)


# ---- the 1-D transforms of F(2, 3) (a = 4) ----
@njit(cache=True, inline="always")
def _wino_g(a, b, c, half):    # G (4x3) applied to a 3-vector
    return a, half * (a + b + c), half * (a - b + c), c


@njit(cache=True, inline="always")
def _wino_gt(a, b, c, d, half):    # G^T (3x4) applied to a 4-vector
    return a + half * (b + c), half * (b - c), half * (b + c) + d


@njit(cache=True, inline="always")
def _wino_bt(a, b, c, d):      # B^T (4x4)
    return a - c, b + c, c - b, b - d


@njit(cache=True, inline="always")
def _wino_b(a, b, c, d):       # B (4x4)
    return a, b - c + d, b + c - a, -d


@njit(cache=True, inline="always")
def _wino_at(a, b, c, d):      # A^T (2x4)
    return a + b + c, b - c - d


@njit(cache=True, inline="always")
def _wino_a(a, b):             # A (4x2)
    return a, a + b, a - b, -b


# ---- the 1-D transforms of F(2, 5) (a = 6) ----
@njit(cache=True, inline="always")
def _wino5_g(a, b, c, d, e):   # G (6x5); in float64 (weights: once per call, more accurate)
    ev, od = a + c + e, b + d
    ev2, od2 = a + 4.0 * c + 16.0 * e, 2.0 * b + 8.0 * d
    return (0.25 * a, -(ev + od) / 6.0, (od - ev) / 6.0, (ev2 + od2) / 24.0, (ev2 - od2) / 24.0,
            1.0 * e)


@njit(cache=True, inline="always")
def _wino5_gt(a, b, c, d, e, f):   # G^T (5x6)
    s1, d1, s2, d2 = b + c, c - b, d + e, d - e
    return (0.25 * a - s1 / 6.0 + s2 / 24.0, d1 / 6.0 + d2 / 12.0, (s2 - s1) / 6.0,
            d1 / 6.0 + d2 / 3.0, 2.0 * s2 / 3.0 - s1 / 6.0 + f)


@njit(cache=True, inline="always")
def _wino5_bt(a, b, c, d, e, f, k):    # B^T (6x6)
    two, four, five = k[1], k[2], k[3]
    p, q = e - four * c, d - four * b     # rows 1, 2: e - 4c +- (d - 4b)
    u, v = e - c, two * (d - b)           # rows 3, 4: e - c +- 2(d - b)
    return four * a - five * c + e, p + q, p - q, u + v, u - v, four * b - five * d + f


@njit(cache=True, inline="always")
def _wino5_b(a, b, c, d, e, f, k):     # B (6x6)
    two, four, five = k[1], k[2], k[3]
    s, t = c - b, e - d                   # B^T's columns: 4(c - b) + 2(e - d) etc.
    return (four * a, four * (s + f) + two * t, -five * a - four * (b + c) - (d + e),
            (b - c) + two * (d - e) - five * f, a + b + c + d + e, f)


@njit(cache=True, inline="always")
def _wino5_at(a, b, c, d, e, f, two):   # A^T (2x6)
    return a + b + c + d + e, (b - c) + two * (d - e) + f


@njit(cache=True, inline="always")
def _wino5_a(a, b, two):       # A (6x2)
    return a, a + b, a - b, a + two * b, a - two * b, b


# ---- the 1-D transforms of F(4, 3) (a = 6: the same points and B^T / B as F(2, 5)) ----
@njit(cache=True, inline="always")
def _wino43_g(a, b, c):        # G (6x3); in float64 like _wino5_g
    return 0.25 * a, -(a + b + c) / 6.0, (b - a - c) / 6.0, (a + 2.0 * b + 4.0 * c) / 24.0, \
        (a - 2.0 * b + 4.0 * c) / 24.0, 1.0 * c


@njit(cache=True, inline="always")
def _wino43_gt(a, b, c, d, e, f):   # G^T (3x6)
    s1, d1, s2, d2 = b + c, c - b, d + e, d - e
    return 0.25 * a - s1 / 6.0 + s2 / 24.0, d1 / 6.0 + d2 / 12.0, (s2 - s1) / 6.0 + f


@njit(cache=True, inline="always")
def _wino43_at(a, b, c, d, e, f, k):    # A^T (4x6)
    two, four, eight = k[1], k[2], k[4]
    s1, d1, s2, d2 = b + c, b - c, d + e, d - e
    return a + s1 + s2, d1 + two * d2, s1 + four * s2, d1 + eight * d2 + f


@njit(cache=True, inline="always")
def _wino43_a(a, b, c, d, k):  # A (6x4)
    two, four, eight = k[1], k[2], k[4]
    ev, od = a + c, b + d
    ev2, od2 = a + four * c, two * b + eight * d
    return a, ev + od, ev - od, ev2 + od2, ev2 - od2, d


# ---- one tile: 2-D transforms as the 1-D ones on columns, then on rows ----
# ``m`` is the output tile size: 2 for F(2x2, 3x3) and F(2x2, 5x5), 4 for F(4x4, 3x3); the
# input tiles are a x a, a = m + R - 1 (4 for F(2x2, 3x3), 6 for the other two)
@njit(cache=True, inline="always")
def _wino_put(loc, j, xi0, v):
    for i in range(len(v)):
        loc[j, xi0 + i] = v[i]


@njit(cache=True, inline="always")
def _wino_weight_tile(g, loc, c, R, m, k):
    """loc[c] = G g G^T (g: R x R)."""
    if R == 3 and m == 4:
        c0 = _wino43_g(g[0, 0], g[1, 0], g[2, 0])        # columns of G g
        c1 = _wino43_g(g[0, 1], g[1, 1], g[2, 1])
        c2 = _wino43_g(g[0, 2], g[1, 2], g[2, 2])
        for i in range(6):                                # rows of (G g) G^T
            _wino_put(loc, c, 6 * i, _wino43_g(c0[i], c1[i], c2[i]))
    elif R == 3:
        c0 = _wino_g(g[0, 0], g[1, 0], g[2, 0], k[0])     # columns of G g
        c1 = _wino_g(g[0, 1], g[1, 1], g[2, 1], k[0])
        c2 = _wino_g(g[0, 2], g[1, 2], g[2, 2], k[0])
        for i in range(4):                                # rows of (G g) G^T
            _wino_put(loc, c, 4 * i, _wino_g(c0[i], c1[i], c2[i], k[0]))
    else:
        c0 = _wino5_g(g[0, 0], g[1, 0], g[2, 0], g[3, 0], g[4, 0])
        c1 = _wino5_g(g[0, 1], g[1, 1], g[2, 1], g[3, 1], g[4, 1])
        c2 = _wino5_g(g[0, 2], g[1, 2], g[2, 2], g[3, 2], g[4, 2])
        c3 = _wino5_g(g[0, 3], g[1, 3], g[2, 3], g[3, 3], g[4, 3])
        c4 = _wino5_g(g[0, 4], g[1, 4], g[2, 4], g[3, 4], g[4, 4])
        for i in range(6):
            _wino_put(loc, c, 6 * i, _wino5_g(c0[i], c1[i], c2[i], c3[i], c4[i]))


@njit(cache=True, inline="always")
def _wino_weight_grad_tile(u, o, R, m, k):
    """o (R x R) += G^T u G (u: the a*a positions, row-major)."""
    if R == 3 and m == 4:
        h0 = _wino43_gt(u[0], u[6], u[12], u[18], u[24], u[30])   # columns of G^T dU
        h1 = _wino43_gt(u[1], u[7], u[13], u[19], u[25], u[31])
        h2 = _wino43_gt(u[2], u[8], u[14], u[20], u[26], u[32])
        h3 = _wino43_gt(u[3], u[9], u[15], u[21], u[27], u[33])
        h4 = _wino43_gt(u[4], u[10], u[16], u[22], u[28], u[34])
        h5 = _wino43_gt(u[5], u[11], u[17], u[23], u[29], u[35])
        for r in range(3):
            row = _wino43_gt(h0[r], h1[r], h2[r], h3[r], h4[r], h5[r])
            for s in range(3):
                o[r, s] += row[s]
    elif R == 3:
        h0 = _wino_gt(u[0], u[4], u[8], u[12], k[0])       # columns of G^T dU (3 rows each)
        h1 = _wino_gt(u[1], u[5], u[9], u[13], k[0])
        h2 = _wino_gt(u[2], u[6], u[10], u[14], k[0])
        h3 = _wino_gt(u[3], u[7], u[11], u[15], k[0])
        for r in range(3):
            row = _wino_gt(h0[r], h1[r], h2[r], h3[r], k[0])
            for s in range(3):
                o[r, s] += row[s]
    else:
        h0 = _wino5_gt(u[0], u[6], u[12], u[18], u[24], u[30])
        h1 = _wino5_gt(u[1], u[7], u[13], u[19], u[25], u[31])
        h2 = _wino5_gt(u[2], u[8], u[14], u[20], u[26], u[32])
        h3 = _wino5_gt(u[3], u[9], u[15], u[21], u[27], u[33])
        h4 = _wino5_gt(u[4], u[10], u[16], u[22], u[28], u[34])
        h5 = _wino5_gt(u[5], u[11], u[17], u[23], u[29], u[35])
        for r in range(5):
            row = _wino5_gt(h0[r], h1[r], h2[r], h3[r], h4[r], h5[r])
            for s in range(5):
                o[r, s] += row[s]


@njit(cache=True, inline="always")
def _lns(b, o, i, st):
    """Value i of the lane at b[o] in a block of rows ``st`` apart."""
    return b[_U(o + i * st)]


@njit(cache=True, inline="always")
def _wino_gt_lane(gt, n, ul, o, us, ol, j):
    """Lane j of :func:`_wino_weight_grad_lanes6` with the 1-D transform ``gt`` (n outputs)."""
    h0 = gt(_lns(ul, o, 0, us), _lns(ul, o, 6, us), _lns(ul, o, 12, us),
            _lns(ul, o, 18, us), _lns(ul, o, 24, us), _lns(ul, o, 30, us))   # columns of G^T dU
    h1 = gt(_lns(ul, o, 1, us), _lns(ul, o, 7, us), _lns(ul, o, 13, us),
            _lns(ul, o, 19, us), _lns(ul, o, 25, us), _lns(ul, o, 31, us))
    h2 = gt(_lns(ul, o, 2, us), _lns(ul, o, 8, us), _lns(ul, o, 14, us),
            _lns(ul, o, 20, us), _lns(ul, o, 26, us), _lns(ul, o, 32, us))
    h3 = gt(_lns(ul, o, 3, us), _lns(ul, o, 9, us), _lns(ul, o, 15, us),
            _lns(ul, o, 21, us), _lns(ul, o, 27, us), _lns(ul, o, 33, us))
    h4 = gt(_lns(ul, o, 4, us), _lns(ul, o, 10, us), _lns(ul, o, 16, us),
            _lns(ul, o, 22, us), _lns(ul, o, 28, us), _lns(ul, o, 34, us))
    h5 = gt(_lns(ul, o, 5, us), _lns(ul, o, 11, us), _lns(ul, o, 17, us),
            _lns(ul, o, 23, us), _lns(ul, o, 29, us), _lns(ul, o, 35, us))
    for r in range(n):
        row = gt(h0[r], h1[r], h2[r], h3[r], h4[r], h5[r])
        for s in range(n):
            ol[_U(j + (n * r + s) * _WL)] = row[s]


@njit(cache=True, inline="always")
def _wino_weight_grad_lanes6(ul, u0, us, ol, R, k):
    """ol[(r*R + s)*_WL + j] = (G^T u G)[r, s] for _WL filters at once (a 6 x 6 transform:
    F(4x4, 3x3) or F(2x2, 5x5)), filter j's 36 positions u at ul[u0 + j + xi*us]: the
    formulas of :func:`_wino_weight_grad_tile` in the same order (the same bits), vectorised
    across the filters. ol is float64, as the one-filter code's sums before they are added."""
    if R == 3:
        for j in range(_WL):
            _wino_gt_lane(_wino43_gt, 3, ul, u0 + j, us, ol, j)
    else:
        for j in range(_WL):
            _wino_gt_lane(_wino5_gt, 5, ul, u0 + j, us, ol, j)


@njit(cache=True, inline="always")
def _wino_input_tile(d, r, s, loc, j, R, m, k):
    """loc[j] = B^T d B of the a x a tile of d at (r, s)."""
    if R == 3 and m == 2:
        c0 = _wino_bt(d[r, s], d[r + 1, s], d[r + 2, s], d[r + 3, s])   # columns of B^T d
        c1 = _wino_bt(d[r, s + 1], d[r + 1, s + 1], d[r + 2, s + 1], d[r + 3, s + 1])
        c2 = _wino_bt(d[r, s + 2], d[r + 1, s + 2], d[r + 2, s + 2], d[r + 3, s + 2])
        c3 = _wino_bt(d[r, s + 3], d[r + 1, s + 3], d[r + 2, s + 3], d[r + 3, s + 3])
        for i in range(4):
            _wino_put(loc, j, 4 * i, _wino_bt(c0[i], c1[i], c2[i], c3[i]))
    else:
        c0 = _wino5_bt_col(d, r, s, k)
        c1 = _wino5_bt_col(d, r, s + 1, k)
        c2 = _wino5_bt_col(d, r, s + 2, k)
        c3 = _wino5_bt_col(d, r, s + 3, k)
        c4 = _wino5_bt_col(d, r, s + 4, k)
        c5 = _wino5_bt_col(d, r, s + 5, k)
        for i in range(6):
            _wino_put(loc, j, 6 * i, _wino5_bt(c0[i], c1[i], c2[i], c3[i], c4[i], c5[i], k))


@njit(cache=True, inline="always")
def _wino5_bt_col(d, r, s, k):
    return _wino5_bt(d[r, s], d[r + 1, s], d[r + 2, s], d[r + 3, s], d[r + 4, s], d[r + 5, s], k)


@njit(cache=True, inline="always")
def _wino_output_tile(m, R, k):
    """The 2x2 tile A^T m A as (y00, y01, y10, y11) (m: the a*a positions, row-major)."""
    if R == 3:
        s0 = _wino_at(m[0], m[4], m[8], m[12])          # columns of A^T M
        s1 = _wino_at(m[1], m[5], m[9], m[13])
        s2 = _wino_at(m[2], m[6], m[10], m[14])
        s3 = _wino_at(m[3], m[7], m[11], m[15])
        y0 = _wino_at(s0[0], s1[0], s2[0], s3[0])
        y1 = _wino_at(s0[1], s1[1], s2[1], s3[1])
    else:
        two = k[1]
        s0 = _wino5_at(m[0], m[6], m[12], m[18], m[24], m[30], two)
        s1 = _wino5_at(m[1], m[7], m[13], m[19], m[25], m[31], two)
        s2 = _wino5_at(m[2], m[8], m[14], m[20], m[26], m[32], two)
        s3 = _wino5_at(m[3], m[9], m[15], m[21], m[27], m[33], two)
        s4 = _wino5_at(m[4], m[10], m[16], m[22], m[28], m[34], two)
        s5 = _wino5_at(m[5], m[11], m[17], m[23], m[29], m[35], two)
        y0 = _wino5_at(s0[0], s1[0], s2[0], s3[0], s4[0], s5[0], two)
        y1 = _wino5_at(s0[1], s1[1], s2[1], s3[1], s4[1], s5[1], two)
    return y0[0], y0[1], y1[0], y1[1]


@njit(cache=True, inline="always")
def _wino_store_tile4(mt, o, r, s, bk, k):
    """o's 4x4 tile at (r, s) = A^T mt A + bk, cut at o's edges (F(4x4, 3x3); mt: the 36
    positions, row-major)."""
    s0 = _wino43_at(mt[0], mt[6], mt[12], mt[18], mt[24], mt[30], k)     # columns of A^T M
    s1 = _wino43_at(mt[1], mt[7], mt[13], mt[19], mt[25], mt[31], k)
    s2 = _wino43_at(mt[2], mt[8], mt[14], mt[20], mt[26], mt[32], k)
    s3 = _wino43_at(mt[3], mt[9], mt[15], mt[21], mt[27], mt[33], k)
    s4 = _wino43_at(mt[4], mt[10], mt[16], mt[22], mt[28], mt[34], k)
    s5 = _wino43_at(mt[5], mt[11], mt[17], mt[23], mt[29], mt[35], k)
    nr, nc = min(4, o.shape[0] - r), min(4, o.shape[1] - s)
    for i in range(nr):
        row = _wino43_at(s0[i], s1[i], s2[i], s3[i], s4[i], s5[i], k)
        for jj in range(nc):
            o[r + i, s + jj] = row[jj] + bk


@njit(cache=True, inline="always")
def _wino_dout_tile(y, r, s, loc, j, R, m, k):
    """loc[j] = A dy A^T of the m x m tile dy of y at (r, s)."""
    if R == 3 and m == 4:
        a0 = _wino43_a(y[r, s], y[r + 1, s], y[r + 2, s], y[r + 3, s], k)   # columns of A dy
        a1 = _wino43_a(y[r, s + 1], y[r + 1, s + 1], y[r + 2, s + 1], y[r + 3, s + 1], k)
        a2 = _wino43_a(y[r, s + 2], y[r + 1, s + 2], y[r + 2, s + 2], y[r + 3, s + 2], k)
        a3 = _wino43_a(y[r, s + 3], y[r + 1, s + 3], y[r + 2, s + 3], y[r + 3, s + 3], k)
        for i in range(6):                              # rows of (A dy) A^T
            _wino_put(loc, j, 6 * i, _wino43_a(a0[i], a1[i], a2[i], a3[i], k))
    elif R == 3:
        a0 = _wino_a(y[r, s], y[r + 1, s])              # columns of A dy
        a1 = _wino_a(y[r, s + 1], y[r + 1, s + 1])
        for i in range(4):                              # rows of (A dy) A^T
            _wino_put(loc, j, 4 * i, _wino_a(a0[i], a1[i]))
    else:
        a0 = _wino5_a(y[r, s], y[r + 1, s], k[1])
        a1 = _wino5_a(y[r, s + 1], y[r + 1, s + 1], k[1])
        for i in range(6):
            _wino_put(loc, j, 6 * i, _wino5_a(a0[i], a1[i], k[1]))


@njit(cache=True, inline="always")
def _wino_data_tile(e, d, r, s, R, m, k):
    """d's a x a tile at (r, s) += B e B^T (e: the a*a positions, row-major)."""
    if R == 3 and m == 2:
        b0 = _wino_b(e[0], e[4], e[8], e[12])           # columns of B E
        b1 = _wino_b(e[1], e[5], e[9], e[13])
        b2 = _wino_b(e[2], e[6], e[10], e[14])
        b3 = _wino_b(e[3], e[7], e[11], e[15])
        for i in range(4):
            row = _wino_b(b0[i], b1[i], b2[i], b3[i])
            for jj in range(4):
                d[r + i, s + jj] += row[jj]
    else:
        b0 = _wino5_b(e[0], e[6], e[12], e[18], e[24], e[30], k)
        b1 = _wino5_b(e[1], e[7], e[13], e[19], e[25], e[31], k)
        b2 = _wino5_b(e[2], e[8], e[14], e[20], e[26], e[32], k)
        b3 = _wino5_b(e[3], e[9], e[15], e[21], e[27], e[33], k)
        b4 = _wino5_b(e[4], e[10], e[16], e[22], e[28], e[34], k)
        b5 = _wino5_b(e[5], e[11], e[17], e[23], e[29], e[35], k)
        for i in range(6):
            row = _wino5_b(b0[i], b1[i], b2[i], b3[i], b4[i], b5[i], k)
            for jj in range(6):
                d[r + i, s + jj] += row[jj]


# ---- kernels: parallel over planes (transforms) or positions xi (GEMMs) ----
# Each transform task owns one row of the GEMM operands (a channel c or a filter k, every image
# of the chunk), works in a thread's tile-major scratch loc (tiles, a*a) and moves it to or
# from the GEMMs' (a*a, rows, tiles) layout as a*a contiguous runs: writing each tile's values
# straight into a*a far-apart rows measured 2.5x slower.
@njit(cache=True, inline="always")
def _wino_scatter(loc, n, dst, row, t0):
    """dst[xi, row, t0 + j] = loc[j, xi] for j < n."""
    for xi in range(dst.shape[0]):
        d = dst[xi, row]
        for j in range(n):
            d[t0 + j] = loc[j, xi]


@njit(cache=True, inline="always")
def _wino_gather(src, row, t0, n, loc):
    """loc[j, xi] = src[xi, row, t0 + j] for j < n."""
    for xi in range(src.shape[0]):
        s = src[xi, row]
        for j in range(n):
            loc[j, xi] = s[t0 + j]


@njit(parallel=True, fastmath=False, cache=True)
def _wino_weights(w, U, m, locs, k):
    """U[xi, k, c] = (G w[k, c] G^T)[xi]."""
    K, C, R = w.shape[0], w.shape[1], w.shape[2]
    for kk in prange(K):
        loc = locs[numba.get_thread_id()]
        for c in range(C):
            _wino_weight_tile(w[kk, c], loc, c, R, m, k)
        _wino_scatter(loc, C, U, kk, 0)


@njit(parallel=True, fastmath=False, cache=True)
def _wino_weights_transposed(w, UT, m, locs, k):
    """UT[xi, c, k] = (G w[k, c] G^T)[xi]: U[xi]^T stored C-contiguous for the data GEMMs
    (OpenBLAS's transposed-A path on a U[xi].T view measured 2.2-2.5x slower: 16 GEMMs of
    (256 x 512) @ (512 x 32), 3.3-3.9 ms against 1.5-1.6 ms)."""
    K, C, R = w.shape[0], w.shape[1], w.shape[2]
    for c in prange(C):
        loc = locs[numba.get_thread_id()]
        for kk in range(K):
            _wino_weight_tile(w[kk, c], loc, kk, R, m, k)
        _wino_scatter(loc, K, UT, c, 0)


@njit(parallel=True, fastmath=False, cache=True)
def _wino_weight_grad(dw_acc, dU, m, locs, k):
    """dw_acc[k, c] += G^T dU[:, k, c] G (the a*a xi as an a x a matrix)."""
    K, C, R = dw_acc.shape[0], dw_acc.shape[1], dw_acc.shape[2]
    for kk in prange(K):
        loc = locs[numba.get_thread_id()]
        _wino_gather(dU, kk, 0, C, loc)
        for c in range(C):
            _wino_weight_grad_tile(loc[c], dw_acc[kk, c], R, m, k)


@njit(parallel=True, fastmath=False, cache=True)
def _wino_weight_grad6(dw_acc, dU, R, rows, lanes64, k):
    """:func:`_wino_weight_grad` for the 6 x 6 transforms (F(4x4, 3x3), F(2x2, 5x5)), _WL
    filters at a time: one k per work item, dU[:, k] copied into the thread's ``rows`` (36
    rows of C rounded up to _WL), then its channels a lane each (``lanes64``: per thread, a
    float64 block of R*R x _WL sums). One filter at a time, their float64 G^T dU G (36
    divisions per filter) ran 36-74 ns per filter on 2 threads: VGG 28 px 64->128 0.30 ->
    0.135 ms, AlexNet conv2 1.5 -> 0.7-0.9 ms per call. (The 4 x 4 transforms are float32
    multiplies by 1/2 and stay one filter at a time: there, staging the lanes cost more.)"""
    K, C = dw_acc.shape[0], dw_acc.shape[1]
    RR, XI, Cp = R * R, dU.shape[0], (C + _WL - 1) // _WL * _WL
    df = dw_acc.reshape(-1)
    for kk in prange(K):
        ol, yt = lanes64[numba.get_thread_id()], rows[numba.get_thread_id()]
        for xi in range(XI):
            yt[xi * Cp:xi * Cp + C] = dU[xi, kk]
        for c0 in range(0, C, _WL):
            _wino_weight_grad_lanes6(yt, c0, Cp, ol, R, k)
            for j in range(min(_WL, C - c0)):
                dst = (kk * C + c0 + j) * RR
                for t in range(RR):
                    df[_U(dst + t)] += ol[_U(t * _WL + j)]


@njit(cache=True, inline="always")
def _wino_pad_plane(src, d, ph, pw):
    """d = src placed at (ph, pw) in zeros."""
    for r in range(d.shape[0]):
        for s in range(d.shape[1]):
            d[r, s] = 0
    for r in range(src.shape[0]):
        for s in range(src.shape[1]):
            d[r + ph, s + pw] = src[r, s]


@njit(parallel=True, fastmath=False, cache=True)
def _wino_inputs(x, n0, V, ph, pw, TP, TQ, R, m, pads, locs, k):
    """V[xi, c, t] = (B^T d B)[xi] for every a x a tile d of images n0.. (as many as V holds):
    tile (p, q) reads rows m*p - ph .. m*p - ph + a - 1, columns likewise, of the zero-padded
    plane."""
    C = x.shape[1]
    TT = TP * TQ
    nb = V.shape[2] // TT
    for c in prange(C):
        d, loc = pads[numba.get_thread_id()], locs[numba.get_thread_id()]
        for i in range(nb):
            _wino_pad_plane(x[n0 + i, c], d, ph, pw)
            for p in range(TP):
                for q in range(TQ):
                    _wino_input_tile(d, m * p, m * q, loc, i * TT + p * TQ + q, R, m, k)
        _wino_scatter(loc, nb * TT, V, c, 0)


@njit(parallel=True, fastmath=False, cache=True)
def _wino_outputs(M, b, out, n0, TP, TQ, R, m, locs, k):
    """out[n0 + i, k] = A^T M A per tile, + bias (edge tiles cut at P, Q)."""
    K, P, Q = out.shape[1], out.shape[2], out.shape[3]
    TT = TP * TQ
    nb = M.shape[2] // TT
    for kk in prange(K):
        loc = locs[numba.get_thread_id()]
        _wino_gather(M, kk, 0, nb * TT, loc)
        bk = b[kk]
        for i in range(nb):
            o = out[n0 + i, kk]
            for p in range(TP):
                for q in range(TQ):
                    if m == 4:
                        _wino_store_tile4(loc[i * TT + p * TQ + q], o, 4 * p, 4 * q, bk, k)
                        continue
                    y00, y01, y10, y11 = _wino_output_tile(loc[i * TT + p * TQ + q], R, k)
                    r, s = 2 * p, 2 * q
                    o[r, s] = y00 + bk
                    if s + 1 < Q:
                        o[r, s + 1] = y01 + bk
                    if r + 1 < P:
                        o[r + 1, s] = y10 + bk
                        if s + 1 < Q:
                            o[r + 1, s + 1] = y11 + bk


@njit(parallel=True, fastmath=False, cache=True)
def _wino_dout(dout, n0, Dy, TP, TQ, R, m, pads, locs, k):
    """Dy[xi, k, t] = (A dy A^T)[xi] for every m x m tile dy of dout (zero past P, Q)."""
    K = dout.shape[1]
    TT = TP * TQ
    nb = Dy.shape[2] // TT
    for kk in prange(K):
        y, loc = pads[numba.get_thread_id()], locs[numba.get_thread_id()]
        for i in range(nb):
            _wino_pad_plane(dout[n0 + i, kk], y, 0, 0)
            for p in range(TP):
                for q in range(TQ):
                    _wino_dout_tile(y, m * p, m * q, loc, i * TT + p * TQ + q, R, m, k)
        _wino_scatter(loc, nb * TT, Dy, kk, 0)


@njit(parallel=True, fastmath=False, cache=True)
def _wino_data(E, dx, n0, ph, pw, TP, TQ, R, m, pads, locs, k):
    """dx[n0 + i, c] = the sum over tiles of B E B^T, placed where the forward read the tile."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    TT = TP * TQ
    nb = E.shape[2] // TT
    for c in prange(C):
        d, loc = pads[numba.get_thread_id()], locs[numba.get_thread_id()]
        _wino_gather(E, c, 0, nb * TT, loc)
        for i in range(nb):
            for r in range(d.shape[0]):
                for s in range(d.shape[1]):
                    d[r, s] = 0
            for p in range(TP):
                for q in range(TQ):
                    _wino_data_tile(loc[i * TT + p * TQ + q], d, m * p, m * q, R, m, k)
            dst = dx[n0 + i, c]
            for r in range(H):
                for s in range(W):
                    dst[r, s] = d[r + ph, s + pw]


@njit(parallel=True, fastmath=False, cache=True)
def _wino_forward_gemms(U, V, M):
    for xi in prange(U.shape[0]):
        np.dot(U[xi], V[xi], M[xi])


@njit(parallel=True, fastmath=False, cache=True)
def _wino_data_gemms(UT, Dy, E):
    for xi in prange(UT.shape[0]):
        np.dot(UT[xi], Dy[xi], E[xi])


@njit(parallel=True, fastmath=False, cache=True)
def _wino_weight_gemms(Dy, V, dU, tmps, first):
    """dU[xi] = Dy[xi] @ V[xi]^T for the ``first`` chunk of images, else += (tmps: one (K, C)
    buffer per thread). (Writing the first chunk straight into dU skips zeroing it and a
    read-modify-write pass: 3 x 8 MB for VGG's 256 -> 512 channels.)"""
    K, C = dU.shape[1], dU.shape[2]
    for xi in prange(dU.shape[0]):
        if first:
            np.dot(Dy[xi], V[xi].T, dU[xi])
            continue
        tt = tmps[numba.get_thread_id()]
        np.dot(Dy[xi], V[xi].T, tt)
        u = dU[xi]
        for kk in range(K):
            for c in range(C):
                u[kk, c] += tt[kk, c]


def winograd_applies(g: ConvGeometry) -> bool:
    """Whether numba v4 runs Winograd on this geometry: a 3x3 or 5x5 filter, stride 1,
    dilation 1 (any padding), and at least _WINO_MIN_CHANNELS input and output channels.
    With few channels the GEMMs are small and the transforms dominate: 3 -> 64 channels on
    56x56 measured 3.5x slower than v3, 64 -> 128 on 28x28 even."""
    return (g.R == g.S and g.R in _WINO_SIZES and g.sh == g.sw == 1 and g.dh == g.dw == 1
            and min(g.C, g.K) >= _WINO_MIN_CHANNELS)


def pointwise_applies(g: ConvGeometry) -> bool:
    """Whether numba v4 runs a 1x1 convolution as a plain GEMM per image (1x1 filter, stride
    1, no padding: x[n] viewed as (C, H*W) is already the im2col matrix)."""
    return g.R == g.S == 1 and g.sh == g.sw == 1 and g.ph == g.pw == 0


class _WinoPlan(NamedTuple):
    TP: int      # tile rows (m output rows each)
    TQ: int      # tile columns
    nb: int      # images per chunk
    R: int       # filter size (3 or 5)
    XI: int      # transform-domain positions a*a; tiles are a x a, a = m + R - 1
    m: int       # output tile size: 2, or 4 for F(4x4, 3x3)


# numba v5 runs F(4x4, 3x3) where its GEMMs get at least this many tile columns (N * the 4x4
# tiles of one image) per channel (max(C, K)); below, F(2x2, 3x3)'s 2.5-4x more columns win:
# its weight transform moves 16/36 as many values and its GEMMs are less skinny. Forward,
# v5 / v4 time at 3x3 padding 1 (2 cores): 0.56-0.59 at 28-56 px (N*tiles / channels 1.5-12),
# 0.84-0.91 at 13-14 px N=16-32 (1.0-1.3), but 1.01-1.16 at 13-14 px N=8 (0.33-0.5) and 1.5-1.6
# at 7-14 px with 512 channels (0.06-0.12). (13 px also wastes 34% of the 4x4 tiles' outputs.)
_WINO4_MIN_TILES_PER_CHANNEL = 0.75


def _wino_tile(g: ConvGeometry, tile3: int) -> int:
    """The output tile size m: 4 (F(4x4, 3x3)) when ``tile3`` asks for it (v5) on a 3x3 layer
    with enough tiles per channel (see _WINO4_MIN_TILES_PER_CHANNEL), else 2."""
    if g.R != 3 or tile3 != 4:
        return 2
    tiles = g.N * -(-g.P // 4) * -(-g.Q // 4)
    return 4 if tiles >= _WINO4_MIN_TILES_PER_CHANNEL * max(g.C, g.K) else 2


def _wino_plan(g: ConvGeometry, dtype, chunk_bytes: int | None = None,
               tile3: int = 2) -> _WinoPlan:
    """Tiles and image chunks; ``tile3`` 4 lets 3x3 filters use F(4x4, 3x3) where
    :func:`_wino_tile` says it pays (numba v5), 2 keeps F(2x2, 3x3) (v4); 5x5 filters always
    use F(2x2, 5x5)."""
    m = _wino_tile(g, tile3)
    TP, TQ = -(-g.P // m), -(-g.Q // m)
    XI = (m + g.R - 1) ** 2
    per_image = XI * (g.C + g.K) * TP * TQ * np.dtype(dtype).itemsize
    budget = _WINO_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    most = max(1, min(g.N, budget // per_image))
    chunks = -(-g.N // most)
    return _WinoPlan(TP, TQ, -(-g.N // chunks), g.R, XI, m)   # chunks of (nearly) equal size


def _wino_constants(dtype):
    t = np.dtype(dtype).type
    return (t(0.5), t(2), t(4), t(5), t(8))


_WORKSPACE = threading.local()


def _workspace(name: str, shape, dtype):
    """An uninitialised ``shape`` array over a buffer kept between calls (per Python thread,
    name and dtype; grown when too small): fresh multi-MB buffers page-fault on their first
    touch, which measured 3-5 ms per call on AlexNet conv4. Per dtype Winograd holds about
    _WINO_CHUNK_BYTES (more when one image needs more) plus 2-3 x a*a*K*C of the largest
    layer, the direct path (v7) about the padded input and dout of the largest layer;
    :func:`free_conv2d_workspace` lets it go."""
    bufs = _WORKSPACE.__dict__.setdefault("bufs", {})
    key, n = (name, np.dtype(dtype)), int(np.prod(shape))
    buf = bufs.get(key)
    if buf is None or buf.size < n:
        buf = bufs[key] = np.empty(n, dtype)
    return buf[:n].reshape(shape)


def free_conv2d_workspace() -> None:
    """Drop the calling thread's numba conv2d scratch buffers (Winograd from v4, the direct
    path of v7); the next call allocates them again."""
    _WORKSPACE.__dict__.pop("bufs", None)


free_winograd_workspace = free_conv2d_workspace    # its name before v7


def _wino_chunks(plan: _WinoPlan, N: int, rows_a: int, rows_b: int, dtype):
    """Yield ``(n0, A, B)`` per chunk of images: A (a*a, rows_a, tiles) and B (a*a, rows_b,
    tiles), C-contiguous (the GEMMs need that) over the two workspace buffers."""
    per = plan.TP * plan.TQ
    for n0 in range(0, N, plan.nb):
        t = min(plan.nb, N - n0) * per
        yield (n0, _workspace("a", (plan.XI, rows_a, t), dtype),
               _workspace("b", (plan.XI, rows_b, t), dtype))


def _wino_scratch(plan: _WinoPlan, g: ConvGeometry, dtype):
    """Per numba thread: a zero-padded plane (m TP + R - 1, m TQ + R - 1) and a tile-major
    scratch (a chunk's tiles or the channels, a*a)."""
    T, m = _threads(), plan.m
    return (_workspace("pads", (T, m * plan.TP + g.R - 1, m * plan.TQ + g.R - 1), dtype),
            _workspace("locs", (T, max(plan.nb * plan.TP * plan.TQ, g.C, g.K), plan.XI),
                            dtype))


def _wino_weights_of(weight, g: ConvGeometry, plan: _WinoPlan, locs, k):
    U = _workspace("U", (plan.XI, g.K, g.C), weight.dtype)
    _wino_weights(weight, U, plan.m, locs, k)
    return U


# ---- 1x1: x[n] (C, H*W) is its own im2col matrix ----
@njit(parallel=True, fastmath=False, cache=True)
def _pointwise_forward(x3, wm, b, out3):
    for n in prange(x3.shape[0]):
        np.dot(wm, x3[n], out3[n])
        _add_bias(out3[n], b)


@njit(parallel=True, fastmath=False, cache=True)
def _pointwise_backward_data(dout3, wm, dx3):
    wmT = wm.T
    for n in prange(dout3.shape[0]):
        np.dot(wmT, dout3[n], dx3[n])


@njit(parallel=True, fastmath=False, cache=True)
def _pointwise_backward_weight(part, dout3, x3):
    """part[t] += this thread's images' dW (K, C); the caller sums over t."""
    T, K, C = part.shape
    tmps = np.empty((T, K, C), x3.dtype)
    for n in prange(x3.shape[0]):
        t = numba.get_thread_id()
        pt, tt = part[t], tmps[t]
        np.dot(dout3[n], x3[n].T, tt)
        for kk in range(K):
            for c in range(C):
                pt[kk, c] += tt[kk, c]


# ---- few output pixels: every image's im2col side by side, one BLAS-threaded GEMM ----
# With N*P*Q small (VGG's 7x7 layers at N=2..4) per-image or per-position GEMMs are too skinny
# (49 or 32 columns) and Winograd's three weight transforms (a*a*K*C values each, memory-bound)
# cost as much as its GEMMs: 256 -> 512 channels at 7x7, N=2, measured v4 Winograd 5.6 / 6.5 /
# 5.8 ms (fwd / data / weight) against 3.9 / 3.8 / 3.7 ms for one GEMM over all N*P*Q columns.
# The gathers stay serial: a numba parallel kernel next to BLAS-threaded GEMMs waits for a core.
_BATCHED_MAX_COLUMNS = 256


def batched_im2col_applies(g: ConvGeometry) -> bool:
    """Whether numba v4 gathers every image's im2col matrix into one (C*R*S, N*P*Q) matrix
    for one BLAS-threaded GEMM per pass: 2 <= N and N*P*Q <= _BATCHED_MAX_COLUMNS (1x1
    stride-1 layers excepted: :func:`pointwise_applies`)."""
    return g.N >= 2 and g.N * g.P * g.Q <= _BATCHED_MAX_COLUMNS and not pointwise_applies(g)


@njit(cache=True, fastmath=False)
def _im2col_batch(x, col3, R, S, P, Q, sh, sw, ph, pw, dh, dw):
    """col3[:, n, :] = image n's im2col matrix (C*R*S, P*Q)."""
    for n in range(x.shape[0]):
        _im2col_image(x[n], col3[:, n, :], R, S, P, Q, sh, sw, ph, pw, dh, dw)


@njit(cache=True, fastmath=False)
def _col2im_batch(dcol3, dx, R, S, P, Q, sh, sw, ph, pw, dh, dw):
    for n in range(dx.shape[0]):
        _col2im_image(dcol3[:, n, :], dx[n], R, S, P, Q, sh, sw, ph, pw, dh, dw)


# numba v6's batched path: gathers, scatters and GEMMs on numba's threads (see
# _batched_forward), one (image, channel) plane per work item
@njit(parallel=True, cache=True, fastmath=False)
def _im2col_batch_parallel(x, col3, R, S, P, Q, sh, sw, ph, pw, dh, dw):
    N, C = x.shape[0], x.shape[1]
    for item in prange(N * C):
        n = item // C
        c = item - n * C
        _im2col_channels(x[n], col3[:, n, :], c, c + 1, R, S, P, Q, sh, sw, ph, pw, dh, dw)


@njit(parallel=True, cache=True, fastmath=False)
def _col2im_batch_parallel(dcol3, dx, R, S, P, Q, sh, sw, ph, pw, dh, dw):
    N, C = dx.shape[0], dx.shape[1]
    for item in prange(N * C):
        n = item // C
        c = item - n * C
        _col2im_channels(dcol3[:, n, :], dx[n], c, c + 1, R, S, P, Q, sh, sw, ph, pw, dh, dw)


@njit(parallel=True, cache=True, fastmath=False)
def _batched_output(y3, b, out3):
    """out3[n, k] = y3[k, n] + b[k]: the (K, N, P*Q) GEMM result in NCHW order, plus bias."""
    K, N, PQ = y3.shape
    for k in prange(K):
        bk = b[k]
        for n in range(N):
            src, dst = y3[k, n], out3[n, k]
            for i in range(PQ):
                dst[i] = src[i] + bk


@njit(parallel=True, cache=True, fastmath=False)
def _batched_dout_parallel(dout3, d3):
    """d3[k, n] = dout3[n, k]: dout (N, K, P*Q) as the (K, N*P*Q) GEMM operand."""
    N, K, PQ = dout3.shape
    for k in prange(K):
        for n in range(N):
            src, dst = dout3[n, k], d3[k, n]
            for i in range(PQ):
                dst[i] = src[i]


def _batched_col(x, g: ConvGeometry, pool=False):
    col = np.empty((g.C * g.R * g.S, g.N, g.P * g.Q), x.dtype)
    (_im2col_batch_parallel if pool else _im2col_batch)(x, col, *_gemm_geometry(g))
    return col.reshape(col.shape[0], -1)


def _batched_dout(dout, g: ConvGeometry, pool=False):
    """dout (N, K, P, Q) as (K, N*P*Q)."""
    if pool:
        d3 = np.empty((g.K, g.N, g.P * g.Q), dout.dtype)
        _batched_dout_parallel(dout.reshape(g.N, g.K, -1), d3)
        return d3.reshape(g.K, -1)
    return np.ascontiguousarray(dout.reshape(g.N, g.K, -1).transpose(1, 0, 2)).reshape(g.K, -1)


# numba v4 / v5 run the batched path's GEMMs as one BLAS-threaded call each and its gathers in
# the calling thread; numba v6 runs all of it on numba's threads, the GEMMs split by rows into
# one single-threaded BLAS call per thread (kernels/_pool_blas.py). OpenBLAS's own threads ran
# the forward's 512 x 2304 x 196 GEMM (VGG 7x7 256->512 at N=4) at 96-176 GFLOP/s depending
# on what ran before it (PyTorch's or numba's OpenMP threads, spinning after their last
# region, hold the cores), and the serial gather took 0.95 ms of a 4 ms forward.
def _batched_forward(x, weight, b, g: ConvGeometry, pool=False):
    w2 = weight.reshape(g.K, -1)
    if not pool:
        y = w2 @ _batched_col(x, g)                                    # (K, N*P*Q)
        y += b[:, None]
        return np.ascontiguousarray(y.reshape(g.K, g.N, -1).transpose(1, 0, 2)).reshape(
            g.N, g.K, g.P, g.Q)
    y = pool_matmul(np.ascontiguousarray(w2), _batched_col(x, g, pool=True))
    out = np.empty((g.N, g.K, g.P, g.Q), x.dtype)
    _batched_output(y.reshape(g.K, g.N, -1), b, out.reshape(g.N, g.K, -1))
    return out


def _batched_backward_data(dout, weight, g: ConvGeometry, pool=False):
    w2 = weight.reshape(g.K, -1)
    if pool:
        dcol = pool_matmul_tn(np.ascontiguousarray(w2), _batched_dout(dout, g, pool=True))
    else:
        dcol = w2.T @ _batched_dout(dout, g)                           # (C*R*S, N*P*Q)
    dx = np.empty((g.N, g.C, g.H, g.W), weight.dtype)
    (_col2im_batch_parallel if pool else _col2im_batch)(
        dcol.reshape(dcol.shape[0], g.N, -1), dx, *_gemm_geometry(g))
    return dx


def _batched_weight_grad(dw_acc, dout, x, g: ConvGeometry, pool=False):
    dw2 = dw_acc.reshape(g.K, -1)
    if pool:    # dW (K, C*R*S) += dout (K, N*P*Q) @ col^T, accumulated by BLAS (beta = 1)
        pool_matmul_nt_accumulate(dw2, _batched_dout(dout, g, pool=True),
                                  _batched_col(x, g, pool=True))
    else:
        dw2 += _batched_dout(dout, g) @ _batched_col(x, g).T


# ---- few input channels, stride 1: a direct convolution on the flattened padded input ----
# With C*R*S small (a network's first layer: 3 -> 64 channels at 56x56 has C*R*S = 27) im2col's
# GEMMs are skinny (K=27 deep) and its gather writes 9x the input: numba v6 ran VGG's 3 -> 64
# 3x3 layer at N=2 at 44 GFLOP/s forward and 35 backward-weight, PyTorch (oneDNN) at 95-107.
# Pad each image plane into a row of width Wp = W + 2 pw and flatten it: output position
# f = p*Wp + q reads input f + r*dh*Wp + s*dw for tap (r, s), so for a fixed tap, 48
# consecutive outputs (junk at q >= Q included, dropped on the way out) read 48 consecutive
# inputs. The forward is then the packed micro-kernel with its B rows gathered at per-tap
# offsets (no im2col matrix): out (K, F) = W (K, C*R*S) @ X~ (C*R*S, F), 4 output channels x
# 48 positions per tile. The weight gradient dW (K, C*R*S) = dout (K, F) @ X~^T reduces over
# the F positions, which run along the vector lanes (``dot_tile``: 4 channels x 4 taps per
# tile) of dout stored in the same flat layout (zeros at the junk positions). Both stream the
# input from L1/L2, so they reach the micro-kernel's speed on layers im2col serves worst.
# float32 only (the micro-kernels are); backward-data keeps v6's path (already 2x PyTorch).
_DIRECT_MAX_TAPS = 288            # C*R*S: up to 32 channels of 3x3 (32 -> 32 at 56x56: v6's
                                  # Winograd 1.07 ms forward, direct 0.71, PyTorch 0.71)
_DIRECT_BLOCK_TILES = 4           # forward: tiles of NR positions per output block
_DIRECT_WGRAD_BLOCKS = 4          # weight gradient: output blocks per work item (along F)
_DIRECT_WGRAD_KTILES = 8          # weight gradient: DOT_MI-channel tiles per work item


def direct_applies(g: ConvGeometry, dtype) -> bool:
    """Whether numba v7 runs the direct convolution (forward and weight gradient): float32,
    stride 1 (any padding and dilation), C*R*S <= _DIRECT_MAX_TAPS, not 1x1 unpadded
    (:func:`pointwise_applies`: x is already its own im2col matrix there)."""
    return (np.dtype(dtype) == np.float32 and g.sh == g.sw == 1
            and g.C * g.R * g.S <= _DIRECT_MAX_TAPS and not pointwise_applies(g))


class _DirectPlan(NamedTuple):
    Wp: int          # padded row width: flat output position f = p*Wp + q
    F: int           # flat positions per image, P*Wp rounded up to whole output blocks
    cs: int          # floats per padded input plane (room for the last block's reads)
    block: int       # forward output block: _DIRECT_BLOCK_TILES * NR positions
    taps: np.ndarray  # int64, offset of tap (c, r, s) from output position 0 (C*R*S of them,
                      # then 0s up to whole DOT_NJ groups for the weight gradient); read-only


@functools.lru_cache(maxsize=64)
def _direct_plan(g: ConvGeometry) -> _DirectPlan:
    Wp = g.W + 2 * g.pw
    block = _DIRECT_BLOCK_TILES * _NR
    F = -(-g.P * Wp // block) * block
    cs = -(-((g.R - 1) * g.dh * Wp + (g.S - 1) * g.dw + F) // _VW) * _VW
    CRS = g.C * g.R * g.S
    taps = np.zeros(-(-CRS // DOT_NJ) * DOT_NJ, np.int64)
    c, r, s = np.meshgrid(np.arange(g.C), np.arange(g.R), np.arange(g.S), indexing="ij")
    taps[:CRS] = (c * cs + r * (g.dh * Wp) + s * g.dw).ravel()
    taps.flags.writeable = False
    return _DirectPlan(Wp, F, cs, block, taps)


@njit(parallel=True, cache=True)
def _direct_pad(x, xp, ph, pw, Wp, cs):
    """xp[(n*C + c)*cs + (ph + i)*Wp + pw + j] = x[n, c, i, j], zeros around."""
    N, C, H, W = x.shape
    for item in prange(N * C):
        n = item // C
        plane = xp[item * cs: (item + 1) * cs]    # views: indices from 0 vectorise (an
        for i in range(cs):                       # offset index keeps its negative-index
            plane[i] = 0.0                        # check and runs scalar, 5x slower)
        for i in range(H):
            row = plane[(ph + i) * Wp + pw: (ph + i) * Wp + pw + W]
            src = x[n, item - n * C, i]
            for j in range(W):
                row[j] = src[j]


@njit(parallel=True, cache=True)
def _direct_pack_weights(w2, wpk):
    """wpk[(kp*CRS + i)*MR + r] = w2[kp*MR + r, i]: MR-channel A panels (zeros past K)."""
    K, CRS = w2.shape
    for kp in prange((K + _MR - 1) // _MR):
        for i in range(CRS):
            for r in range(_MR):
                k = kp * _MR + r
                wpk[(kp * CRS + i) * _MR + r] = w2[k, i] if k < K else 0.0


@njit(parallel=True, cache=True)
def _direct_forward_tiles(xp, wpk, taps, CRS, b, out, ybuf, cs, Wp, F, block):
    """One work item per (image, MR-channel panel): every output block's tiles into thread
    t's ``ybuf[t]`` (MR * block), then the valid positions (q < Q) plus bias into out.
    (numba.get_num_threads() inside would keep this function out of numba's cache.)"""
    N, K, P, Q = out.shape
    C = xp.shape[0] // (N * cs)
    KP = (K + _MR - 1) // _MR
    flat = out.reshape(N * K * P * Q)
    for item in prange(N * KP):
        n = item // KP
        kp = item - n * KP
        y = ybuf[numba.get_thread_id()]
        for f0 in range(0, F, block):
            for t in range(0, block, _NR):
                mk_tile_gather(wpk, kp * CRS * _MR, xp, n * C * cs + f0 + t, taps, y, t,
                               block, CRS)
            pa, pb = f0 // Wp, min(P, (f0 + block - 1) // Wp + 1)
            for r in range(min(_MR, K - kp * _MR)):
                k = kp * _MR + r
                bk = b[k]
                for p in range(pa, pb):
                    qa, qb = max(0, f0 - p * Wp), min(Q, f0 + block - p * Wp)
                    dst = flat[((n * K + k) * P + p) * Q + qa: ((n * K + k) * P + p) * Q + qb]
                    src = y[r * block - f0 + p * Wp + qa: r * block - f0 + p * Wp + qb]
                    for j in range(qb - qa):
                        dst[j] = src[j] + bk


@njit(parallel=True, cache=True)
def _direct_flat_dout(dout, dflat, Kp, Wp, F):
    """dflat[(n*Kp + k)*F + p*Wp + q] = dout[n, k, p, q]; zeros at q >= Q, past P*Wp and for
    the channels K..Kp-1 (padding to whole DOT_MI tiles)."""
    N, K, P, Q = dout.shape
    for item in prange(N * Kp):
        n = item // Kp
        k = item - n * Kp
        d = dflat[item * F: (item + 1) * F]
        rest = 0
        if k < K:
            for p in range(P):
                src, dst = dout[n, k, p], d[p * Wp: (p + 1) * Wp]
                for q in range(Q):
                    dst[q] = src[q]
                for q in range(Q, Wp):
                    dst[q] = 0.0
            rest = P * Wp
        tail = d[rest:]
        for i in range(tail.shape[0]):
            tail[i] = 0.0


@njit(parallel=True, cache=True)
def _direct_weight_tiles(xp, dflat, taps, acc, Kp, cs, F, chunk, ktiles):
    """acc[t, (k*CRSp + i)*VW + l] += lane l of thread t's dot products of dout row k with
    the input shifted by tap i; work items of (image, ``chunk`` positions, ``ktiles``
    DOT_MI-channel tiles). ``taps`` is padded to whole DOT_NJ groups (its extra offsets read
    valid memory; their sums are never used)."""
    N = dflat.shape[0] // (Kp * F)
    C = xp.shape[0] // (N * cs)
    CRSp = taps.shape[0]
    KT = Kp // DOT_MI
    nch, nkg = (F + chunk - 1) // chunk, (KT + ktiles - 1) // ktiles
    for item in prange(N * nch * nkg):
        n = item // (nch * nkg)
        rem = item - n * nch * nkg
        ci = rem // nkg
        f0 = ci * chunk
        m = min(chunk, F - f0)
        a = acc[numba.get_thread_id()]
        for kt in range((rem - ci * nkg) * ktiles, min(KT, (rem - ci * nkg + 1) * ktiles)):
            for jt in range(0, CRSp, DOT_NJ):
                dot_tile(dflat, (n * Kp + kt * DOT_MI) * F + f0, F, xp, n * C * cs + f0,
                         taps, jt, a, (kt * DOT_MI * CRSp + jt) * _VW, CRSp * _VW, m)


@njit(parallel=True, cache=True, fastmath=_SUM_FASTMATH)
def _direct_weight_reduce(dw_acc, acc):
    """dw_acc[k, c, r, s] += the sum over threads and lanes of acc's (k, c*R*S + r*S + s)."""
    K = dw_acc.shape[0]
    CRS = dw_acc.shape[1] * dw_acc.shape[2] * dw_acc.shape[3]
    dw2 = dw_acc.reshape(K, CRS)
    T = acc.shape[0]
    CRSp = acc.shape[1] // (_VW * ((K + DOT_MI - 1) // DOT_MI * DOT_MI))
    for k in prange(K):
        for i in range(CRS):
            o = (k * CRSp + i) * _VW
            s = np.float32(0.0)
            for t in range(T):
                lanes = acc[t, o: o + _VW]
                for j in range(_VW):
                    s += lanes[j]
            dw2[k, i] += s


def _direct_input(x, g: ConvGeometry, plan: _DirectPlan):
    xp = _workspace("direct_x", (g.N * g.C * plan.cs,), np.float32)
    _direct_pad(x, xp, g.ph, g.pw, plan.Wp, plan.cs)
    return xp


def _direct_forward(x, weight, b, g: ConvGeometry):
    plan = _direct_plan(g)
    CRS = g.C * g.R * g.S
    wpk = _workspace("direct_w", (-(-g.K // _MR) * CRS * _MR,), np.float32)
    _direct_pack_weights(weight.reshape(g.K, CRS), wpk)
    out = np.empty((g.N, g.K, g.P, g.Q), np.float32)
    ybuf = _workspace("direct_y", (_threads(), _MR * plan.block), np.float32)
    _direct_forward_tiles(_direct_input(x, g, plan), wpk, plan.taps, CRS, b, out, ybuf,
                          plan.cs, plan.Wp, plan.F, plan.block)
    return out


def _direct_weight_grad(dw_acc, dout, x, g: ConvGeometry):
    plan = _direct_plan(g)
    Kp = -(-g.K // DOT_MI) * DOT_MI
    dflat = _workspace("direct_dout", (g.N * Kp * plan.F,), np.float32)
    _direct_flat_dout(dout, dflat, Kp, plan.Wp, plan.F)
    acc = _workspace("direct_acc", (_threads(), Kp * plan.taps.size * _VW), np.float32)
    acc[...] = 0.0
    _direct_weight_tiles(_direct_input(x, g, plan), dflat, plan.taps, acc, Kp, plan.cs,
                         plan.F, _DIRECT_WGRAD_BLOCKS * plan.block, _DIRECT_WGRAD_KTILES)
    _direct_weight_reduce(dw_acc, acc)


# ---- few output pixels (v8): the micro-kernel on an implicit im2col matrix ----
# VGG's 7x7 layers (N*P*Q <= 256) are where im2col + OpenBLAS trails oneDNN most: v7 ran
# 256 -> 512 channels at N=4 at 124-133 GFLOP/s per pass, PyTorch at 205-225. Here each pass is
# the packed micro-kernel with its A operand GATHERED (``mk_tile_gather_a``: A's (k, r) value
# at ``rows[r] + taps[k]``, so im2col is never stored or dout never transposed) and its B
# operand in column panels; a tile is MR rows x GATHER_NR columns, so no output position is
# computed and dropped (unlike v7's direct path, whose rows of 7 + 2 padded columns would
# waste 3x):
#   forward   out (pixels x K)      = X~ (pixels x CRS) @ W^T (CRS x K)   W^T: transposing pack
#   bwd-data  dcol^T (pixels x CRS) = dout^T (pixels x K) @ W (K x CRS)   then col2im
#   bwd-wt    dW (K x CRS)         += dout (K x pixels) @ col^T (pixels x CRS), col^T gathered
# (the backward passes through kernels/_tile_gemm.py's driver, the forward its own: bias and
# the NCHW scatter in the epilogue).
# Tiles are MR x GATHER_NR (4 x 64 with AVX-512: see kernels/_packed_gemm.py). Kernel alone
# (2-core AVX-512 EPYC): the forward at 228 GFLOP/s for that layer at N=4 (4 x 48: 198).
def gathered_gemm_applies(g: ConvGeometry, dtype) -> bool:
    """Whether numba v8 runs the few-output-pixel path through the gathered micro-kernel:
    float32, N*P*Q <= _BATCHED_MAX_COLUMNS (any N, stride, padding, dilation), not a 1x1
    unpadded convolution (:func:`pointwise_applies`)."""
    return (np.dtype(dtype) == np.float32 and g.N * g.P * g.Q <= _BATCHED_MAX_COLUMNS
            and not pointwise_applies(g))


class _GatherPlan(NamedTuple):
    Wp: int             # padded input row width
    plane: int          # floats per padded input plane, (H + 2 ph) * Wp
    taps: np.ndarray    # (C*R*S rounded up to MR,) int64: tap (c, r, s) from a window's origin
    pix: np.ndarray     # (N*P*Q rounded up to MR,) int64: window origin of output pixel m
    outs: np.ndarray    # (N*P*Q rounded up to MR,) int64: n*K*P*Q + p*Q + q of pixel m
    ktaps: np.ndarray   # (K rounded up to MR,) int64: k*P*Q, channel k's offset in dout
                        # from outs[m]


def _padded_table(values, multiple: int) -> np.ndarray:
    """int64 ``values`` then 0s (a valid offset) up to a multiple of ``multiple``; read-only."""
    values = np.asarray(values, np.int64).ravel()
    t = np.zeros(-(-values.size // multiple) * multiple, np.int64)
    t[:values.size] = values
    t.flags.writeable = False
    return t


@functools.lru_cache(maxsize=64)
def _gather_plan(g: ConvGeometry) -> _GatherPlan:
    Wp = g.W + 2 * g.pw
    plane = (g.H + 2 * g.ph) * Wp
    c, r, s = np.meshgrid(np.arange(g.C), np.arange(g.R), np.arange(g.S), indexing="ij")
    n, p, q = np.meshgrid(np.arange(g.N), np.arange(g.P), np.arange(g.Q), indexing="ij")
    PQ = g.P * g.Q
    return _GatherPlan(Wp, plane, _padded_table(c * plane + r * (g.dh * Wp) + s * g.dw, _MR),
                       _padded_table(n * (g.C * plane) + p * (g.sh * Wp) + q * g.sw, _MR),
                       _padded_table(n * (g.K * PQ) + p * g.Q + q, _MR),
                       _padded_table(np.arange(g.K) * PQ, _MR))


@njit(parallel=True, cache=True)
def _gathered_forward_tiles(xp, pix, taps, CRS, wt, ldb, pstride, b, out, outs, M, PQ, cbuf,
                            groups):
    """out[outs[m] + k*PQ] = b[k] + sum_i xp[pix[m] + taps[i]] * wt[kp*pstride + i*ldb + j]
    (k = kp*NR + j) for the M output pixels m; work items of (NR-channel panel, a range of
    MR-pixel tiles)."""
    K = b.shape[0]
    NT = (M + _MR - 1) // _MR
    per = (NT + groups - 1) // groups
    for item in prange(((K + _GNR - 1) // _GNR) * groups):
        kp = item // groups
        t0 = (item - kp * groups) * per
        c = cbuf[numba.get_thread_id()]
        k0, kn = kp * _GNR, min(_GNR, K - kp * _GNR)
        for t in range(t0, min(NT, t0 + per)):
            mk_tile_gather_a(xp, pix, t * _MR, taps, wt, kp * pstride, ldb, c, 0, _GNR, CRS)
            for r in range(min(_MR, M - t * _MR)):
                dst = out[outs[t * _MR + r] + k0 * PQ:]
                src = c[r * _GNR: r * _GNR + kn]
                bk = b[k0: k0 + kn]
                for j in range(kn):
                    dst[j * PQ] = src[j] + bk[j]


@njit(parallel=True, cache=True)
def _gathered_col_rows(xp, pix, taps, M, CRS, colT, ldc):
    """colT[m*ldc + i] = xp[pix[m] + taps[i]]: output pixel m's im2col row (0 past CRS)."""
    for m in prange(M):
        row, base = colT[m * ldc: (m + 1) * ldc], pix[m]
        for i in range(CRS):
            row[i] = xp[base + taps[i]]
        for i in range(CRS, ldc):
            row[i] = 0.0


def _gathered_input(x, g: ConvGeometry, plan: _GatherPlan):
    xp = _workspace("gather_x", (g.N * g.C * plan.plane,), np.float32)
    _direct_pad(x, xp, g.ph, g.pw, plan.Wp, plan.plane)
    return xp


def _cbuf():
    return _workspace("gather_c", (_threads(), _MR * _GNR), np.float32)


def _gathered_forward(x, weight, b, g: ConvGeometry):
    plan = _gather_plan(g)
    CRS = g.C * g.R * g.S
    # W^T in NR-channel panels, each (CRS, NR) contiguous: a tile streams its B rows in order
    # (W^T row-major, rows 2 KB apart, ran the VGG 7x7 forward's tiles 5-10% slower)
    wt = pack_row_panels(weight.reshape(g.K, CRS), g.K, 1, _workspace(
        "gather_w", (-(-g.K // _GNR) * CRS * _GNR,), np.float32), _GNR)
    out = np.empty((g.N, g.K, g.P, g.Q), np.float32)
    _gathered_forward_tiles(_gathered_input(x, g, plan), plan.pix, plan.taps, CRS, wt, _GNR,
                            CRS * _GNR, b, out.reshape(-1), plan.outs, g.N * g.P * g.Q,
                            g.P * g.Q, _cbuf(),
                            tile_groups(-(-g.K // _GNR), plan.pix.size // _MR, _threads()))
    return out


def _gathered_backward_data(dout, weight, g: ConvGeometry):
    plan = _gather_plan(g)
    CRS, M = g.C * g.R * g.S, g.N * g.P * g.Q
    CRSp = -(-CRS // _GNR) * _GNR
    if CRS == CRSp:     # W read in place, row-major: its panels end on its rows' ends
        wp, ldb, pstride = weight.reshape(-1), CRS, _GNR
    else:               # the last panel would read past W's end: column panels
        wp, ldb, pstride = pack_col_panels(weight.reshape(g.K, CRS), _workspace(
            "gather_w", (g.K * CRSp,), np.float32), _GNR), _GNR, g.K * _GNR
    Mp = plan.outs.size
    dcolT = _workspace("gather_dcolT", (Mp * CRSp,), np.float32)
    # dcol^T (pixels, CRS) = dout^T (pixels, K) @ W: dout read in place (pixel m's channel k
    # at outs[m] + ktaps[k])
    tile_gemm(dout.reshape(-1), plan.outs, plan.ktaps[:g.K], wp, ldb, pstride, M, CRS,
              dcolT, CRSp, False, _cbuf(), tile_groups(CRSp // _GNR, Mp // _MR, _threads()))
    dcol = _workspace("gather_dcol", (CRS, g.N, g.P * g.Q), np.float32)
    transpose_into(dcolT, 0, CRSp, M, CRS, dcol.reshape(-1), 0, M)
    dx = np.empty((g.N, g.C, g.H, g.W), np.float32)
    _col2im_batch_parallel(dcol, dx, *_gemm_geometry(g))
    return dx


def _gathered_weight_grad(dw_acc, dout, x, g: ConvGeometry):
    plan = _gather_plan(g)
    CRS, M = g.C * g.R * g.S, g.N * g.P * g.Q
    ldb = -(-CRS // _GNR) * _GNR
    colT = _workspace("gather_colT", (M * ldb,), np.float32)
    _gathered_col_rows(_gathered_input(x, g, plan), plan.pix, plan.taps, M, CRS, colT, ldb)
    # dW (K, CRS) += dout (K, pixels) @ col^T: dout read in place (channel k's pixel m at
    # ktaps[k] + outs[m]), col^T's rows (one per pixel) as B
    tile_gemm(dout.reshape(-1), plan.ktaps, plan.outs[:M], colT, ldb, _GNR, g.K, CRS,
              dw_acc.reshape(-1), CRS, True, _cbuf(),
              tile_groups(ldb // _GNR, -(-g.K // _MR), _threads()))


# ---- numba v9: Winograd with channels along the vector lanes (kernels/_wino_lanes.py) ----
# The same Winograd algorithms and transform formulas as v5-v8 (the same bits per transformed
# value), with the transforms as hand-written vector code over VW channels at a time: the
# input goes once into a zero-padded NHWC buffer, the GEMM operands are (a*a, tiles,
# channels), the output comes back through an NHWC buffer. Backward-data is the forward
# correlation of dout (padded by R-1-pad) with the filters rotated by 180 degrees, C and K
# swapped (no B E B^T scatter-add of overlapping tiles).
_LANE_IN = {(2, 3): 0, (4, 3): 1, (2, 5): 1}      # _wino_lanes.tiles_in kinds: B^T d B
_LANE_DOUT = {(2, 3): 2, (4, 3): 3, (2, 5): 4}    # ... A dy A^T
_LANE_OUT = {(2, 3): 0, (4, 3): 1, (2, 5): 2}     # tiles_out / weights_t kinds


def lane_winograd_applies(g: ConvGeometry, dtype) -> bool:
    """Whether numba v9 runs Winograd in channel lanes: where :func:`winograd_applies`, float32,
    C and K multiples of the vector width, and padding at most R - 1 (backward-data pads dout
    by R - 1 - padding)."""
    return (winograd_applies(g) and np.dtype(dtype) == np.float32
            and g.C % _wl.VW == 0 and g.K % _wl.VW == 0
            and 0 <= g.ph <= g.R - 1 and 0 <= g.pw <= g.R - 1)


# numba v9 runs F(4x4, 3x3) where a pass has at least this many 4x4 tiles (N * its tiles per
# image; v5-v8's rule also weighed the channels). With the GEMMs in the micro-kernel, what
# F(4x4, 3x3) costs over F(2x2, 3x3) is its 2.25x larger U (transformed, then streamed once per
# block of tiles): it pays from about 64 tiles on. fwd+bwd, 2-core AVX-512 EPYC, interleaved,
# F(2x2) -> F(4x4) ms: 14 px 128->256 N=2 (32 tiles) 3.15 -> 3.75, N=4 (64) 5.48 -> 5.64,
# N=8 10.4 -> 9.4; 13 px 256->384 N=4 (64) 18.1 -> 16.5, AlexNet conv3-5 N=8 (128) 5-7% less;
# 7 px 256->512 N=8 (32) 14.9 -> 15.3, 512->512 N=32 (128) 86.9 -> 64.2.
_LANE_WINO4_MIN_TILES = 64


def _lane_tile(g: ConvGeometry, P: int, Q: int) -> int:
    """m for a correlation with P x Q outputs: 4 (F(4x4, 3x3)) for 3x3 filters with at least
    _LANE_WINO4_MIN_TILES 4x4 tiles, else 2."""
    if g.R != 3:
        return 2
    return 4 if g.N * -(-P // 4) * -(-Q // 4) >= _LANE_WINO4_MIN_TILES else 2


def _lane_images(N, per_image):
    most = max(1, min(N, _WINO_CHUNK_BYTES // per_image))
    return -(-N // -(-N // most))        # chunks of (nearly) equal size


def _lane_weights(weight, m, flip, nr=0):
    """U^T (a*a, C, K): G w[k, c] G^T (``flip``: of w[k, c] rotated by 180 degrees); per
    position row-major, or in ``nr``-column panels (the fused forward's B)."""
    K, C, R = weight.shape[0], weight.shape[1], weight.shape[2]
    a = m + R - 1
    UT = _workspace("U", (a * a, C, K), np.float32)
    _wl.weights_t(weight, _workspace("lane_wt", (C * R * R * K,), np.float32),
                  UT.reshape(-1), a, flip, _LANE_OUT[(m, R)], nr if nr else K)
    return UT


def _lane_transformed(src, n0, nb, TP, TQ, m, R, pad_h, pad_w, name, kind):
    """(a*a, nb*TP*TQ, C): the transform ``kind`` of every tile of images n0.. of src (N, C, ...)
    padded by (pad_h, pad_w); input tiles (kind B^T d B) are a x a, dout tiles m x m."""
    C = src.shape[1]
    a = m + R - 1
    rows = a if kind in (0, 1) else m
    Ws = TQ * m + rows - m
    V = _workspace(name, (a * a, nb * TP * TQ, C), np.float32)
    _wl.tiles_in(src, n0, nb, pad_h, pad_w, V.reshape(-1), TP, TQ, m, a, kind,
                 _workspace("lane_stage", (_threads(), rows * Ws * C), np.float32))
    return V


def _lane_correlate(src, UT, transposed, b, out, pad_h, pad_w, m, R):
    """out (N, Co, P, Q) = the correlation of src (N, Ci, ...) padded by (pad_h, pad_w) with the
    filters whose transforms are UT (a*a, Ci, Co) (``transposed``: (a*a, Co, Ci)), + b."""
    N, Ci = src.shape[0], src.shape[1]
    Co, P, Q = out.shape[1], out.shape[2], out.shape[3]
    a, TP, TQ = m + R - 1, -(-P // m), -(-Q // m)
    nr = _lane_panels(Co, transposed)                  # 0: BLAS
    nb = _lane_images(N, a * a * (Ci + (0 if nr else Co)) * TP * TQ * 4)
    for n0 in range(0, N, nb):
        k = min(nb, N - n0)
        V = _lane_transformed(src, n0, k, TP, TQ, m, R, pad_h, pad_w, "a", _LANE_IN[(m, R)])
        o = _workspace("lane_out", (k * TP * m * TQ * m * Co,), np.float32)
        if nr:
            rows, taps = _lane_fused_tables(a * a, k * TP * TQ, Ci)
            groups = max(1, min(_wl.FUSED_GROUPS, _LANE_MBUF_BYTES // (a * a * _MR * nr * 4)))
            _wl.fused_out(V.reshape(-1), rows, taps, UT.reshape(-1), b, o, k, Ci, Co, TP, TQ,
                          m, a, _LANE_OUT[(m, R)], _workspace(
                              "lane_mbuf", (_threads(), a * a * groups * _MR * nr), np.float32),
                          groups, nr)
        else:
            M = _workspace("b", (a * a, k * TP * TQ, Co), np.float32)
            with _SingleThreadedBLAS():
                (_wl.gemms_nt if transposed else _wl.gemms_nn)(V, UT, M)
            _wl.tiles_out(M.reshape(-1), b, k, Co, o, TP, TQ, m, a, _LANE_OUT[(m, R)])
        _wl.nhwc_to_nchw(o, TP * m, TQ * m, out, n0, k)


_LANE_FUSED = True
# fused_out's per-thread products: up to FUSED_GROUPS tile groups, fewer for a*a = 36 (160, 320
# and 640 KB measured alike within this machine's noise)
_LANE_MBUF_BYTES = 320 << 10


@functools.lru_cache(maxsize=16)
def _lane_fused_tables(XI: int, T: int, Ci: int):
    """:func:`_wino_lanes.fused_out`'s offset tables: rows[xi*Tp + t] = (xi*T + t)*Ci for t
    up to whole MR-tile groups (past T: the last tile again), taps = 0 .. Ci-1."""
    Tp = -(-T // _MR) * _MR
    t = np.minimum(np.arange(Tp), T - 1)
    rows = ((np.arange(XI)[:, None] * T + t[None, :]) * Ci).astype(np.int64).ravel()
    taps = np.arange(Ci, dtype=np.int64)
    rows.flags.writeable = taps.flags.writeable = False
    return rows, taps


def _lane_panels(channels: int, transposed: bool = False) -> int:
    """The micro-kernel's panel width for GEMMs with ``channels`` output columns, 0 where
    they run through BLAS (``transposed``: a U^T BLAS reads transposed, or no width of
    :data:`_wino_lanes.PANELS` divides ``channels``)."""
    return 0 if transposed or not _LANE_FUSED else _wl.panel_width(channels)


def _lane_forward(x, weight, b, g: ConvGeometry):
    m = _lane_tile(g, g.P, g.Q)
    out = np.empty((g.N, g.K, g.P, g.Q), np.float32)
    _lane_correlate(x, _lane_weights(weight, m, 0, _lane_panels(g.K)), False, b, out,
                    g.ph, g.pw, m, g.R)
    return out


def _lane_backward_data(dout, weight, g: ConvGeometry):
    m = _lane_tile(g, g.H, g.W)
    dx = np.empty((g.N, g.C, g.H, g.W), np.float32)
    # U (a*a, C, K) of the rotated filters; the GEMMs need U^T: BLAS reads U transposed, the
    # fused kernel a copy transposed into its B panels
    U = _lane_weights(weight, m, 1)
    nr = _lane_panels(g.C)
    transposed = not nr
    if nr:
        UT = _workspace("lane_UT", (U.size,), np.float32)
        _wl.transpose_positions(U, UT, nr)
        U = UT.reshape(U.shape[0], g.K, g.C)
    _lane_correlate(dout, U, transposed, np.zeros(g.C, np.float32), dx,
                    g.R - 1 - g.ph, g.R - 1 - g.pw, m, g.R)
    return dx


def _lane_weight_grad(dw_acc, dout, x, g: ConvGeometry):
    m = _lane_tile(g, g.P, g.Q)
    a, TP, TQ = m + g.R - 1, -(-g.P // m), -(-g.Q // m)
    nb = _lane_images(g.N, a * a * (g.C + g.K) * TP * TQ * 4)
    dU = _workspace("dU", (a * a, g.K, g.C), np.float32)
    tmps = (_workspace("tmps", (_threads(), g.K, g.C), np.float32) if nb < g.N
            else np.empty((1, 1, 1), np.float32))          # one chunk: no accumulation
    for n0 in range(0, g.N, nb):
        k = min(nb, g.N - n0)
        V = _lane_transformed(x, n0, k, TP, TQ, m, g.R, g.ph, g.pw, "a", _LANE_IN[(m, g.R)])
        D = _lane_transformed(dout, n0, k, TP, TQ, m, g.R, 0, 0, "b", _LANE_DOUT[(m, g.R)])
        nr = _lane_panels(g.C)
        if nr:
            _wl.weight_gemms(D, V, dU, g.K, g.C, k * TP * TQ, n0 == 0,
                             tile_groups(a * a * g.C // nr, g.K // _MR, _threads()), nr)
            continue
        with _SingleThreadedBLAS():
            _wl.gemms_tn_acc(D, V, dU, tmps, n0 == 0)
    k = _wino_constants(np.float32)
    if a == 6:
        Cp = -(-g.C // _WL) * _WL
        _wino_weight_grad6(dw_acc, dU, g.R, _workspace("wgrad_rows", (_threads(), 36 * Cp),
                                                        np.float32),
                           _workspace("wgrad_lanes", (_threads(), g.R * g.R * _WL), np.float64),
                           k)
    else:
        _wl.weight_grad23(dU, dw_acc, _workspace("lane_wgrad", (_threads(), _wl.WGRAD23_STAGE),
                                                  np.float32))


def _shaped_forward(x, weight, bias, stride, padding, dilation, tile3, pool=False,
                    direct=False, gathered=False, lanes=False):
    """The direct convolution where ``direct`` (v7) and :func:`direct_applies`, the gathered
    micro-kernel where ``gathered`` (v8) and :func:`gathered_gemm_applies`, one GEMM over all
    images where :func:`batched_im2col_applies`, Winograd where :func:`winograd_applies`, a
    GEMM per image where :func:`pointwise_applies`, else v3."""
    x, weight, bias, _, g = check_conv2d(x, weight, bias, stride, padding, dilation)
    b = _bias_or_zeros(bias, g.K, x.dtype)
    if direct and direct_applies(g, x.dtype):
        return _direct_forward(x, weight, b, g)
    if gathered and gathered_gemm_applies(g, x.dtype):
        return _gathered_forward(x, weight, b, g)
    if batched_im2col_applies(g):
        return _batched_forward(x, weight, b, g, pool)
    if pointwise_applies(g) and g.N > 1:
        out = np.empty((g.N, g.K, g.P * g.Q), x.dtype)
        with _SingleThreadedBLAS():
            _pointwise_forward(x.reshape(g.N, g.C, -1), weight.reshape(g.K, g.C), b, out)
        return out.reshape(g.N, g.K, g.P, g.Q)
    if lanes and lane_winograd_applies(g, x.dtype):
        return _lane_forward(x, weight, b, g)
    if not winograd_applies(g):
        return conv2d_forward_numba_v3(x, weight, bias, stride, padding, dilation)
    plan, k = _wino_plan(g, x.dtype, tile3=tile3), _wino_constants(x.dtype)
    pads, locs = _wino_scratch(plan, g, x.dtype)
    U = _wino_weights_of(weight, g, plan, locs, k)
    out = np.empty((g.N, g.K, g.P, g.Q), x.dtype)
    for n0, V, M in _wino_chunks(plan, g.N, g.C, g.K, x.dtype):
        _wino_inputs(x, n0, V, g.ph, g.pw, plan.TP, plan.TQ, g.R, plan.m, pads, locs, k)
        with _SingleThreadedBLAS():
            _wino_forward_gemms(U, V, M)
        _wino_outputs(M, b, out, n0, plan.TP, plan.TQ, g.R, plan.m, locs, k)
    return out


def _shaped_backward_data(dout, weight, x_shape, stride, padding, dilation, tile3,
                          pool=False, direct=False, gathered=False, lanes=False):
    """The gathered micro-kernel where ``gathered`` (v8) and :func:`gathered_gemm_applies`,
    one GEMM over all images where :func:`batched_im2col_applies`, Winograd where
    :func:`winograd_applies`, a GEMM per image where :func:`pointwise_applies`, else v3
    (``direct``: no backward-data path of its own)."""
    _, weight, _, dout, g = check_conv2d(None, weight, None, stride, padding, dilation,
                                         dout=dout, x_shape=x_shape)
    if gathered and gathered_gemm_applies(g, weight.dtype):
        return _gathered_backward_data(dout, weight, g)
    if batched_im2col_applies(g):
        return _batched_backward_data(dout, weight, g, pool)
    if pointwise_applies(g) and g.N > 1:
        dx = np.empty((g.N, g.C, g.H * g.W), weight.dtype)
        with _SingleThreadedBLAS():
            _pointwise_backward_data(dout.reshape(g.N, g.K, -1), weight.reshape(g.K, g.C), dx)
        return dx.reshape(g.N, g.C, g.H, g.W)
    if lanes and lane_winograd_applies(g, weight.dtype):
        return _lane_backward_data(dout, weight, g)
    if not winograd_applies(g):
        return conv2d_backward_data_numba_v3(dout, weight, x_shape, stride, padding, dilation)
    plan, k = _wino_plan(g, weight.dtype, tile3=tile3), _wino_constants(weight.dtype)
    pads, locs = _wino_scratch(plan, g, weight.dtype)
    UT = _workspace("U", (plan.XI, g.C, g.K), weight.dtype)
    _wino_weights_transposed(weight, UT, plan.m, locs, k)
    dx = np.empty((g.N, g.C, g.H, g.W), weight.dtype)
    for n0, Dy, E in _wino_chunks(plan, g.N, g.K, g.C, weight.dtype):
        _wino_dout(dout, n0, Dy, plan.TP, plan.TQ, g.R, plan.m, pads, locs, k)
        with _SingleThreadedBLAS():
            _wino_data_gemms(UT, Dy, E)
        _wino_data(E, dx, n0, g.ph, g.pw, plan.TP, plan.TQ, g.R, plan.m, pads, locs, k)
    return dx


def _shaped_backward_weight(dweight, dbias, dout, x, stride, padding, dilation, tile3,
                            pool=False, direct=False, gathered=False, lanes=False):
    """The direct convolution's weight gradient where ``direct`` (v7) and
    :func:`direct_applies`, the gathered micro-kernel where ``gathered`` (v8) and
    :func:`gathered_gemm_applies`, one GEMM over all images where
    :func:`batched_im2col_applies`, Winograd where :func:`winograd_applies`, a GEMM per image
    where :func:`pointwise_applies`, else v3; accumulates."""
    x, _, _, dout, g = check_conv2d(x, None, None, stride, padding, dilation,
                                    dout=dout, dweight=dweight, dbias=dbias)
    if direct and direct_applies(g, x.dtype):
        _accumulate(dweight, _direct_weight_grad, dout, x, g)
    elif gathered and gathered_gemm_applies(g, x.dtype):
        _accumulate(dweight, _gathered_weight_grad, dout, x, g)
    elif batched_im2col_applies(g):
        _accumulate(dweight, _batched_weight_grad, dout, x, g, pool)
    elif pointwise_applies(g) and g.N > 1:
        part = np.zeros((_threads(), g.K, g.C), x.dtype)
        with _SingleThreadedBLAS():
            _pointwise_backward_weight(part, dout.reshape(g.N, g.K, -1), x.reshape(g.N, g.C, -1))
        dweight += part.sum(axis=0).reshape(dweight.shape)
    elif lanes and lane_winograd_applies(g, x.dtype):
        _accumulate(dweight, _lane_weight_grad, dout, x, g)
    elif not winograd_applies(g):
        return conv2d_backward_weight_numba_v3(dweight, dbias, dout, x, stride, padding, dilation)
    else:
        plan, k = _wino_plan(g, x.dtype, tile3=tile3), _wino_constants(x.dtype)
        pads, locs = _wino_scratch(plan, g, x.dtype)
        dU = _workspace("U", (plan.XI, g.K, g.C), x.dtype)
        tmps = (_workspace("tmps", (_threads(), g.K, g.C), x.dtype) if plan.nb < g.N
                else np.empty((1, 1, 1), x.dtype))          # one chunk: no accumulation
        for n0, V, Dy in _wino_chunks(plan, g.N, g.C, g.K, x.dtype):
            _wino_inputs(x, n0, V, g.ph, g.pw, plan.TP, plan.TQ, g.R, plan.m, pads, locs, k)
            _wino_dout(dout, n0, Dy, plan.TP, plan.TQ, g.R, plan.m, pads, locs, k)
            with _SingleThreadedBLAS():
                _wino_weight_gemms(Dy, V, dU, tmps, n0 == 0)
        if plan.XI == 36:
            Cp = -(-g.C // _WL) * _WL
            _accumulate(dweight, _wino_weight_grad6, dU, g.R,
                        _workspace("wgrad_rows", (_threads(), 36 * Cp), x.dtype),
                        _workspace("wgrad_lanes", (_threads(), g.R * g.R * _WL), np.float64), k)
        else:
            _accumulate(dweight, _wino_weight_grad, dU, plan.m, locs, k)
    if dbias is not None:
        serial = (batched_im2col_applies(g) and not pool   # after BLAS-threaded GEMMs
                  and not (gathered and gathered_gemm_applies(g, x.dtype)))
        _accumulate(dbias, _backward_bias_serial if serial else _backward_bias, dout)


def _shaped_versions(version: int, tile3: int, pool: bool = False, direct: bool = False,
                     gathered: bool = False, lanes: bool = False):
    """numba ``version``'s three conv2d kernels: the shape-specialized paths above with output
    tile ``tile3`` for 3x3 Winograd (v4: 2, F(2x2, 3x3); v5 and later: 4, F(4x4, 3x3) where it
    pays); ``pool`` runs the batched path on numba's threads (v6 and later); ``direct`` the
    direct convolution on few-channel stride-1 layers (v7 and later); ``gathered`` the
    few-output-pixel layers through the gathered micro-kernel (v8)."""
    paths = (tile3, pool, direct, gathered, lanes)

    def forward(x, weight, bias, stride=1, padding=0, dilation=1):
        return _shaped_forward(x, weight, bias, stride, padding, dilation, *paths)

    def backward_data(dout, weight, x_shape, stride=1, padding=0, dilation=1):
        return _shaped_backward_data(dout, weight, x_shape, stride, padding, dilation, *paths)

    def backward_weight(dweight, dbias, dout, x, stride=1, padding=0, dilation=1):
        return _shaped_backward_weight(dweight, dbias, dout, x, stride, padding, dilation,
                                       *paths)

    fns = (forward, backward_data, backward_weight)
    for fn, shaped in zip(fns, (_shaped_forward, _shaped_backward_data, _shaped_backward_weight)):
        fn.__name__ = fn.__qualname__ = f"conv2d_{fn.__name__}_numba_v{version}"
        fn.__doc__ = f"numba v{version}: {shaped.__doc__}"
    return fns


conv2d_forward_numba_v4, conv2d_backward_data_numba_v4, conv2d_backward_weight_numba_v4 = (
    _shaped_versions(4, tile3=2))
conv2d_forward_numba_v5, conv2d_backward_data_numba_v5, conv2d_backward_weight_numba_v5 = (
    _shaped_versions(5, tile3=4))
conv2d_forward_numba_v6, conv2d_backward_data_numba_v6, conv2d_backward_weight_numba_v6 = (
    _shaped_versions(6, tile3=4, pool=True))
conv2d_forward_numba_v7, conv2d_backward_data_numba_v7, conv2d_backward_weight_numba_v7 = (
    _shaped_versions(7, tile3=4, pool=True, direct=True))
conv2d_forward_numba_v8, conv2d_backward_data_numba_v8, conv2d_backward_weight_numba_v8 = (
    _shaped_versions(8, tile3=4, pool=True, direct=True, gathered=True))
conv2d_forward_numba_v9, conv2d_backward_data_numba_v9, conv2d_backward_weight_numba_v9 = (
    _shaped_versions(9, tile3=4, pool=True, direct=True, gathered=True, lanes=True))


# ----------------------------------------------------------------------------
# CUDA launchers (kernels/cuda/conv2d.cu): registered on "cuda" (CuPy arrays) and "cuda-emu"
# (NumPy arrays, CPU emulator). Same validation as the CPU versions (check_conv2d with the
# backend's array module); outputs allocated in the backend's memory.
#   v1 direct: one thread per output (fwd) / input (bwd-data) element, grid-stride loops;
#              bwd-weight one block per (k,c,r,s) with a shared-memory reduction over N*P*Q.
#   v2 tiled:  implicit GEMM, 64x64 output tile, 16-deep steps in shared memory, 4x4 per
#              thread; bwd-data per stride phase (valid taps only); bwd-weight split over
#              N*P*Q into a workspace summed in a fixed order (deterministic).
#   v3 gemm:   forward only (backward = v2's kernels): register-blocked implicit GEMM with
#              double-buffered 8-deep stages, tile config by _cu_forward_gemm_plan.
#   v4:        v3's forward; dx and dW on the same GEMM structure (conv2d_bwd_gemm; plans
#              _cu4_data_plan / _cu4_weight_plan), v1's direct dx for C <= 4.
#   v5:        Winograd F(2x2, 3x3) for 3x3 stride-1 layers of enough channels (_cu5_applies),
#              else v4.
# dbias (every version): one block per k, shared-memory reduction.
# ----------------------------------------------------------------------------
_CU_FILE = "conv2d.cu"
_CU_KERNELS = ("conv2d_fwd_direct", "conv2d_bwd_data_direct", "conv2d_bwd_weight_direct",
               "conv2d_bwd_bias", "conv2d_fwd_tiled", "conv2d_bwd_data_tiled",
               "conv2d_bwd_weight_tiled", "conv2d_add_splits", "conv2d_add_splits_cols", "conv2d_wino_input", "conv2d_wino_weight",
               "conv2d_wino_output", "conv2d_wino_dout", "conv2d_wino_weight_grad")
# v3 forward tile configurations (BM, BN, TM, TN) of conv2d_fwd_gemm: see _cu_forward_gemm_plan
_CU3_LARGE = (128, 128, 8, 8)
_CU3_MEDIUM = (64, 64, 4, 4)
_CU3_SMALL_K = (32, 128, 4, 4)
_CU3_CONFIGS = (_CU3_LARGE, _CU3_MEDIUM, _CU3_SMALL_K)
_CU3_THREADS = 256            # CONV3_THREADS
_CU3_SMS = 132                # SMs of an H100 / H200 SXM: fewer 128x128 tiles -> 64x64 tiles
_CU3_INDEX_MAX = 2**31 - 1 - 1024   # v3 indexes with int: see _cu3_fits_int


_CU4_DATA, _CU4_WEIGHT = 0, 1  # CONV4_DATA, CONV4_WEIGHT: the two modes of conv2d_bwd_gemm
_CU4_DIRECT_MAX_C = 4         # bwd-data v4: C <= this runs v1's direct kernel (a GEMM with <= 4
                              # rows would leave 7/8 of a 32-row tile idle)
_CU4_ADD_COLS_MAX = 2**14     # workspace sums of fewer outputs than this: 8 split rows per block
_CU4_SPLIT_BLOCKS = 4 * _CU3_SMS   # bwd-weight v4: split-K until about this many blocks run...
_CU4_LARGE_SPLIT_FACTOR = 4   # ... times this for 128x128 tiles (H100: VGG dW 6-18% faster
                              # than at 1x, except 64->128 at 112 px N=8, 9% slower) ...
_CU4_SPLIT_MIN_STAGES = 16    # ... keeping at least this many 8-deep stages per split
_CU4_WORKSPACE_MAX = 2**28    # ... and the split workspace under this many bytes


def _cu3_name(t: str, cfg) -> str:
    return f"conv2d_fwd_gemm<{t}, {', '.join(map(str, cfg))}>"


def _cu4_name(t: str, cfg, mode: int) -> str:
    return f"conv2d_bwd_gemm<{t}, {', '.join(map(str, cfg))}, {mode}>"


_CU_TEMPLATES = (tuple(f"{k}<{t}>" for k in _CU_KERNELS for t in ("float", "double"))
                 + tuple(_cu3_name(t, c) for t in ("float", "double") for c in _CU3_CONFIGS)
                 + tuple(_cu4_name(t, c, m) for t in ("float", "double") for c in _CU3_CONFIGS
                         for m in (_CU4_DATA, _CU4_WEIGHT)))
_CU_MAX_BLOCKS = 65535        # grid-stride loops cover the rest
_CU_TILE = 64                 # CONV_BM == CONV_BN in conv2d.cu
_CU_STEP = 16                 # CONV_BK
_CU_TILE_THREADS = 256        # CONV_THREADS
_CU_SPLIT_BLOCKS = 256        # bwd-weight v2: split N*P*Q until about this many blocks run ...
_CU_SPLIT_MIN_STEPS = 8       # ... keeping at least this many 16-deep steps per split
_CU_SPLIT_MAX = 32
_I32_MAX = 2**31 - 1


def _cu_kernel(backend, name, dtype):
    """``name<T>`` (T from dtype), or ``name`` itself when it is a full template name."""
    mod = load_module(_CU_FILE, backend, name_expressions=_CU_TEMPLATES)
    return mod.get_function(name if "<" in name else f"{name}<{ctype(dtype)}>")


def _cu_dims(g: ConvGeometry):
    """``(C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw)`` as int32 kernel arguments (every
    per-tensor size must fit an int; element offsets in the kernels are 64-bit)."""
    dims = (g.C, g.H, g.W, g.K, g.R, g.S, g.P, g.Q) + _hyper(g)
    big = max(max(dims), g.C * g.R * g.S, g.K * g.R * g.S)
    if big > _I32_MAX:
        raise ValueError(f"conv2d (cuda): a dimension or C*R*S / K*R*S is {big} > 2^31-1; "
                         "the CUDA kernels index filters and planes with int")
    return tuple(np.int32(d) for d in dims)


def _cu_tiles(n: int) -> int:
    return max(1, -(-int(n) // _CU_TILE))


def _cu_check_grid(name, value, limit=65535):
    if value > limit:
        raise ValueError(f"conv2d (cuda): {name} needs {value} blocks > {limit} (grid limit)")


def _pow2_threads(n: int, lo: int = 32, hi: int = 256) -> int:
    """Threads for a block reduction over ``n`` items: a power of two in [lo, hi]."""
    t = lo
    while t < hi and t < n:
        t *= 2
    return t


def _cu_accumulate(xp, acc, run):
    """``run(target)`` adds into ``target``: ``acc`` itself if C-contiguous, else a zero
    temporary added to ``acc`` afterwards (caller-owned views keep working)."""
    if acc.flags.c_contiguous:
        run(acc)
    else:
        tmp = xp.zeros(acc.shape, acc.dtype)
        run(tmp)
        acc += tmp


def _cu_bias_args(bias, weight):
    """(pointer, has_bias): a missing bias passes the weight as a never-read pointer."""
    return (weight, np.int32(0)) if bias is None else (bias, np.int32(1))


def _cu_dbias(backend, dbias, dout, g: ConvGeometry):
    xp = device_xp(backend)
    PQ = g.P * g.Q
    threads = _pow2_threads(g.N * PQ)
    fn = _cu_kernel(backend, "conv2d_bwd_bias", dout.dtype)
    _cu_accumulate(xp, dbias, lambda t: fn((g.K,), (threads,), (t, dout, np.int32(g.N),
                                                                 np.int32(g.K), np.int64(PQ))))


# ---- v1 direct ----
def _cu_forward_direct(backend, out, x, weight, bias, g):
    total = out.size
    b, has_b = _cu_bias_args(bias, weight)
    fn = _cu_kernel(backend, "conv2d_fwd_direct", x.dtype)
    grid = min(blocks_for(total, CUDA_THREADS), _CU_MAX_BLOCKS)
    fn((grid,), (CUDA_THREADS,), (out, x, weight, b, has_b, np.int64(total)) + _cu_dims(g))


def _cu_backward_data_direct(backend, dx, dout, weight, g):
    total = dx.size
    fn = _cu_kernel(backend, "conv2d_bwd_data_direct", dout.dtype)
    grid = min(blocks_for(total, CUDA_THREADS), _CU_MAX_BLOCKS)
    fn((grid,), (CUDA_THREADS,), (dx, dout, weight, np.int64(total)) + _cu_dims(g))


def _cu_backward_weight_direct(backend, dw_acc, dout, x, g):
    blocks = g.K * g.C * g.R * g.S
    _cu_check_grid("bwd-weight v1 (K*C*R*S)", blocks, _I32_MAX)
    threads = _pow2_threads(g.N * g.P * g.Q)
    fn = _cu_kernel(backend, "conv2d_bwd_weight_direct", x.dtype)
    fn((blocks,), (threads,), (dw_acc, dout, x, np.int32(g.N)) + _cu_dims(g))


# ---- v2 tiled implicit GEMM ----
def _cu_forward_tiled(backend, out, x, weight, bias, g):
    gy = _cu_tiles(g.K)
    _cu_check_grid("forward v2 (K / 64)", gy)
    b, has_b = _cu_bias_args(bias, weight)
    fn = _cu_kernel(backend, "conv2d_fwd_tiled", x.dtype)
    fn((_cu_tiles(g.N * g.P * g.Q), gy), (_CU_TILE_THREADS,),
       (out, x, weight, b, has_b, np.int32(g.N)) + _cu_dims(g))


def _cu_backward_data_tiled(backend, dx, dout, weight, g):
    phases = g.sh * g.sw
    cols = g.N * (-(-g.H // g.sh)) * (-(-g.W // g.sw))      # the largest phase's columns
    gy = _cu_tiles(g.C)
    _cu_check_grid("bwd-data v2 (C / 64)", gy)
    _cu_check_grid("bwd-data v2 (stride phases sh*sw)", phases)
    fn = _cu_kernel(backend, "conv2d_bwd_data_tiled", dout.dtype)
    fn((_cu_tiles(cols), gy, phases), (_CU_TILE_THREADS,),
       (dx, dout, weight, np.int32(g.N)) + _cu_dims(g))


def _cu_weight_splits(g: ConvGeometry) -> tuple[int, int]:
    """(splits, chunk) for bwd-weight v2: enough blocks to fill a GPU, each split at least
    _CU_SPLIT_MIN_STEPS reduction steps; chunk is a multiple of the 16-deep step."""
    tiles = _cu_tiles(g.K) * _cu_tiles(g.C * g.R * g.S)
    npq = g.N * g.P * g.Q
    steps = -(-npq // _CU_STEP)
    splits = max(1, min(_CU_SPLIT_MAX, _CU_SPLIT_BLOCKS // tiles, steps // _CU_SPLIT_MIN_STEPS))
    chunk = -(-steps // splits) * _CU_STEP
    return -(-npq // chunk), chunk


def _cu_backward_weight_tiled(backend, dw_acc, dout, x, g):
    xp = device_xp(backend)
    gy = _cu_tiles(g.K)
    _cu_check_grid("bwd-weight v2 (K / 64)", gy)
    splits, chunk = _cu_weight_splits(g)
    grid = (_cu_tiles(g.C * g.R * g.S), gy, splits)
    fn = _cu_kernel(backend, "conv2d_bwd_weight_tiled", x.dtype)
    tail = (np.int32(g.N),) + _cu_dims(g)
    if splits == 1:
        fn(grid, (_CU_TILE_THREADS,), (dw_acc, dout, x, np.int32(1), np.int64(chunk)) + tail)
        return
    total = dw_acc.size
    part = xp.empty((splits, total), x.dtype)
    fn(grid, (_CU_TILE_THREADS,), (part, dout, x, np.int32(0), np.int64(chunk)) + tail)
    add = _cu_kernel(backend, "conv2d_add_splits", x.dtype)
    add((min(blocks_for(total, CUDA_THREADS), _CU_MAX_BLOCKS),), (CUDA_THREADS,),
        (dw_acc, part, np.int32(splits), np.int64(total)))


# ---- v3 forward: register-blocked implicit GEMM ----
def _cu_address(a) -> int:
    """Device (CuPy) or host (NumPy) address of an array's first element."""
    return a.data.ptr if hasattr(a.data, "ptr") else a.ctypes.data


class _Cu3Plan(NamedTuple):
    """How v3 runs a forward: tile config (BM, BN, TM, TN), the 1x1 vector-load path, 4-vector
    stores of the output, grid (x, y)."""
    config: tuple
    vec: bool
    out_vec: bool
    grid: tuple


def _cu_forward_gemm_plan(g: ConvGeometry, x=None, out=None) -> _Cu3Plan:
    """Tile rule of v3 forward (GEMM rows K, columns N*P*Q):

    * K <= 32: 32x128 tiles (4x4 per thread): a 64- or 128-row tile would be mostly padding;
    * K <= 64, or fewer 128x128 tiles than SMs (_CU3_SMS = 132, H100/H200): 64x64 tiles (4x4)
      -- enough blocks to fill the GPU;
    * otherwise 128x128 tiles (8x8 per thread).

    The 1x1 vector path (``vec``) needs R = S = 1, stride 1, no padding, P*Q % 4 == 0 and x
    16-byte aligned; ``out_vec`` needs P*Q % 4 == 0 and out 16-byte aligned (``x``/``out`` None:
    assumed aligned)."""
    npq = g.N * g.P * g.Q
    tiles_large = -(-g.K // 128) * -(-npq // 128)
    if g.K <= 32:
        cfg = _CU3_SMALL_K
    elif g.K <= 64 or tiles_large < _CU3_SMS:
        cfg = _CU3_MEDIUM
    else:
        cfg = _CU3_LARGE
    pq4 = (g.P * g.Q) % 4 == 0
    vec = (pq4 and g.R == 1 and g.S == 1 and g.sh == 1 and g.sw == 1 and g.ph == 0
           and g.pw == 0 and (x is None or _cu_address(x) % 16 == 0))
    out_vec = pq4 and (out is None or _cu_address(out) % 16 == 0)
    return _Cu3Plan(cfg, vec, out_vec, (-(-npq // cfg[1]), -(-g.K // cfg[0])))


def _cu3_fits_int(g: ConvGeometry, x, weight, out) -> bool:
    """Whether every offset v3 forms fits an int: those into weight and out stay below their
    sizes (+ a tile); an input column's base n*C*H*W + h0*W + w0, with h0 in [-ph, H+ph) and
    w0 in [-pw, W+pw), and a row's c*H*W + r*dh*W + s*dw stay below x.size + 2*((ph+1)*W + pw)."""
    big = max(x.size + 2 * ((g.ph + 1) * g.W + g.pw), weight.size, out.size)
    return big <= _CU3_INDEX_MAX


def _cu_forward_gemm(backend, out, x, weight, bias, g):
    if not _cu3_fits_int(g, x, weight, out):
        return _cu_forward_tiled(backend, out, x, weight, bias, g)   # 64-bit offsets
    plan = _cu_forward_gemm_plan(g, x, out)
    _cu_check_grid(f"forward v3 (K / {plan.config[0]})", plan.grid[1])
    b, has_b = _cu_bias_args(bias, weight)
    fn = _cu_kernel(backend, _cu3_name(ctype(x.dtype), plan.config), x.dtype)
    fn(plan.grid, (_CU3_THREADS,), (out, x, weight, b, has_b, np.int32(plan.vec),
                                    np.int32(plan.out_vec), np.int32(g.N)) + _cu_dims(g))


# ---- v4 backward: v3's register-blocked implicit GEMM for dx and dW ----
class _Cu4Plan(NamedTuple):
    """How v4 runs one backward pass: tile config (BM, BN, TM, TN), 4-vector output stores,
    grid (x, y, z), and for bwd-weight the split-K chunk (reduction rows per split)."""
    config: tuple
    out_vec: bool
    grid: tuple
    chunk: int = 0


def _cu4_data_config(rows: int, cols: int) -> tuple:
    """bwd-data v4's tile config: 32x128 for C <= 32 rows, else 128x128 -- even for C = 64 and
    fewer tiles than SMs (H100, 2026-11-27: 128x128 beat 64x64 on every DeepBench dx,
    VGG 28 px 256->512 N=8 0.82 vs 1.18 ms, ResNet 1x1 C=64 0.12 vs 0.16 ms)."""
    return _CU3_SMALL_K if rows <= 32 else _CU3_LARGE


def _cu4_data_plan(g: ConvGeometry, dx=None) -> _Cu4Plan:
    """bwd-data v4: GEMM rows C, columns N*H*W split into the sh*sw stride phases (blockIdx.z);
    4-vector stores need stride 1, H*W % 4 == 0 and dx 16-byte aligned (``dx`` None: assumed)."""
    phases = g.sh * g.sw
    cols = g.N * (-(-g.H // g.sh)) * (-(-g.W // g.sw))      # the largest phase's columns
    cfg = _cu4_data_config(g.C, cols * phases)
    out_vec = (phases == 1 and (g.H * g.W) % 4 == 0
               and (dx is None or _cu_address(dx) % 16 == 0))
    return _Cu4Plan(cfg, out_vec, (-(-cols // cfg[1]), -(-g.C // cfg[0]), phases))


def _cu4_weight_config(rows: int, cols: int) -> tuple:
    """bwd-weight v4's tile config: 32x128 for K <= 32 rows, 64x64 for K <= 64 or C*R*S <= 64
    columns, else 128x128 (split-K, not smaller tiles, fills the GPU)."""
    if rows <= 32:
        return _CU3_SMALL_K
    return _CU3_MEDIUM if rows <= 64 or cols <= 64 else _CU3_LARGE


def _cu4_weight_plan(g: ConvGeometry, itemsize: int = 4, dw=None) -> _Cu4Plan:
    """bwd-weight v4: GEMM rows K, columns C*R*S, the N*P*Q reduction split into chunks (a
    multiple of the 8-deep stage) until about _CU4_SPLIT_BLOCKS blocks run (times
    _CU4_LARGE_SPLIT_FACTOR on 128x128 tiles: more, shorter splits balance better), each split at
    least _CU4_SPLIT_MIN_STAGES stages, the workspace under _CU4_WORKSPACE_MAX bytes and its
    offsets under _CU3_INDEX_MAX. 4-vector stores need C*R*S % 4 == 0 and dW aligned."""
    crs, npq = g.C * g.R * g.S, g.N * g.P * g.Q
    cfg = _cu4_weight_config(g.K, crs)
    tiles = -(-g.K // cfg[0]) * -(-crs // cfg[1])
    stages = -(-npq // 8)
    size = g.K * crs
    blocks = _CU4_SPLIT_BLOCKS * (_CU4_LARGE_SPLIT_FACTOR if cfg == _CU3_LARGE else 1)
    splits = max(1, min(-(-blocks // tiles), stages // _CU4_SPLIT_MIN_STAGES,
                        _CU4_WORKSPACE_MAX // (size * itemsize), _CU3_INDEX_MAX // size))
    chunk = -(-stages // splits) * 8
    splits = -(-npq // chunk)
    out_vec = crs % 4 == 0 and (dw is None or _cu_address(dw) % 16 == 0)
    return _Cu4Plan(cfg, out_vec, (-(-crs // cfg[1]), -(-g.K // cfg[0]), splits), chunk)


def _cu4_fits_int(g: ConvGeometry, *sizes) -> bool:
    """Whether v4's int offsets stay in range: every tensor it touches under _CU3_INDEX_MAX,
    with room for an input row's padded offsets (as _cu3_fits_int)."""
    pad = 2 * ((g.ph + 1) * g.W + g.pw)
    return max(sizes) + pad <= _CU3_INDEX_MAX


def _cu_backward_data_gemm(backend, dx, dout, weight, g):
    if g.C <= _CU4_DIRECT_MAX_C:
        return _cu_backward_data_direct(backend, dx, dout, weight, g)
    if not _cu4_fits_int(g, dx.size, dout.size, weight.size):
        return _cu_backward_data_tiled(backend, dx, dout, weight, g)   # 64-bit offsets
    plan = _cu4_data_plan(g, dx)
    _cu_check_grid(f"bwd-data v4 (C / {plan.config[0]})", plan.grid[1])
    _cu_check_grid("bwd-data v4 (stride phases sh*sw)", plan.grid[2])
    fn = _cu_kernel(backend, _cu4_name(ctype(dout.dtype), plan.config, _CU4_DATA), dout.dtype)
    fn(plan.grid, (_CU3_THREADS,), (dx, dout, weight, np.int32(0), np.int32(0),
                                    np.int32(plan.out_vec), np.int32(g.N)) + _cu_dims(g))


def _cu_backward_weight_gemm(backend, dw_acc, dout, x, g):
    xp = device_xp(backend)
    plan = _cu4_weight_plan(g, x.dtype.itemsize, dw_acc)
    splits = plan.grid[2]
    if not _cu4_fits_int(g, x.size, dout.size, splits * dw_acc.size):
        return _cu_backward_weight_tiled(backend, dw_acc, dout, x, g)   # 64-bit offsets
    _cu_check_grid(f"bwd-weight v4 (K / {plan.config[0]})", plan.grid[1])
    _cu_check_grid("bwd-weight v4 (splits)", splits)
    fn = _cu_kernel(backend, _cu4_name(ctype(x.dtype), plan.config, _CU4_WEIGHT), x.dtype)
    tail = (np.int32(plan.chunk), np.int32(plan.out_vec), np.int32(g.N)) + _cu_dims(g)
    if splits == 1:
        fn(plan.grid, (_CU3_THREADS,), (dw_acc, dout, x, np.int32(1)) + tail)
        return
    total = dw_acc.size
    part = xp.empty((splits, total), x.dtype)
    fn(plan.grid, (_CU3_THREADS,), (part, dout, x, np.int32(0)) + tail)
    _cu4_add_splits(backend, dw_acc, part)


def _cu4_add_splits(backend, dst, part):
    """dst += part.sum(0) in a fixed order. Fewer than _CU4_ADD_COLS_MAX outputs: 32 outputs x
    8 split rows per block (H200, 519 splits x 3200: 15 vs 20 us); else v2's one thread per
    output (30 x 1179648: 48 vs 84 us)."""
    splits, total = part.shape
    if total >= _CU4_ADD_COLS_MAX:
        add = _cu_kernel(backend, "conv2d_add_splits", part.dtype)
        add((min(blocks_for(total, CUDA_THREADS), _CU_MAX_BLOCKS),), (CUDA_THREADS,),
            (dst, part, np.int32(splits), np.int64(total)))
        return
    add = _cu_kernel(backend, "conv2d_add_splits_cols", part.dtype)
    add((-(-total // 32),), (32, 8), (dst, part, np.int32(splits), np.int64(total)))


# ---- v5: Winograd F(2x2, 3x3) for 3x3 stride-1 undilated layers, else v4 ----
_CU5_WORKSPACE = 2**29        # bytes of transformed tiles per chunk of images (V and M / DY)


_CU5_MIN_CHANNELS = 32        # forward / dx: Winograd where C and K are both at least this
_CU5_MIN_CHANNELS_DW = 128    # dW: ... at least this


def _cu5_applies(g: ConvGeometry, min_channels: int | None = None) -> bool:
    """Winograd F(2x2, 3x3) runs 3x3 filters with stride 1 and dilation 1 (any padding) where C
    and K are both >= ``min_channels``: narrower GEMMs between the transforms lose to v4's
    kernels (H200, 2026-11-27: VGG 224 px 3->64 forward 0.36-0.39x cuDNN against v4's
    0.95-0.98x; dW 64->128 at 112 px 0.24-0.25x against 0.46-0.47x, while 128->256 and
    256->512 gain 0.34 -> 0.40 and 0.23-0.28 -> 0.48-0.50)."""
    least = _CU5_MIN_CHANNELS if min_channels is None else min_channels
    return (g.R == 3 and g.S == 3 and g.sh == 1 and g.sw == 1 and g.dh == 1 and g.dw == 1
            and min(g.C, g.K) >= least)


def _cu5_launch(backend, name, dtype, total, args):
    fn = _cu_kernel(backend, name, dtype)
    fn((min(blocks_for(total, CUDA_THREADS), _CU_MAX_BLOCKS),), (CUDA_THREADS,), args)


def _cu5_images_per_chunk(N, tiles_per_image, rows, itemsize):
    """Images per chunk: 16 transformed values per tile and row of the two tile tensors
    (``rows`` = their rows together) within _CU5_WORKSPACE bytes (at least one image)."""
    per_image = 16 * tiles_per_image * rows * itemsize
    return max(1, min(N, _CU5_WORKSPACE // max(1, per_image)))


def _cu5_input(backend, src, Cin, H, W, TH, TW, pad_h, pad_w):
    """V (16, Cin, T): B^T d B of every 4x4 patch of ``src`` (n, Cin, H, W), T = n*TH*TW."""
    xp = device_xp(backend)
    n = src.shape[0]
    V = xp.empty((16, Cin, n * TH * TW), src.dtype)
    _cu5_launch(backend, "conv2d_wino_input", src.dtype, V[0].size,
                (V, src) + tuple(np.int32(v) for v in (n, Cin, H, W, TH, TW, pad_h, pad_w)))
    return V


def _cu5_weights(backend, weight, flip):
    """U (16, K, C) = G g G^T of every filter, or (16, C, K) of the flipped transpose."""
    xp = device_xp(backend)
    K, C = weight.shape[:2]
    U = xp.empty((16, C, K) if flip else (16, K, C), weight.dtype)
    _cu5_launch(backend, "conv2d_wino_weight", weight.dtype, K * C,
                (U, weight, np.int32(K), np.int32(C), np.int32(flip)))
    return U


def _cu5_correlate(backend, out, src, U, bias, pad_h, pad_w):
    """out (N, Kout, P, Q) = 3x3 correlation of src (N, Cin, H, W) with the filters whose
    transforms are U (16, Kout, Cin), + bias, chunked over images."""
    xp = device_xp(backend)
    N, Cin, H, W = src.shape
    _, Kout, P, Q = out.shape
    TH, TW = -(-P // 2), -(-Q // 2)
    b, has_b = _cu_bias_args(bias, U)
    step = _cu5_images_per_chunk(N, TH * TW, Cin + Kout, src.itemsize)
    for n0 in range(0, N, step):
        n1 = min(N, n0 + step)
        M = xp.matmul(U, _cu5_input(backend, src[n0:n1], Cin, H, W, TH, TW, pad_h, pad_w))
        _cu5_launch(backend, "conv2d_wino_output", src.dtype, M[0].size,
                    (out[n0:n1], M, b, has_b) + tuple(np.int32(v) for v in
                                                      (n1 - n0, Kout, P, Q, TH, TW)))


def _cu_forward_wino(backend, out, x, weight, bias, g):
    if not _cu5_applies(g):
        return _cu_forward_gemm(backend, out, x, weight, bias, g)
    _cu5_correlate(backend, out, x, _cu5_weights(backend, weight, 0), bias, g.ph, g.pw)


def _cu_backward_data_wino(backend, dx, dout, weight, g):
    if not _cu5_applies(g):
        return _cu_backward_data_gemm(backend, dx, dout, weight, g)
    # dx = dout (padded by 2 - pad) correlated with W flipped and transposed
    _cu5_correlate(backend, dx, dout, _cu5_weights(backend, weight, 1), None,
                   2 - g.ph, 2 - g.pw)


def _cu_backward_weight_wino(backend, dw_acc, dout, x, g):
    if not _cu5_applies(g, _CU5_MIN_CHANNELS_DW):
        return _cu_backward_weight_gemm(backend, dw_acc, dout, x, g)
    xp = device_xp(backend)
    TH, TW = -(-g.P // 2), -(-g.Q // 2)
    dU = xp.zeros((16, g.K, g.C), x.dtype)
    step = _cu5_images_per_chunk(g.N, TH * TW, g.C + g.K, x.itemsize)
    for n0 in range(0, g.N, step):
        n1 = min(g.N, n0 + step)
        V = _cu5_input(backend, x[n0:n1], g.C, g.H, g.W, TH, TW, g.ph, g.pw)
        DY = xp.empty((16, g.K, V.shape[2]), x.dtype)
        _cu5_launch(backend, "conv2d_wino_dout", x.dtype, DY[0].size,
                    (DY, dout[n0:n1]) + tuple(np.int32(v) for v in
                                              (n1 - n0, g.K, g.P, g.Q, TH, TW)))
        dU += xp.matmul(DY, V.transpose(0, 2, 1))
    _cu5_launch(backend, "conv2d_wino_weight_grad", x.dtype, g.K * g.C,
                (dw_acc, dU, np.int32(g.K), np.int32(g.C)))


def _make_cuda_conv2d(version, fwd, bwd_data, bwd_weight):
    """The three op callables of CUDA version ``version`` for ``backend``."""
    def make_forward(backend):
        def forward(x, weight, bias, stride=1, padding=0, dilation=1):
            x, weight, bias, _, g = check_conv2d(x, weight, bias, stride, padding, dilation,
                                                 xp=device_xp(backend))
            out = device_xp(backend).empty((g.N, g.K, g.P, g.Q), x.dtype)
            fwd(backend, out, x, weight, bias, g)
            return out
        forward.__doc__ = f"conv2d forward, CUDA v{version} ({backend})."
        return forward

    def make_backward_data(backend):
        def backward_data(dout, weight, x_shape, stride=1, padding=0, dilation=1):
            _, weight, _, dout, g = check_conv2d(None, weight, None, stride, padding, dilation,
                                                 dout=dout, x_shape=x_shape,
                                                 xp=device_xp(backend))
            dx = device_xp(backend).empty((g.N, g.C, g.H, g.W), weight.dtype)
            bwd_data(backend, dx, dout, weight, g)
            return dx
        backward_data.__doc__ = f"conv2d dL/dx, CUDA v{version} ({backend})."
        return backward_data

    def make_backward_weight(backend):
        def backward_weight(dweight, dbias, dout, x, stride=1, padding=0, dilation=1):
            xp = device_xp(backend)
            x, _, _, dout, g = check_conv2d(x, None, None, stride, padding, dilation, dout=dout,
                                            dweight=dweight, dbias=dbias, xp=xp)
            _cu_accumulate(xp, dweight, lambda t: bwd_weight(backend, t, dout, x, g))
            if dbias is not None:
                _cu_dbias(backend, dbias, dout, g)
        backward_weight.__doc__ = (f"conv2d dL/dweight, dL/dbias (accumulated), CUDA "
                                   f"v{version} ({backend}).")
        return backward_weight

    return make_forward, make_backward_data, make_backward_weight


_DOC_CU1 = ("direct: one thread per output (fwd) / input (bwd-data, gather, no atomics) "
            "element; bwd-weight one block per (k,c,r,s) + shared-memory reduction")
_DOC_CU2 = ("shared-memory tiled implicit GEMM, 64x64 tile, 16-deep steps, 4x4 per thread; "
            "bwd-data per stride phase, bwd-weight split-K (deterministic)")
_DOC_CU3 = ("forward: register-blocked implicit GEMM, 128x128 / 64x64 / 32x128 tiles, 8x8 or 4x4 "
            "per thread, double-buffered 8-deep stages, 1x1 vector loads; backward: v2's kernels")
_DOC_CU4 = ("v3's forward; backward: the same register-blocked double-buffered implicit GEMM "
            "for dx (per stride phase; v1's direct kernel for C <= 4) and dW (split-K)")
_DOC_CU5 = ("Winograd F(2x2,3x3) for 3x3 stride-1 undilated layers with C, K >= 32 (dW: "
            ">= 128): transform kernels + cuBLAS batched GEMMs; v4 elsewhere")
for _v, _default, _doc, _kernels in (
        (1, False, _DOC_CU1, (_cu_forward_direct, _cu_backward_data_direct,
                              _cu_backward_weight_direct)),
        (2, False, _DOC_CU2, (_cu_forward_tiled, _cu_backward_data_tiled,
                             _cu_backward_weight_tiled)),
        (3, False, _DOC_CU3, (_cu_forward_gemm, _cu_backward_data_tiled,
                               _cu_backward_weight_tiled)),
        (4, False, _DOC_CU4, (_cu_forward_gemm, _cu_backward_data_gemm,
                               _cu_backward_weight_gemm)),
        (5, True, _DOC_CU5, (_cu_forward_wino, _cu_backward_data_wino,
                              _cu_backward_weight_wino))):
    for _op, _factory in zip(("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight"),
                             _make_cuda_conv2d(_v, *_kernels)):
        register_cuda(_op, _v, default=_default, doc=_doc)(_factory)
del _v, _default, _doc, _kernels, _op, _factory


# ----------------------------------------------------------------------------
# registrations
# ----------------------------------------------------------------------------
_register = registry.register
_DOC_NUMPY = "reference: einsum over sliding windows of the padded input, per filter tap"
_DOC_V1 = "direct loops, parallel over N*K (bwd-data N*C, bwd-weight K*C)"
_DOC_V2 = "im2col + BLAS GEMM one image at a time, BLAS threads the GEMM"
_DOC_V3 = "images in parallel (prange), each im2col + 1-thread BLAS GEMM"

_register("conv2d_forward", "numpy", 1, default=True, doc=_DOC_NUMPY)(conv2d_forward_numpy)
_register("conv2d_backward_data", "numpy", 1, default=True, doc=_DOC_NUMPY)(
    conv2d_backward_data_numpy)
_register("conv2d_backward_weight", "numpy", 1, default=True, doc=_DOC_NUMPY)(
    conv2d_backward_weight_numpy)

_register("conv2d_forward", "numba", 1, doc=_DOC_V1)(conv2d_forward_numba_v1)
_register("conv2d_backward_data", "numba", 1, doc=_DOC_V1)(conv2d_backward_data_numba_v1)
_register("conv2d_backward_weight", "numba", 1, doc=_DOC_V1)(conv2d_backward_weight_numba_v1)

_register("conv2d_forward", "numba", 2, doc=_DOC_V2)(conv2d_forward_numba_v2)
_register("conv2d_backward_data", "numba", 2, doc=_DOC_V2)(conv2d_backward_data_numba_v2)
_register("conv2d_backward_weight", "numba", 2, doc=_DOC_V2)(conv2d_backward_weight_numba_v2)

_register("conv2d_forward", "numba", 3, doc=_DOC_V3)(conv2d_forward_numba_v3)
_register("conv2d_backward_data", "numba", 3, doc=_DOC_V3)(conv2d_backward_data_numba_v3)
_register("conv2d_backward_weight", "numba", 3, doc=_DOC_V3)(conv2d_backward_weight_numba_v3)

_DOC_V4 = ("Winograd F(2x2,3x3) / F(2x2,5x5) (16 / 36 GEMMs over tiles) for 3x3 / 5x5 stride-1 "
           "undilated, >= 32 channels; N*P*Q <= 256: one GEMM over all images' im2col; 1x1 "
           "stride-1 as one GEMM per image; else v3")
_register("conv2d_forward", "numba", 4, doc=_DOC_V4)(conv2d_forward_numba_v4)
_register("conv2d_backward_data", "numba", 4, doc=_DOC_V4)(conv2d_backward_data_numba_v4)
_register("conv2d_backward_weight", "numba", 4, doc=_DOC_V4)(conv2d_backward_weight_numba_v4)

_DOC_V5 = ("v4 with Winograd F(4x4,3x3) (36 GEMMs over 4x4-output tiles: 4x fewer GEMM FLOPs than "
           "im2col) for 3x3 layers with N*tiles >= 0.75*max(C,K); else as v4")
_register("conv2d_forward", "numba", 5, doc=_DOC_V5)(conv2d_forward_numba_v5)
_register("conv2d_backward_data", "numba", 5, doc=_DOC_V5)(conv2d_backward_data_numba_v5)
_register("conv2d_backward_weight", "numba", 5, doc=_DOC_V5)(conv2d_backward_weight_numba_v5)
_DOC_V6 = ("v5 with the batched-im2col path (VGG-like 7x7 layers) on numba's threads: parallel "
           "gathers / scatters, GEMMs split by rows into 1-thread BLAS calls")
_register("conv2d_forward", "numba", 6, doc=_DOC_V6)(conv2d_forward_numba_v6)
_register("conv2d_backward_data", "numba", 6, doc=_DOC_V6)(conv2d_backward_data_numba_v6)
_register("conv2d_backward_weight", "numba", 6, doc=_DOC_V6)(conv2d_backward_weight_numba_v6)
_DOC_V7 = ("v6 with a direct convolution (micro-kernel over the flattened padded input, no "
           "im2col) for float32 stride-1 layers with C*R*S <= 288: forward and weight gradient")
_register("conv2d_forward", "numba", 7, doc=_DOC_V7)(conv2d_forward_numba_v7)
_register("conv2d_backward_data", "numba", 7, doc=_DOC_V7)(conv2d_backward_data_numba_v7)
_register("conv2d_backward_weight", "numba", 7, doc=_DOC_V7)(conv2d_backward_weight_numba_v7)
_DOC_V8 = ("v7 with the few-output-pixel layers (N*P*Q <= 256, e.g. VGG 7x7) through the "
           "micro-kernel on an implicit (gathered) im2col matrix, float32: all three passes")
_register("conv2d_forward", "numba", 8, doc=_DOC_V8)(conv2d_forward_numba_v8)
_register("conv2d_backward_data", "numba", 8, doc=_DOC_V8)(conv2d_backward_data_numba_v8)
_register("conv2d_backward_weight", "numba", 8, doc=_DOC_V8)(conv2d_backward_weight_numba_v8)
_DOC_V9 = ("v8 with Winograd (float32, C and K multiples of the vector width) in channel lanes: "
           "NHWC tiles, hand-written vector transforms, (a*a, tiles, channels) GEMM operands; "
           "backward-data as the correlation of dout with the rotated filters")
_register("conv2d_forward", "numba", 9, default=True, doc=_DOC_V9)(conv2d_forward_numba_v9)
_register("conv2d_backward_data", "numba", 9, default=True, doc=_DOC_V9)(
    conv2d_backward_data_numba_v9)
_register("conv2d_backward_weight", "numba", 9, default=True, doc=_DOC_V9)(
    conv2d_backward_weight_numba_v9)
