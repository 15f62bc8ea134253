"""A float32 GEMM driver over the gathered micro-kernel (``kernels/_packed_gemm.py``) on
numba's threads: A is read in place through two offset tables (``A[m, k] = a[rows[m] +
taps[k]]``: a row-major matrix, its transpose or an implicit im2col matrix alike), B in
GATHER_NR-column panels that stay in L2 while a thread's row tiles stream past them.

Used by conv2d v8's backward passes (few output pixels).

Tried and dropped: the GEMMs around a recurrent layer (input projection, dW_ih, dW_hh, dx)
through this driver (A @ B, A @ B^T and C += A^T @ B wrappers) as a recurrent v9. LSTM T=6
N=32 Hd=512's 192-row GEMMs ran 190-202 GFLOP/s against 174-196 for ``kernels/_pool_blas.py``'s
single-threaded OpenBLAS calls in isolation, and the layer's fwd+bwd 5-9% faster with one
running sum over k, but then ReLU RNN T=13 N=16 Hd=512's dx (512 deep, heavy cancellation)
came out 10x further from float64 than OpenBLAS's and failed ``seqgrid compare``'s 1e-3
check (as PyTorch's does). With TILE_KC-deep partial sums it passes, and the gain fell to
-2.5..+5% (interleaved v8 / v9 fwd+bwd, 2-core AVX-512 EPYC): not kept. Without blocking the
B panels over k (a panel is k x GATHER_NR floats), the speech shape's 6400-deep dW lost 9%.
"""
from __future__ import annotations

import numba
from numba import njit, prange

from ._packed_gemm import GATHER_NR as NR
from ._packed_gemm import MR, mk_tile_gather_a, mk_tile_gather_a_acc

__all__ = ["tile_gemm", "tile_groups"]


#: depth of one pass of the tile kernel: deeper products are summed in TILE_KC-deep partial
#: sums, each added to c (as OpenBLAS's k-blocking does). One running sum over all of k lost
#: float32 accuracy on an ill-conditioned product: ReLU RNN T=13 N=16 Hd=512's dx (512 deep,
#: heavy cancellation) came out 10x further from float64 than OpenBLAS's, failing
#: ``seqgrid compare``'s 1e-3 check as PyTorch's does.
TILE_KC = 128


@njit(parallel=True, cache=True)
def tile_gemm(a, rows, taps, b, ldb, pstride, M, N, c, ldc, accumulate, cbuf, groups):
    """``c[m*ldc + n] (+)= sum_k a[rows[m] + taps[k]] * B[k, n]`` for m < M, n < N, k <
    len(taps), with B's NR-column panel p at ``b[p*pstride + k*ldb + j]``.

    ``rows`` holds M offsets rounded up to MR (the extra ones valid, their results dropped);
    ``accumulate`` adds to c instead of overwriting it. Work items of (panel, a range of
    MR-row tiles), ``groups`` per panel. k runs in TILE_KC-deep passes: a whole tile of a
    one-pass product goes straight into c; other tiles (deeper products, or at the bottom or
    right edge) sum each pass in thread t's ``cbuf[t]`` (MR * NR floats) and add it to c."""
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
            if nn == NR and m0 + MR <= M and K <= TILE_KC:
                if accumulate:
                    mk_tile_gather_a_acc(a, rows, m0, taps, b, p * pstride, ldb, c,
                                         m0 * ldc + n0, ldc, K)
                else:
                    mk_tile_gather_a(a, rows, m0, taps, b, p * pstride, ldb, c, m0 * ldc + n0,
                                     ldc, K)
                continue
            cb = cbuf[numba.get_thread_id()]
            for k0 in range(0, max(K, 1), TILE_KC):
                k1 = min(K, k0 + TILE_KC)
                mk_tile_gather_a(a, rows, m0, taps[k0:k1], b, p * pstride + k0 * ldb, ldb, cb,
                                 0, NR, k1 - k0)
                for r in range(min(MR, M - m0)):
                    dst = c[(m0 + r) * ldc + n0: (m0 + r) * ldc + n0 + nn]
                    src = cb[r * NR: r * NR + nn]
                    if accumulate or k0 > 0:
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
