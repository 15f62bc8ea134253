"""Float32 GEMV pieces for numba's recurrent v7 loops at N = 1: stream W_hh, no packing.

At one sentence a recurrent step is a matrix x vector product, bound by how fast W_hh streams
(LSTM speech shape: 16 MB per step, in L3 on a 32 MB-L3 EPYC). The packed 4-row micro-kernel of
``_packed_gemm.py`` wastes 3 of its 4 rows there, and a BLAS sgemv per step costs a call that
alternates OpenBLAS's thread pool with numba's. These two loops run inside numba's parallel
region instead, each thread on its own block of W_hh:

* :func:`dot_rows` (forward, ``W_hh h``): rows [j0, j1) of W dotted with each sentence's
  vector; four rows at a time so every load of ``x`` feeds four FMAs.
* :func:`axpy_cols` (backward, ``dg W_hh``): columns [c0, c1) of ``g @ W``, the partial rows
  summed into an L1-resident accumulator four rows of W at a time (one accumulator load and
  store per four FMAs).

Both need reassociation to vectorise (a float32 sum, reordered as any BLAS reorders it), so they
are compiled with ``fastmath={"reassoc", "contract"}`` as their own functions: the caller's
strict flags do not apply to them. Measured on a 2-core AVX-512 EPYC (Zen 4), W 4000 x 1000 in
L3, one parallel region per step on 2 threads: dot_rows 0.14 ms per step (114 GB/s; OpenBLAS's
2-thread sgemv 0.144 ms; a plain sum over W 0.10-0.11 ms).
"""
from __future__ import annotations

import numpy as np
from numba import njit

_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})


@njit(**_JIT)
def dot_rows(w, j0, j1, x, out, o0):
    """``out[n, o0 + j - j0] = w[j] . x[n]`` for rows ``j0 <= j < j1`` and every sentence n.

    Parameters
    ----------
    w : (M, K) float32, C-contiguous rows
    j0, j1 : row range of w
    x : (N, K) float32
    out : (N, >= o0 + j1 - j0) float32
    o0 : first column of out written
    """
    N, K = x.shape
    j = j0
    while j + 4 <= j1:
        w0, w1, w2, w3 = w[j], w[j + 1], w[j + 2], w[j + 3]
        for n in range(N):
            xn = x[n]
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            s2 = np.float32(0.0)
            s3 = np.float32(0.0)
            for k in range(K):
                xk = xn[k]
                s0 += w0[k] * xk
                s1 += w1[k] * xk
                s2 += w2[k] * xk
                s3 += w3[k] * xk
            o = out[n]
            i = o0 + j - j0
            o[i] = s0
            o[i + 1] = s1
            o[i + 2] = s2
            o[i + 3] = s3
        j += 4
    while j < j1:
        w0 = w[j]
        for n in range(N):
            xn = x[n]
            s0 = np.float32(0.0)
            for k in range(K):
                s0 += w0[k] * xn[k]
            out[n, o0 + j - j0] = s0
        j += 1


@njit(**_JIT)
def axpy_cols(w, g, c0, c1, out):
    """``out[n, :c1 - c0] = g[n] @ w[:, c0:c1]`` for every sentence n.

    Parameters
    ----------
    w : (M, K) float32, C-contiguous rows
    g : (N, M) float32
    c0, c1 : column range of w
    out : (N, >= c1 - c0) float32, overwritten
    """
    M = w.shape[0]
    N = g.shape[0]
    m = c1 - c0
    for n in range(N):
        o = out[n, :m]
        for k in range(m):
            o[k] = np.float32(0.0)
    j = 0
    while j + 4 <= M:
        w0, w1, w2, w3 = w[j, c0:c1], w[j + 1, c0:c1], w[j + 2, c0:c1], w[j + 3, c0:c1]
        for n in range(N):
            gn = g[n]
            g0, g1, g2, g3 = gn[j], gn[j + 1], gn[j + 2], gn[j + 3]
            o = out[n, :m]
            for k in range(m):
                o[k] += g0 * w0[k] + g1 * w1[k] + g2 * w2[k] + g3 * w3[k]
        j += 4
    while j < M:
        w0 = w[j, c0:c1]
        for n in range(N):
            g0 = g[n, j]
            o = out[n, :m]
            for k in range(m):
                o[k] += g0 * w0[k]
        j += 1
