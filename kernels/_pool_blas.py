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
import numba.np.linalg as _nb_linalg
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic, overload


class SingleThreadedBLAS:
    """Context: SciPy's (and NumPy's) BLAS limited to one thread, so that BLAS called from
    numba's prange threads does not start threads of its own (restored on exit; without
    threadpoolctl this part does nothing: correct, maybe slower), and numba's parallel chunk
    size set to 1 (work items handed out one at a time). Nested uses (per Python thread) cost
    nothing: only the outermost one limits and restores.

    The BLAS libraries are found once (threadpoolctl) and then set directly, only those not
    already at one thread: ~9 us per use instead of ~21 us through ``ThreadpoolController.limit``
    and ``restore_original_limits`` (which query every library each time), on a 1x1 conv's
    0.1 ms GEMMs (three uses per training step) a tenth of the call."""
    _blas = None             # threadpoolctl's BLAS library controllers ([] without it)
    _depth = threading.local()

    @classmethod
    def _libraries(cls):
        if cls._blas is None:
            try:
                import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS numba calls)
                from threadpoolctl import ThreadpoolController
                cls._blas = list(ThreadpoolController().select(user_api="blas").lib_controllers)
            except Exception:  # pragma: no cover - threadpoolctl missing
                cls._blas = []
        return cls._blas

    def __enter__(self):
        depth = getattr(SingleThreadedBLAS._depth, "n", 0)
        SingleThreadedBLAS._depth.n = depth + 1
        self._outer = depth == 0
        if not self._outer:
            return self
        self._restore = []
        for lib in self._libraries():
            n = lib.num_threads
            if n != 1:
                lib.set_num_threads(1)
                self._restore.append((lib, n))
        self._chunk = numba.set_parallel_chunksize(1)
        return self

    def __exit__(self, *exc):
        SingleThreadedBLAS._depth.n -= 1
        if not self._outer:
            return
        numba.set_parallel_chunksize(self._chunk)
        for lib, n in self._restore:
            lib.set_num_threads(n)


@njit(parallel=True, cache=True)
def _gemm_rows(A, B, out, parts):
    M = A.shape[0]
    for p in prange(parts):
        r0 = M * p // parts
        r1 = M * (p + 1) // parts
        if r1 > r0:
            np.dot(A[r0:r1], B, out[r0:r1])


# SciPy's BLAS ?gemm for strided blocks (np.dot on a non-contiguous slice would copy it),
# through numba's own binding: ``numba_xxgemm`` is what numba's np.dot calls (the kind
# character picks s/d), so this compiles and caches like np.dot does. Column-major arguments.
_BLAS_SIGS = _nb_linalg._BLAS()      # makes sure numba's BLAS binding is loaded
_XXGEMM32 = _BLAS_SIGS.numba_xxgemm(types.float32)
_XXGEMM64 = _BLAS_SIGS.numba_xxgemm(types.float64)


@intrinsic
def _data_ptr(typingctx, arr):
    """The data pointer of an array (view), typed as a pointer to its elements."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):
        return context.make_array(sig.args[0])(context, builder, args[0]).data
    return types.CPointer(arr.dtype)(arr), codegen


def _gemm_block(alpha, beta, transa, transb, m, n, k, a, lda, b, ldb, c, ldc):
    """BLAS ?gemm on column-major blocks: c (m x n, ldc) = alpha op(a) @ op(b) + beta c, with
    op 'N' (78) or 'T' (84), ``alpha`` / ``beta`` 1-element arrays in the data's dtype; njit
    only."""


@overload(_gemm_block)
def _gemm_block_impl(alpha, beta, transa, transb, m, n, k, a, lda, b, ldb, c, ldc):
    xxgemm, kind = (_XXGEMM32, 115) if alpha.dtype == types.float32 else (_XXGEMM64, 100)

    def impl(alpha, beta, transa, transb, m, n, k, a, lda, b, ldb, c, ldc):   # kind 's' / 'd'
        xxgemm(kind, transa, transb, m, n, k, _data_ptr(alpha), _data_ptr(a), lda,
               _data_ptr(b), ldb, _data_ptr(beta), _data_ptr(c), ldc)
    return impl


_N, _T = 78, 84       # BLAS op characters


@njit(parallel=True, cache=True)
def _gemm_tn_rows(A, B, acc, parts, one, beta):
    # acc (M, N) = A.T @ B + beta acc with A (K, M), B (K, N), acc C-contiguous. Row-major acc
    # is the column-major (N, M) matrix B^T(N, K) A(K, M): ?gemm('N', 'T', N, M, K, 1, B, N,
    # A, M, beta, acc, N). Thread p takes acc's rows m0 .. m1, i.e. columns of A from A[0, m0].
    K, M = A.shape
    N = B.shape[1]
    for p in prange(parts):
        m0 = M * p // parts
        m1 = M * (p + 1) // parts
        if m1 > m0 and N > 0:
            if K > 0:
                _gemm_block(one, beta, _N, _T, N, m1 - m0, K, B, N, A[:, m0:], M, acc[m0:], N)
            elif beta[0] == 0:
                acc[m0:m1] = 0


@njit(parallel=True, cache=True)
def _gemm_nt_rows(A, Bt, acc, parts, one):
    # acc (M, N) += A @ Bt.T with A (M, K), Bt (N, K), acc C-contiguous. Row-major acc is the
    # column-major (N, M) matrix Bt(N, K) A^T(K, M), where Bt is stored as the column-major
    # (K, N) matrix Bt^T and A as (K, M): ?gemm('T', 'N', N, M, K, 1, Bt, K, A, K, 1, acc, N).
    # Thread p takes acc's rows m0 .. m1 (rows of A).
    M, K = A.shape
    N = Bt.shape[0]
    for p in prange(parts):
        m0 = M * p // parts
        m1 = M * (p + 1) // parts
        if m1 > m0 and K > 0 and N > 0:
            _gemm_block(one, one, _T, _N, N, m1 - m0, K, Bt, K, A[m0:], K, acc[m0:], N)


@njit(parallel=True, cache=True)
def _gemm_cols(A, B, transposed, out, parts, one, zero):
    # out (M, N) = A (M, K) @ B with out's COLUMNS split over the threads; B is given as the
    # C-contiguous (K, N) matrix itself, or (``transposed``) as its C-contiguous transpose
    # (N, K). Row-major out is the column-major (N, M) matrix B^T A^T: thread p computes its
    # rows n0 .. n1 of it, ?gemm(op, 'N', n1 - n0, M, K, 1, B from column n0, ..., A, K, 0,
    # out from column n0, N), op 'N' on B seen column-major (N, K), 'T' on B^T seen (K, N).
    # A short A against a wide B (LSTM T=6 N=32 Hd=512's input projection, 192 x 512 @ 512 x
    # 2048, 2 cores): 153 GFLOP/s split by A's rows (each thread packs all of B), 168 here.
    M, K = A.shape
    N = out.shape[1]
    of = out.reshape(-1)
    bf = B.reshape(-1)
    for p in prange(parts):
        n0 = N * p // parts
        n1 = N * (p + 1) // parts
        if n1 > n0 and M > 0:
            if K == 0:
                out[:, n0:n1] = 0
            elif transposed:
                _gemm_block(one, zero, _T, _N, n1 - n0, M, K, bf[n0 * K:], K, A, K, of[n0:], N)
            else:
                _gemm_block(one, zero, _N, _N, n1 - n0, M, K, bf[n0:], N, A, K, of[n0:], N)


def _blas_ready(*arrays):
    """Whether the arrays can go to the pool GEMMs: one float dtype, C-contiguous, every size
    within 32-bit BLAS integers."""
    dt = arrays[0].dtype
    return (dt in (np.float32, np.float64) and all(a.dtype == dt for a in arrays)
            and all(a.flags.c_contiguous for a in arrays)
            and max(max(a.shape) for a in arrays) < 2**31)


def pool_matmul(A, B):
    """``A @ B`` (2-D NumPy arrays, A C-contiguous, B C- or F-contiguous) split over numba's
    threads, one single-threaded BLAS GEMM each: by A's rows, or by B's columns where A has
    fewer rows than B has columns (each thread then packs only its part of B; see
    :func:`_gemm_cols`)."""
    out = np.empty((A.shape[0], B.shape[1]), np.result_type(A, B))
    with SingleThreadedBLAS():
        if A.shape[0] < B.shape[1] and B.dtype == A.dtype and _blas_ready(A, B.T if
                                                                        B.flags.f_contiguous
                                                                        else B, out):
            one, zero = np.ones(1, A.dtype), np.zeros(1, A.dtype)
            if B.flags.c_contiguous:
                _gemm_cols(A, B, False, out, numba.get_num_threads(), one, zero)
            else:
                _gemm_cols(A, B.T, True, out, numba.get_num_threads(), one, zero)
        else:
            _gemm_rows(A, B, out, numba.get_num_threads())
    return out


def pool_matmul_tn_accumulate(acc, A, B):
    """``acc += A.T @ B`` (A: (K, M), B: (K, N); acc: (M, N); one float dtype) with acc's rows
    split over numba's threads, one single-threaded BLAS GEMM each accumulating straight into
    its rows (beta = 1: no partial sums). Falls back to NumPy for non-contiguous arrays, mixed
    dtypes or sizes past 32-bit BLAS integers."""
    if not _blas_ready(acc, A, B):
        acc += A.T @ B
        return
    one = np.ones(1, acc.dtype)
    with SingleThreadedBLAS():
        _gemm_tn_rows(A, B, acc, numba.get_num_threads(), one, one)


def pool_matmul_tn(A, B):
    """``A.T @ B`` (A: (K, M), B: (K, N), C-contiguous, one float dtype), a new C-contiguous
    (M, N) array, its rows split over numba's threads (one single-threaded BLAS GEMM each).
    Falls back to NumPy like :func:`pool_matmul_tn_accumulate`."""
    if not _blas_ready(A, B):
        return A.T @ B
    out = np.empty((A.shape[1], B.shape[1]), A.dtype)
    with SingleThreadedBLAS():
        _gemm_tn_rows(A, B, out, numba.get_num_threads(), np.ones(1, A.dtype),
                      np.zeros(1, A.dtype))
    return out


def pool_matmul_nt_accumulate(acc, A, Bt):
    """``acc += A @ Bt.T`` (A: (M, K), Bt: (N, K); acc: (M, N); one float dtype) with acc's
    rows split over numba's threads, one single-threaded BLAS GEMM each accumulating straight
    into its rows. Falls back to NumPy like :func:`pool_matmul_tn_accumulate`."""
    if not _blas_ready(acc, A, Bt):
        acc += A @ Bt.T
        return
    with SingleThreadedBLAS():
        _gemm_nt_rows(A, Bt, acc, numba.get_num_threads(), np.ones(1, acc.dtype))
