"""kernels._pool_blas: GEMMs split over numba's threads (one single-threaded BLAS call each)
against NumPy, with fewer rows than threads, transposed (F-contiguous) operands, both dtypes,
and accumulation into a non-zero target."""
import numpy as np
import pytest

from kernels._pool_blas import (SingleThreadedBLAS, pool_matmul, pool_matmul_nt_accumulate,
                                pool_matmul_tn, pool_matmul_tn_accumulate)
from util import assert_close


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,K,N", [(1, 3, 2), (2, 1, 5), (7, 13, 3), (130, 64, 33), (5, 40, 97),
                                   (3, 0, 5), (0, 4, 5)])
def test_pool_matmul_matches_numpy(M, K, N, dtype):
    rng = np.random.default_rng(M * K + N)
    A = rng.standard_normal((M, K)).astype(dtype)
    W = rng.standard_normal((N, K)).astype(dtype)
    got = pool_matmul(A, W.T)                    # B F-contiguous, as the input projection
    assert got.dtype == dtype and got.shape == (M, N)
    assert_close("A @ W.T", got, A @ W.T)
    assert_close("A @ B", pool_matmul(A, np.ascontiguousarray(W.T)), A @ W.T)


def test_pool_matmul_splits_columns_for_a_short_a(monkeypatch):
    """Fewer rows in A than columns in B: B's columns split over the threads (both B layouts),
    the same values as the row split; more rows: A's rows split."""
    from kernels import _pool_blas
    ran = []
    for name in ("_gemm_cols", "_gemm_rows"):
        real = getattr(_pool_blas, name)
        monkeypatch.setattr(_pool_blas, name,
                            lambda *a, _n=name, _r=real: ran.append(_n) or _r(*a))
    rng = np.random.default_rng(5)
    A, W = rng.standard_normal((6, 50)).astype(np.float32), rng.standard_normal((77, 50)).astype(
        np.float32)
    for B in (W.T, np.ascontiguousarray(W.T)):
        assert_close("short A", pool_matmul(A, B), A @ W.T)
    assert ran == ["_gemm_cols", "_gemm_cols"]
    ran.clear()
    assert_close("tall A", pool_matmul(W, A.T), W @ A.T)
    assert ran == ["_gemm_rows"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K,M,N", [(1, 3, 2), (4, 1, 3), (2, 4, 4), (9, 5, 7), (257, 40, 17)])
def test_pool_matmul_tn_accumulates(K, M, N, dtype):
    """Strided BLAS blocks of acc's rows (M = 1: a thread without rows), beta = 1."""
    rng = np.random.default_rng(K + M * N)
    A = rng.standard_normal((K, M)).astype(dtype)
    B = rng.standard_normal((K, N)).astype(dtype)
    acc = rng.standard_normal((M, N)).astype(dtype)
    want = acc + A.T @ B
    pool_matmul_tn_accumulate(acc, A, B)
    assert_close("acc + A.T @ B", acc, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K,M,N", [(0, 3, 2), (1, 3, 2), (4, 1, 3), (9, 5, 7), (98, 40, 17)])
def test_pool_matmul_tn_overwrites(K, M, N, dtype):
    """beta = 0: a new array with nothing left of np.empty's garbage (K = 0 gives zeros)."""
    rng = np.random.default_rng(K + 3 * M * N)
    A = rng.standard_normal((K, M)).astype(dtype)
    B = rng.standard_normal((K, N)).astype(dtype)
    got = pool_matmul_tn(A, B)
    assert got.dtype == dtype and got.shape == (M, N) and got.flags.c_contiguous
    assert_close("A.T @ B", got, A.T @ B)
    assert_close("strided (NumPy fallback)", pool_matmul_tn(A[:, ::-1], B), A[:, ::-1].T @ B)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,K,N", [(1, 3, 2), (3, 1, 4), (5, 9, 7), (40, 98, 17)])
def test_pool_matmul_nt_accumulates(M, K, N, dtype):
    rng = np.random.default_rng(M + K * N)
    A = rng.standard_normal((M, K)).astype(dtype)
    Bt = rng.standard_normal((N, K)).astype(dtype)
    acc = rng.standard_normal((M, N)).astype(dtype)
    want = acc + A @ Bt.T
    pool_matmul_nt_accumulate(acc, A, Bt)
    assert_close("acc + A @ Bt.T", acc, want)
    acc2 = np.zeros((M, 2 * N), dtype)[:, ::2]          # strided target: NumPy fallback
    pool_matmul_nt_accumulate(acc2, A, Bt)
    assert_close("strided acc", acc2, A @ Bt.T)


def test_pool_matmul_tn_falls_back_for_strided_or_mixed_arrays():
    rng = np.random.default_rng(5)
    A = rng.standard_normal((6, 4)).astype(np.float32)
    B = rng.standard_normal((6, 3)).astype(np.float32)
    big = rng.standard_normal((4, 6)).astype(np.float32)
    acc = big[:, ::2]                            # a strided view: updated in place
    want = acc + A.T @ B
    pool_matmul_tn_accumulate(acc, A, B)
    assert_close("strided acc", big[:, ::2], want)
    acc64 = np.zeros((4, 3))
    pool_matmul_tn_accumulate(acc64, A, B)       # float64 target, float32 operands
    assert_close("mixed dtypes", acc64, (A.T @ B).astype(np.float64))


def test_single_threaded_blas_restores_the_chunk_size():
    import numba
    before = numba.get_parallel_chunksize()
    with SingleThreadedBLAS():
        assert numba.get_parallel_chunksize() == 1
    assert numba.get_parallel_chunksize() == before


def test_single_threaded_blas_limits_and_restores_blas_threads():
    """Inside: every BLAS library at one thread (nested uses too); after: each back at its own
    count, including one set to a new count between two uses."""
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def counts():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]

    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = counts()
        with SingleThreadedBLAS():
            assert set(counts()) <= {1}
            with SingleThreadedBLAS():
                assert set(counts()) <= {1}
            assert set(counts()) <= {1}
        assert counts() == before
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            with SingleThreadedBLAS():
                assert set(counts()) <= {1}
            assert set(counts()) <= {1}
        assert counts() == before
