"""A float32 GEMM driver over the gathered micro-kernel (``kernels/_packed_gemm.py``) on
numba's threads: A is read in place through two offset tables (``A[m, k] = a[rows[m] +
taps[k]]``: a row-major matrix, its transpose or an implicit im2col matrix alike), B in
GATHER_NR-column panels that stay in L2 while a thread's row tiles stream past them.

Used by conv2d v8's backward passes (few output pixels) and, through :func:`tile_matmul`
(A @ B), :func:`tile_matmul_nt` (A @ B^T) and :func:`tile_matmul_tn_accumulate` (C += A^T @ B),
by recurrent v9's GEMMs outside the time loop (input projection, dW_ih, dW_hh, dx). There, on
the 2-core AVX-512 EPYC, LSTM T=6 N=32 Hd=512's 192-row GEMMs ran 190-202 GFLOP/s against
174-196 for ``kernels/_pool_blas.py``'s single-threaded OpenBLAS calls in isolation, and the
layer's fwd+bwd 5-9% faster on DeepBench-sized rows. Without blocking over k a B panel is k x
GATHER_NR floats: past a core's L2 (the speech shape's T*N = 6400-deep dW) it lost 9%, so
:func:`tile_fits` keeps those on OpenBLAS.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ._packed_gemm import GATHER_NR as NR
from ._packed_gemm import MR, mk_tile_gather_a, mk_tile_gather_a_acc, pack_col_panels, \
    pack_row_panels

__all__ = ["tile_gemm", "tile_groups", "tile_fits", "tile_matmul", "tile_matmul_nt",
           "tile_matmul_tn_accumulate"]

#: largest B panel (k * GATHER_NR float32) the NumPy-level wrappers take: half a core's L2
TILE_MAX_PANEL_BYTES = 512 << 10


@njit(parallel=True, cache=True)
def tile_gemm(a, rows, taps, b, ldb, pstride, M, N, c, ldc, accumulate, cbuf, groups):
    """``c[m*ldc + n] (+)= sum_k a[rows[m] + taps[k]] * B[k, n]`` for m < M, n < N, k <
    len(taps), with B's NR-column panel p at ``b[p*pstride + k*ldb + j]``.

    ``rows`` holds M offsets rounded up to MR (the extra ones valid, their results dropped);
    ``accumulate`` adds to c instead of overwriting it. Work items of (panel, a range of
    MR-row tiles), ``groups`` per panel; whole tiles go straight into c, tiles at the bottom
    or right edge through thread t's ``cbuf[t]`` (MR * NR floats)."""
    K = taps.shape[0]
    MT = (M + MR - 1) // MR
    per = (MT + groups - 1) // groups
    for item in prange(((N + NR - 1) // NR) * groups):
        p = item // groups
        t0 = (item - p * groups) * per
        n0 = p * NR
        nn = min(NR, N - n0)
        for t in range(t0, min(MT, t0 + per)):
            m0 = t * MR
            if nn == NR and m0 + MR <= M:
                if accumulate:
                    mk_tile_gather_a_acc(a, rows, m0, taps, b, p * pstride, ldb, c,
                                         m0 * ldc + n0, ldc, K)
                else:
                    mk_tile_gather_a(a, rows, m0, taps, b, p * pstride, ldb, c, m0 * ldc + n0,
                                     ldc, K)
                continue
            cb = cbuf[numba.get_thread_id()]
            mk_tile_gather_a(a, rows, m0, taps, b, p * pstride, ldb, cb, 0, NR, K)
            for r in range(min(MR, M - m0)):
                dst, src = c[(m0 + r) * ldc + n0: (m0 + r) * ldc + n0 + nn], cb[r * NR:]
                if accumulate:
                    for j in range(nn):
                        dst[j] += src[j]
                else:
                    for j in range(nn):
                        dst[j] = src[j]


def tile_groups(panels: int, tiles: int, threads: int) -> int:
    """Work items per panel for :func:`tile_gemm`: the fewest that share panels * groups
    evenly between the threads (prange hands each thread a contiguous run: 11 panels on 2
    threads ran 6 against 5), else give each thread 16 items."""
    g = 1
    while g < tiles and (panels * g) % threads and panels * g < 16 * threads:
        g += 1
    return g


def tile_fits(k: int) -> bool:
    """Whether a k-deep product's B panels (k x GATHER_NR float32) fit TILE_MAX_PANEL_BYTES."""
    return k * NR * 4 <= TILE_MAX_PANEL_BYTES


def _offsets(n: int, step: int, multiple: int = 1) -> np.ndarray:
    """``[0, step, 2*step, ...]`` (n of them), then 0s (a valid offset) up to a multiple."""
    t = np.zeros(-(-n // multiple) * multiple, np.int64)
    t[:n] = np.arange(n, dtype=np.int64) * step
    return t


def _run(a, rows, taps, bp, M, N, c, accumulate):
    T = numba.get_num_threads()
    tile_gemm(a.reshape(-1), rows, taps, bp, NR, taps.size * NR, M, N, c.reshape(-1),
              c.shape[1], accumulate, np.empty((T, MR * NR), np.float32),
              tile_groups(-(-N // NR), -(-M // MR), T))
    return c


def _col_panels(b):
    K, N = b.shape
    return pack_col_panels(b, np.empty(-(-N // NR) * K * NR, np.float32), NR)


def tile_matmul(a, b):
    """``a (M, K) @ b (K, N)``, new (M, N); C-contiguous float32 operands."""
    (M, K), N = a.shape, b.shape[1]
    return _run(a, _offsets(M, K, MR), _offsets(K, 1), _col_panels(b), M, N,
                np.empty((M, N), np.float32), False)


def tile_matmul_nt(a, bt):
    """``a (M, K) @ bt (N, K)^T``, new (M, N): bt's rows become B's columns through a
    register-block transposing pack."""
    (M, K), N = a.shape, bt.shape[0]
    bp = pack_row_panels(bt, N, 1, np.empty(-(-N // NR) * K * NR, np.float32), NR)
    return _run(a, _offsets(M, K, MR), _offsets(K, 1), bp, M, N, np.empty((M, N), np.float32),
                False)


def tile_matmul_tn_accumulate(c, a, b):
    """``c (M, N) += a (K, M)^T @ b (K, N)`` in place (A^T read in place: no transpose)."""
    (K, M), N = a.shape, b.shape[1]
    return _run(a, _offsets(M, 1, MR), _offsets(K, M), _col_panels(b), M, N, c, True)
