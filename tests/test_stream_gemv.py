"""The streamed GEMV pieces of numba's recurrent v7 (kernels/_stream_gemv.py) vs NumPy."""
import numpy as np
import pytest

from kernels._stream_gemv import axpy_cols, dot_rows


@pytest.mark.parametrize("N", [1, 2, 3])
@pytest.mark.parametrize("j0,j1", [(0, 0), (0, 3), (2, 11), (5, 21)])
def test_dot_rows_matches_numpy(N, j0, j1):
    """Row ranges shorter than, equal to and past the 4-row block, written at an offset; the
    rest of the output is left alone."""
    rng = np.random.default_rng(N * 100 + j1)
    w = rng.standard_normal((24, 37)).astype(np.float32)
    x = rng.standard_normal((N, 37)).astype(np.float32)
    out = np.full((N, 40), 7.0, np.float32)
    dot_rows(w, j0, j1, x, out, 3)
    want = x.astype(np.float64) @ w[j0:j1].T.astype(np.float64)
    np.testing.assert_allclose(out[:, 3:3 + j1 - j0], want, rtol=1e-5, atol=1e-5)
    assert (out[:, :3] == 7).all() and (out[:, 3 + j1 - j0:] == 7).all()


@pytest.mark.parametrize("N", [1, 2, 3])
@pytest.mark.parametrize("M", [1, 4, 11])
@pytest.mark.parametrize("c0,c1", [(0, 0), (0, 37), (5, 21)])
def test_axpy_cols_matches_numpy(N, M, c0, c1):
    """Row counts below, at and past the 4-row block; the output is overwritten, not added
    to, and only its first c1 - c0 columns are touched."""
    rng = np.random.default_rng(N * 100 + M)
    w = rng.standard_normal((M, 37)).astype(np.float32)
    g = rng.standard_normal((N, M)).astype(np.float32)
    out = np.full((N, 40), 7.0, np.float32)
    axpy_cols(w, g, c0, c1, out)
    want = g.astype(np.float64) @ w[:, c0:c1].astype(np.float64)
    np.testing.assert_allclose(out[:, :c1 - c0], want, rtol=1e-5, atol=1e-5)
    assert (out[:, c1 - c0:] == 7).all()
