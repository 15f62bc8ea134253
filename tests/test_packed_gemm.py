"""The packed micro-kernel GEMM (kernels/_packed_gemm.py) against NumPy: tile kernels
(overwrite, accumulate, prefetching twins), panel packing with zero padding, odd K."""
import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from kernels import _packed_gemm as pg
from kernels._packed_gemm import MR, NR


@njit(cache=False)
def _gemm(a_pack, b_pack, c, Q, P, K, ldc, variant):
    """C (Q*MR, P*NR) = A @ B through the tile kernels; variant 1 accumulates onto C,
    2 / 3 the prefetching twins of 0 / 1."""
    for p in range(P):
        for q in range(Q):
            a0, b0, c0 = q * K * MR, p * K * NR, q * MR * ldc + p * NR
            if variant == 0:
                pg.mk_tile(a_pack, a0, b_pack, b0, c, c0, ldc, K)
            elif variant == 1:
                pg.mk_tile_acc(a_pack, a0, b_pack, b0, c, c0, ldc, K)
            elif variant == 2:
                pg.mk_tile_prefetch(a_pack, a0, b_pack, b0, c, c0, ldc, K)
            else:
                pg.mk_tile_acc_prefetch(a_pack, a0, b_pack, b0, c, c0, ldc, K)


def _pack_a(a, Q):
    """Rows of a in MR-row panels, a[(q*K + k)*MR + r], zero rows past M."""
    M, K = a.shape
    pad = np.zeros((Q * MR, K), np.float32)
    pad[:M] = a
    return np.ascontiguousarray(pad.reshape(Q, MR, K).transpose(0, 2, 1)).reshape(-1)


@pytest.mark.parametrize("variant", [0, 1, 2, 3], ids=["tile", "acc", "tile-pf", "acc-pf"])
@pytest.mark.parametrize("M,K,C", [(4, 1, 24), (5, 37, 30), (13, 300, 100)])
def test_tile_kernels_match_numpy(M, K, C, variant):
    rng = np.random.default_rng(M * K)
    a = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((C, K)).astype(np.float32)    # B = w.T: columns are rows of w
    Q, P = -(-M // MR), -(-C // NR)
    b_pack = pg.pack_row_panels(w, C, 1, np.full(P * K * NR, np.nan, np.float32))
    c0 = rng.standard_normal((Q * MR, P * NR)).astype(np.float32)
    c = c0.copy()
    _gemm(_pack_a(a, Q), b_pack, c.reshape(-1), Q, P, K, P * NR, variant)
    want = np.zeros_like(c0)
    want[:M, :C] = a.astype(np.float64) @ w.T.astype(np.float64)
    if variant in (1, 3):
        want += c0
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-4 * np.sqrt(K))


@pytest.mark.parametrize("nr", sorted({NR, pg.GATHER_NR}))
@pytest.mark.parametrize("G,R,K", [(3, 30, 5), (2, 2 * NR + 21, 37), (1, NR, 3 * 16)])
def test_row_panels_layout_and_padding(G, R, K, nr):
    """pack_row_panels: group g, panel p, k, j holds w[g*R + p*nr + j, k]; 0 past the group.
    Sizes with whole register-transposed blocks and partial ones at both edges; the
    recurrent panel width NR and conv2d's GATHER_NR."""
    w = np.arange(G * R * K, dtype=np.float32).reshape(G * R, K) + 1
    P = -(-R // nr)
    out = pg.pack_row_panels(w, R, G, np.full(G * P * K * nr, np.nan, np.float32), nr)
    out = out.reshape(G, P, K, nr)
    for g in range(G):
        for p in range(P):
            for j in range(nr):
                u = p * nr + j
                want = w[g * R + u] if u < R else np.zeros(K, np.float32)
                np.testing.assert_array_equal(out[g, p, :, j], want)


@pytest.mark.parametrize("nr", sorted({NR, pg.GATHER_NR}))
@pytest.mark.parametrize("K,C", [(7, 50), (pg.COL_PACK_ROWS * 2 + 3, 2 * NR), (1, 5)])
def test_col_panels_layout_and_padding(K, C, nr):
    """Every entry written once (NaN-filled output), zero past C; K past several row blocks
    with a partial last one; C a whole number of panels or a partial last panel."""
    w = np.arange(K * C, dtype=np.float32).reshape(K, C) + 1
    P = -(-C // nr)
    out = pg.pack_col_panels(w, np.full(P * K * nr, np.nan, np.float32), nr).reshape(P, K, nr)
    full = np.zeros((K, P * nr), np.float32)
    full[:, :C] = w
    np.testing.assert_array_equal(out, full.reshape(K, P, nr).transpose(1, 0, 2))


def test_tile_kernel_rejects_other_dtypes():
    """Only float32 operands type-check: a float64 array is a typing error, not silent
    reinterpretation of its bytes."""
    a = np.zeros(MR * 3)
    with pytest.raises(TypingError):
        _gemm(a, np.zeros(NR * 3, np.float32), np.zeros(MR * NR, np.float32), 1, 1, 3, NR, 0)


@pytest.mark.parametrize("lanes", [8, 16])
@pytest.mark.parametrize("prefetch,accumulate", [(0, False), (256, True)])
def test_both_vector_widths_match_numpy(lanes, prefetch, accumulate):
    """The kernel at both widths the module picks from (AVX2 4 x 24, AVX-512 4 x 48), whatever
    this host runs: an AVX-512 host must still build a correct AVX2 tile and vice versa
    (LLVM lowers the other width in halves or pairs)."""
    nr = 3 * lanes
    kern = pg._make_tile_kernel(prefetch, accumulate, MR, nr, lanes)

    @njit(cache=False)
    def gemm(a_pack, b_pack, c, Q, P, K, ldc):
        for p in range(P):
            for q in range(Q):
                kern(a_pack, q * K * MR, b_pack, p * K * nr, c, q * MR * ldc + p * nr, ldc, K)

    rng = np.random.default_rng(lanes + prefetch)
    M, K, C = 9, 37, nr + 5
    Q, P = -(-M // MR), -(-C // nr)
    a = rng.standard_normal((M, K)).astype(np.float32)
    w = np.zeros((P * nr, K), np.float32)
    w[:C] = rng.standard_normal((C, K))
    b_pack = np.ascontiguousarray(w.reshape(P, nr, K).transpose(0, 2, 1)).reshape(-1)
    c0 = rng.standard_normal((Q * MR, P * nr)).astype(np.float32)
    c = c0.copy()
    gemm(_pack_a(a, Q), b_pack, c.reshape(-1), Q, P, K, P * nr)
    want = np.zeros_like(c0)
    want[:M, :C] = a.astype(np.float64) @ w[:C].T.astype(np.float64)
    if accumulate:
        want += c0
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-4 * np.sqrt(K))


def test_tile_width_follows_the_target():
    """NR is three vectors of the target's float32 lanes (8 without AVX-512F, 16 with it)."""
    assert pg._VW in (8, 16) and NR == 3 * pg._VW and MR == 4
    assert pg.PREFETCH_AHEAD % 16 == 0


@pytest.mark.parametrize("lanes", [8, 16])
def test_gather_tile_reads_b_rows_at_offsets(lanes):
    """The gather variant (direct convolution's forward): row k of B starts at
    ``b_off + taps[k]``, unaligned and overlapping rows included; both vector widths."""
    nr = 3 * lanes
    kern = pg._make_tile_kernel(0, False, MR, nr, lanes, gather="b")

    @njit(cache=False)
    def tile(a, b, b_off, taps, c, ldc, K):
        kern(a, 0, b, b_off, taps, c, 1, ldc, K)

    rng = np.random.default_rng(lanes)
    K = 11
    a = rng.standard_normal(K * MR).astype(np.float32)
    b = rng.standard_normal(500).astype(np.float32)
    taps = np.array([0, 1, 2, 3, 60, 61, 5, 200, 7, 100, 300], np.int64)
    ldc = nr + 3
    c = np.full(1 + MR * ldc, np.nan, np.float32)
    tile(a, b, 9, taps, c, ldc, K)
    rows = np.stack([b[9 + t: 9 + t + nr] for t in taps]).astype(np.float64)
    want = a.reshape(K, MR).T.astype(np.float64) @ rows
    got = c[1:].reshape(MR, ldc)[:, :nr]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # a read-only offset table types too (the conv plans keep theirs read-only)
    taps.flags.writeable = False
    tile(a, b, 9, taps, c, ldc, K)
    np.testing.assert_allclose(c[1:].reshape(MR, ldc)[:, :nr], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lanes", [8, 16])
def test_dot_tile_accumulates_lane_sums(lanes):
    """dot_tile: acc[o + i*ldo + j*VW + l] += sum_m d[i*ldd + m*VW + l] * b[taps[t0 + j] +
    m*VW + l], accumulated onto what acc held; both vector widths."""
    MI, NJ = pg.DOT_MI, pg.DOT_NJ
    kern = pg._make_dot_tile_kernel(MI, NJ, lanes)

    @njit(cache=False)
    def run(d, ldd, b, taps, acc, ldo, F):
        kern(d, 2, ldd, b, 3, taps, 1, acc, 5, ldo, F)

    rng = np.random.default_rng(lanes)
    F, ldd = 5 * lanes, 5 * lanes + 7
    d = rng.standard_normal(2 + MI * ldd).astype(np.float32)
    b = rng.standard_normal(400).astype(np.float32)
    taps = np.array([99, 0, 17, 3, 150, 77], np.int64)      # the tile reads taps[1:5]
    ldo = NJ * lanes + 4
    acc0 = rng.standard_normal(5 + MI * ldo).astype(np.float32)
    acc = acc0.copy()
    run(d, ldd, b, taps, acc, ldo, F)
    for i in range(MI):
        for j in range(NJ):
            rows = d[2 + i * ldd: 2 + i * ldd + F] * b[3 + taps[1 + j]: 3 + taps[1 + j] + F]
            want = acc0[5 + i * ldo + j * lanes: 5 + i * ldo + (j + 1) * lanes] + \
                rows.astype(np.float64).reshape(-1, lanes).sum(axis=0)
            got = acc[5 + i * ldo + j * lanes: 5 + i * ldo + (j + 1) * lanes]
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    untouched = np.ones(acc.size, bool)
    for i in range(MI):
        untouched[5 + i * ldo: 5 + i * ldo + NJ * lanes] = False
    np.testing.assert_array_equal(acc[untouched], acc0[untouched])


@pytest.mark.parametrize("lanes", [8, 16])
@pytest.mark.parametrize("accumulate", [False, True])
def test_gather_a_tile_reads_a_at_row_plus_tap_offsets(lanes, accumulate):
    """The gather-A variant (conv2d v8): A's (k, r) value is a[rows[row0 + r] + taps[k]], B row
    k is b[b_off + k*ldb : ... + NR] of a row-major matrix; overwrite and accumulate."""
    nr = 3 * lanes
    kern = pg._make_tile_kernel(0, accumulate, MR, nr, lanes, gather="a")

    @njit(cache=False)
    def tile(a, rows, taps, b, ldb, c, ldc, K):
        kern(a, rows, 2, taps, b, 3, ldb, c, 1, ldc, K)

    rng = np.random.default_rng(lanes + accumulate)
    K, ldb, ldc = 13, nr + 5, nr + 2
    a = rng.standard_normal(300).astype(np.float32)
    rows = np.array([7, 7, 0, 50, 9, 120, 33], np.int64)     # the tile uses rows[2:6]
    taps = rng.integers(0, 150, K).astype(np.int64)
    b = rng.standard_normal(3 + K * ldb).astype(np.float32)
    c0 = rng.standard_normal(1 + MR * ldc).astype(np.float32)
    c = c0.copy()
    tile(a, rows, taps, b, ldb, c, ldc, K)
    A = np.array([[a[rows[2 + r] + taps[k]] for r in range(MR)] for k in range(K)], np.float64)
    B = np.stack([b[3 + k * ldb: 3 + k * ldb + nr] for k in range(K)]).astype(np.float64)
    want = A.T @ B + (c0[1:].reshape(MR, ldc)[:, :nr] if accumulate else 0)
    np.testing.assert_allclose(c[1:].reshape(MR, ldc)[:, :nr], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(c[1:].reshape(MR, ldc)[:, nr:], c0[1:].reshape(MR, ldc)[:, nr:])


@pytest.mark.parametrize("rows,cols,lds,ldd", [(3, 5, 5, 3), (16, 16, 16, 16), (17, 35, 40, 21),
                                                (100, 64, 64, 112), (2 * NR, 33, 33, 2 * NR)])
def test_transpose_into(rows, cols, lds, ldd):
    """Whole register blocks and element-by-element edges; strided source and destination,
    destination floats past ``rows`` untouched."""
    rng = np.random.default_rng(rows * cols)
    src = rng.standard_normal(4 + rows * lds).astype(np.float32)
    dst = np.full(6 + cols * ldd, np.nan, np.float32)
    pg.transpose_into(src, 4, lds, rows, cols, dst, 6, ldd)
    m = src[4:].reshape(rows, lds)[:, :cols]
    d = dst[6:].reshape(cols, ldd)
    np.testing.assert_array_equal(d[:, :rows], m.T)
    assert np.isnan(d[:, rows:]).all() and np.isnan(dst[:6]).all()


@pytest.mark.parametrize("lanes", [8, 16])
def test_transpose_block_both_widths(lanes):
    kern = pg._make_transpose_kernel(lanes)

    @njit(cache=False)
    def run(src, lds, dst, ldd):
        kern(src, 1, lds, dst, 2, ldd)

    src = np.arange(1 + lanes * (lanes + 3), dtype=np.float32)
    dst = np.zeros(2 + lanes * (lanes + 1), np.float32)
    run(src, lanes + 3, dst, lanes + 1)
    m = src[1:].reshape(lanes, lanes + 3)[:, :lanes]
    np.testing.assert_array_equal(dst[2:].reshape(lanes, lanes + 1)[:, :lanes], m.T)
