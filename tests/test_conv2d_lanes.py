"""conv2d numba v9: Winograd with channels along the vector lanes (kernels/_wino_lanes.py).

v9's lane transforms run conv2d's scalar 1-D transforms on vectors (the same operations in the
same order), so each transformed value must be the same bits as v4-v8's; the layer as a whole
is checked against the float64 reference on small cases that reach every branch: F(2x2, 3x3),
F(4x4, 3x3), F(2x2, 5x5), padding 0 .. R-1, odd and even output sizes (part-used edge tiles),
the micro-kernel GEMMs at every panel width (channels multiples of 64, 48 or 32 on AVX-512) and
the BLAS ones (other multiples of the vector width), chunks of images.
"""
import numpy as np
import pytest

from kernels import _wino_lanes as wl
from kernels import conv2d as conv2d_module
from kernels import registry
from kernels.conv2d import conv_geometry, lane_winograd_applies
from kernels._packed_gemm import GATHER_NR
from test_conv2d import check_against_reference

VW = wl.VW


@pytest.fixture
def lanes_everywhere(monkeypatch):
    """Small cases take v9's Winograd (not the direct, gathered or batched paths first)."""
    monkeypatch.setattr(conv2d_module, "_WINO_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv2d_module, "_BATCHED_MAX_COLUMNS", 0)
    monkeypatch.setattr(conv2d_module, "_DIRECT_MAX_TAPS", 0)


def spy(monkeypatch, names):
    ran = []
    for name in names:
        real = getattr(wl, name)
        monkeypatch.setattr(wl, name, lambda *a, _r=real, _n=name: ran.append(_n) or _r(*a))
    return ran


# (N, C, H, W, K, padding, R, m): m = 4 asks for F(4x4, 3x3); the micro-kernel runs the forward's
# GEMMs where a panel width divides K, backward-data's and the weight gradient's where one divides C
LANE_CASES = [
    (2, VW, 5, 7, 2 * VW, 1, 3, 2), (1, VW, 6, 6, VW, 0, 3, 2), (3, 2 * VW, 7, 4, VW, 2, 3, 4),
    (2, VW, 9, 8, VW, 1, 3, 4), (2, VW, 6, 7, VW, 2, 5, 2), (1, VW, 5, 5, 3 * VW, 4, 5, 2),
    (2, VW, 8, 5, GATHER_NR, 1, 3, 4), (2, 3 * VW, 7, 7, GATHER_NR, 2, 5, 2),
    (1, VW, 1, 1, GATHER_NR, 1, 3, 2), (1, VW, 2, 3, VW, 2, 3, 4),
    (2, GATHER_NR, 6, 9, VW, 1, 3, 4), (1, 2 * GATHER_NR, 5, 4, GATHER_NR, 2, 5, 2),
    (3, GATHER_NR, 11, 10, 2 * VW, 0, 3, 2),
    (2, GATHER_NR, 24, 23, GATHER_NR, 1, 3, 2),     # 288 tiles: TILE_KC-deep weight passes
    (2, 6 * VW, 7, 6, 5 * VW, 2, 5, 2), (1, 5 * VW, 6, 6, 6 * VW, 1, 3, 4),   # 48 / none
]


@pytest.mark.parametrize("case", LANE_CASES, ids=lambda c: "n{}c{}h{}w{}k{}p{}r{}m{}".format(*c))
def test_lanes_match_reference(case, lanes_everywhere, monkeypatch):
    N, C, H, W, K, padding, R, m = case
    monkeypatch.setattr(conv2d_module, "_LANE_WINO4_MIN_TILES", 0 if m == 4 else 1e9)
    x_shape, w_shape = (N, C, H, W), (K, C, R, R)
    g = conv_geometry(x_shape, w_shape, padding=padding)
    assert lane_winograd_applies(g, np.float32)
    ran = spy(monkeypatch, ["fused_out", "gemms_nn", "gemms_nt", "weight_gemms", "gemms_tn_acc",
                            "weights_t", "transpose_positions"])
    check_against_reference(9, x_shape, w_shape, dict(padding=padding), np.dtype(np.float32),
                            True, seed=sum(case), terms=4 if (R, m) == (3, 2) else 16)
    # forward fused where K is whole panels, backward-data where C is (through a transposed
    # copy of the rotated filters' transforms), the weight gradient where C is
    fwd, bwd = wl.panel_width(K) > 0, wl.panel_width(C) > 0
    assert ran.count("fused_out") == fwd + bwd
    assert ran.count("gemms_nn") == 1 - fwd
    assert ran.count("gemms_nt") == 1 - bwd
    assert ran.count("transpose_positions") == bwd
    assert ran.count("weight_gemms") == (2 if bwd else 0)       # two weight gradients
    assert ran.count("gemms_tn_acc") == (0 if bwd else 2)
    assert ran.count("weights_t") == 2                  # forward and rotated (backward-data)


def test_lanes_in_chunks_of_images(lanes_everywhere, monkeypatch):
    monkeypatch.setattr(conv2d_module, "_WINO_CHUNK_BYTES", 1)     # one image per chunk
    for C in (VW, GATHER_NR):        # BLAS and micro-kernel weight gradients
        ran = spy(monkeypatch, ["gemms_tn_acc", "weight_gemms", "nhwc_to_nchw"])
        check_against_reference(9, (3, C, 6, 5), (GATHER_NR, C, 3, 3), dict(padding=1),
                                np.dtype(np.float32), True, seed=5, terms=16)
        assert len(ran) == 12 and ran.count("nhwc_to_nchw") == 6


def test_v9_takes_4x4_tiles_from_64_tiles_on():
    def m(N, H, R=3):
        g = conv_geometry((N, 128, H, H), (256, 128, R, R), padding=R // 2)
        return conv2d_module._lane_tile(g, g.P, g.Q)
    assert m(2, 14) == 2 and m(4, 14) == 4          # 2 x 16 and 4 x 16 tiles
    assert m(1, 32) == 4 and m(1, 28) == 2          # 64 and 49
    assert m(64, 28, R=5) == 2                      # 5x5: always F(2x2, 5x5)


def test_panel_widths():
    assert wl.PANELS == tuple(sorted({GATHER_NR, 3 * VW, 2 * VW}, reverse=True))
    assert wl.panel_width(12 * VW) == max(wl.PANELS)
    assert wl.panel_width(3 * VW) == 3 * VW and wl.panel_width(2 * VW) == min(wl.PANELS)
    assert wl.panel_width(VW) == wl.panel_width(5 * VW) == 0


def test_lanes_apply_to_float32_with_whole_lane_blocks_of_channels():
    def applies(C, K, R=3, dtype=np.float32, **hp):
        return lane_winograd_applies(conv_geometry((2, C, 14, 14), (K, C, R, R), **hp), dtype)
    assert applies(64, 128, padding=1) and applies(64, 192, R=5, padding=2)
    assert applies(64, 128) and applies(64, 128, R=5, padding=4)
    assert not applies(64, 128, dtype=np.float64, padding=1)
    assert not applies(64, 120 if VW == 16 else 68, padding=1)     # K not whole lane blocks
    assert not applies(64, 128, padding=3)                         # dout's padding R-1-p < 0
    assert not applies(64, 128, stride=2, padding=1)               # not Winograd at all


def test_v9_is_v8_outside_its_winograd(monkeypatch):
    """float64 and a layer whose K is not whole lane blocks run v8's path: the same bits."""
    rng = np.random.default_rng(0)
    for dtype, K in ((np.float64, 64), (np.float32, 40)):
        x = rng.standard_normal((2, 32, 10, 10)).astype(dtype)
        w = rng.standard_normal((K, 32, 3, 3)).astype(dtype)
        for op, args in (("conv2d_forward", (x, w, None)),):
            v8 = registry.get(op, "numba", 8)(*args, padding=1)
            v9 = registry.get(op, "numba", 9)(*args, padding=1)
            np.testing.assert_array_equal(v9, v8)


# ---- the transforms themselves: the same bits as the scalar ones of v4-v8 ----
@pytest.mark.parametrize("R,m", [(3, 2), (3, 4), (5, 2)])
def test_lane_transforms_are_the_scalar_bits(R, m):
    rng = np.random.default_rng(R * m)
    N, C, K, H, W, p = 2, 2 * VW, 2 * VW, 9, 7, R // 2
    g = conv_geometry((N, C, H, W), (K, C, R, R), padding=p)
    a, P, Q = m + R - 1, g.P, g.Q
    TP, TQ = -(-P // m), -(-Q // m)
    T, XI = N * TP * TQ, (m + R - 1) ** 2
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((K, C, R, R)).astype(np.float32)
    k = conv2d_module._wino_constants(np.float32)
    nt = conv2d_module._threads()           # per-thread scratch of the scalar kernels
    locs = np.zeros((nt, max(T, C, K), XI), np.float32)
    pads = np.zeros((nt, m * TP + R - 1, m * TQ + R - 1), np.float32)
    # weights: U (XI, K, C) scalar, U^T (XI, C, K) in lanes
    U = np.empty((XI, K, C), np.float32)
    conv2d_module._wino_weights(w, U, m, locs, k)
    UT = np.empty((XI, C, K), np.float32)
    kind = conv2d_module._LANE_OUT[(m, R)]
    wl.weights_t(w, np.empty(C * R * R * K, np.float32), UT.reshape(-1), a, 0, kind, K)
    np.testing.assert_array_equal(UT, U.transpose(0, 2, 1))
    # the rotated filters' transform is the transform of the rotated filters
    wl.weights_t(w, np.empty(C * R * R * K, np.float32), UT.reshape(-1), a, 1, kind, K)
    conv2d_module._wino_weights(np.ascontiguousarray(w[:, :, ::-1, ::-1]), U, m, locs, k)
    np.testing.assert_array_equal(UT, U.transpose(0, 2, 1))
    # inputs: V (XI, C, T) scalar, V^T (XI, T, C) in lanes
    V = np.empty((XI, C, T), np.float32)
    conv2d_module._wino_inputs(x, 0, V, p, p, TP, TQ, R, m, pads, locs, k)
    VT = conv2d_module._lane_transformed(x, 0, N, TP, TQ, m, R, p, p, "a",
                                         conv2d_module._LANE_IN[(m, R)])
    np.testing.assert_array_equal(VT, V.transpose(0, 2, 1))
    # dout: Dy (XI, K, T) scalar, in lanes (XI, T, K)
    dout = rng.standard_normal((N, K, P, Q)).astype(np.float32)
    pads_d = np.zeros((nt, m * TP, m * TQ), np.float32)
    Dy = np.empty((XI, K, T), np.float32)
    conv2d_module._wino_dout(dout, 0, Dy, TP, TQ, R, m, pads_d, locs, k)
    DT = conv2d_module._lane_transformed(dout, 0, N, TP, TQ, m, R, 0, 0, "b",
                                         conv2d_module._LANE_DOUT[(m, R)])
    np.testing.assert_array_equal(DT, Dy.transpose(0, 2, 1))
    # outputs: A^T M A + bias from the same M
    M = rng.standard_normal((XI, K, T)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    out = np.empty((N, K, P, Q), np.float32)
    conv2d_module._wino_outputs(M, b, out, 0, TP, TQ, R, m, locs, k)
    o = np.empty(N * TP * m * TQ * m * K, np.float32)
    wl.tiles_out(np.ascontiguousarray(M.transpose(0, 2, 1)).reshape(-1), b, N, K, o, TP, TQ,
                 m, a, kind)
    out_lanes = np.empty_like(out)
    wl.nhwc_to_nchw(o, TP * m, TQ * m, out_lanes, 0, N)
    np.testing.assert_array_equal(out_lanes, out)


def test_lane_weight_grad23_is_the_scalar_bits():
    rng = np.random.default_rng(7)
    K, C = 3, 3 * VW
    dU = rng.standard_normal((16, K, C)).astype(np.float32)
    start = rng.standard_normal((K, C, 3, 3)).astype(np.float32)
    one, lanes = start.copy(), start.copy()
    nt = conv2d_module._threads()
    conv2d_module._wino_weight_grad(one, dU, 2, np.zeros((nt, C, 16), np.float32),
                                    conv2d_module._wino_constants(np.float32))
    wl.weight_grad23(dU, lanes, np.zeros((nt, wl.WGRAD23_STAGE), np.float32))
    np.testing.assert_array_equal(lanes, one)
