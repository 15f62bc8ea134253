"""kernels/_tile_gemm.py: the gathered-A GEMM driver against NumPy (A read in place through
offset tables, as a matrix or its transpose; B in panels or row-major; edges; accumulate)."""
import numpy as np
import pytest

from kernels._packed_gemm import GATHER_NR as NR
from kernels._packed_gemm import MR, pack_col_panels
from kernels._tile_gemm import tile_gemm, tile_groups


def offsets(n, step, multiple=1):
    t = np.zeros(-(-n // multiple) * multiple, np.int64)
    t[:n] = np.arange(n) * step
    return t


@pytest.mark.parametrize("transposed_a", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("panels", [True, False])
@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (MR, 9, NR), (13, 37, NR + 5), (40, 70, 3 * NR),
                                   (9, 300, NR + 3), (8, 256, NR)])
def test_tile_gemm_matches_numpy(M, K, N, panels, accumulate, transposed_a):
    rng = np.random.default_rng(M * K + N)
    A = rng.standard_normal((M, K)).astype(np.float32)
    B = rng.standard_normal((K, N)).astype(np.float32)
    if transposed_a:             # a holds A^T (K, M): A[m, k] at m + k*M
        a, rows, taps = np.ascontiguousarray(A.T).ravel(), offsets(M, 1, MR), offsets(K, M)
    else:                        # a holds A (M, K): A[m, k] at m*K + k
        a, rows, taps = A.ravel(), offsets(M, K, MR), offsets(K, 1)
    P = -(-N // NR)
    if panels:
        b, ldb, pstride = pack_col_panels(B, np.empty(P * K * NR, np.float32), NR), NR, K * NR
    else:                        # row-major, rows padded to whole panels
        wide = np.zeros((K, P * NR), np.float32)
        wide[:, :N] = B
        b, ldb, pstride = wide.ravel(), P * NR, NR
    ldc = N + 3
    c0 = rng.standard_normal((M, ldc)).astype(np.float32)
    c = c0.copy()
    threads = 2
    tile_gemm(a, rows, taps, b, ldb, pstride, M, N, c.ravel(), ldc, accumulate,
              np.empty((8, MR * NR), np.float32), tile_groups(P, -(-M // MR), threads))
    want = A.astype(np.float64) @ B + (c0[:, :N] if accumulate else 0)
    np.testing.assert_allclose(c[:, :N], want, rtol=1e-5, atol=1e-5 * np.sqrt(K))
    np.testing.assert_array_equal(c[:, N:], c0[:, N:])          # nothing past N written


def test_tile_groups_share_items_evenly():
    assert tile_groups(11, 49, 2) == 2          # 22 items: 11 + 11, not 6 + 5
    assert tile_groups(8, 49, 2) == 1
    assert tile_groups(3, 1, 2) == 1            # one tile: nothing to split
    assert tile_groups(1, 100, 3) == 3
