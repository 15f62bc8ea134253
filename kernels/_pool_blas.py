"""BLAS on numba's own threads: one single-threaded BLAS call per numba thread.

numba's parallel regions run on GNU OpenMP's thread pool (the ``omp`` threading layer, shared
with PyTorch's intra-op threads in the same process), whose idle threads spin for a while
after each region (GOMP_SPINCOUNT, ~300k iterations by default). A multi-threaded OpenBLAS
call (its own pthreads) made right after such a region runs beside those spinning threads on
the same cores and slows down 2-3x: LSTM T=6 N=32 Hd=512 forward measured 26.8 ms with the
input projection on OpenBLAS's threads and 9.8 ms with it split over numba's threads here
(PyTorch 8.8 ms), 2 cores. Lowering GOMP_SPINCOUNT instead also slowed PyTorch's own
step-by-step RNN loops in the same process (speech LSTM N=4: 275 -> 421 ms, medians of 3
processes), so the spin is left alone and the GEMMs move to the pool that is already awake.
"""
from __future__ import annotations

import threading

import numba
import numpy as np
from numba import njit, prange


class SingleThreadedBLAS:
    """Context: SciPy's (and NumPy's) BLAS limited to one thread, so that BLAS called from
    numba's prange threads does not start threads of its own (restored on exit; without
    threadpoolctl this part does nothing: correct, maybe slower), and numba's parallel chunk
    size set to 1 (work items handed out one at a time). Nested uses (per Python thread) cost
    nothing: only the outermost one limits and restores (~0.1 ms each way)."""
    _controller = None
    _depth = threading.local()

    def __enter__(self):
        depth = getattr(SingleThreadedBLAS._depth, "n", 0)
        SingleThreadedBLAS._depth.n = depth + 1
        self._outer = depth == 0
        if not self._outer:
            return self
        if SingleThreadedBLAS._controller is None:
            try:
                import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS numba calls)
                from threadpoolctl import ThreadpoolController
                SingleThreadedBLAS._controller = ThreadpoolController()
            except Exception:  # pragma: no cover - threadpoolctl missing
                SingleThreadedBLAS._controller = False
        self._limiter = (SingleThreadedBLAS._controller.limit(limits=1, user_api="blas")
                         if SingleThreadedBLAS._controller else None)
        self._chunk = numba.set_parallel_chunksize(1)
        return self

    def __exit__(self, *exc):
        SingleThreadedBLAS._depth.n -= 1
        if not self._outer:
            return
        numba.set_parallel_chunksize(self._chunk)
        if self._limiter is not None:
            self._limiter.restore_original_limits()


@njit(parallel=True, cache=True)
def _gemm_rows(A, B, out, parts):
    M = A.shape[0]
    for p in prange(parts):
        r0 = M * p // parts
        r1 = M * (p + 1) // parts
        if r1 > r0:
            np.dot(A[r0:r1], B, out[r0:r1])


@njit(parallel=True, cache=True)
def _gemm_tn_accumulate(A, B, acc, part):
    P, K = part.shape[0], A.shape[0]
    for p in prange(P):
        k0 = K * p // P
        k1 = K * (p + 1) // P
        if k1 > k0:
            np.dot(A[k0:k1].T, B[k0:k1], part[p])
        else:
            part[p][:, :] = 0
    for i in prange(acc.shape[0]):
        row = acc[i]
        for p in range(P):
            pr = part[p, i]
            for j in range(row.shape[0]):
                row[j] += pr[j]


def pool_matmul(A, B):
    """``A @ B`` (2-D NumPy arrays, A C-contiguous, B C- or F-contiguous) with A's rows split
    over numba's threads, one single-threaded BLAS GEMM each."""
    out = np.empty((A.shape[0], B.shape[1]), np.result_type(A, B))
    with SingleThreadedBLAS():
        _gemm_rows(A, B, out, numba.get_num_threads())
    return out


def pool_matmul_tn_accumulate(acc, A, B):
    """``acc += A.T @ B`` (A: (K, M), B: (K, N), both C-contiguous; acc: (M, N) C-contiguous)
    with the K rows split over numba's threads (one single-threaded BLAS GEMM each into a
    per-thread (M, N) partial), then the partials added into ``acc`` in parallel."""
    part = np.empty((numba.get_num_threads(),) + acc.shape, acc.dtype)
    with SingleThreadedBLAS():
        _gemm_tn_accumulate(A, B, acc, part)
