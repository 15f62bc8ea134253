"""conv2d kernels: every numba version against the NumPy reference (hypothesis), the
reference against central differences, a naive formula and PyTorch, and argument checks."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from kernels import registry
from kernels import conv2d as conv2d_module
from kernels.conv2d import (batched_im2col_applies, conv2d_forward_numpy, conv2d_output_shape,
                            conv_geometry, direct_applies, pointwise_applies, winograd_applies)
from util import assert_close, numerical_grad

OPS = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight")
NUMBA_VERSIONS = registry.versions("conv2d_forward", "numba")
ALL_KERNELS = [(b, v) for b in ("numpy", "numba") for v in registry.versions("conv2d_forward", b)]


def kernels_of(backend, version):
    return tuple(registry.get(op, backend, version) for op in OPS)


def reference(x, w, b, dout, **hp):
    """Forward, dx, dweight, dbias of the NumPy reference (dweight/dbias from zero)."""
    fwd, bwd_data, bwd_weight = kernels_of("numpy", 1)
    out = fwd(x, w, b, **hp)
    dx = bwd_data(dout, w, x.shape, **hp)
    dw, db = np.zeros_like(w), np.zeros_like(w, shape=w.shape[0])
    bwd_weight(dw, db, dout, x, **hp)
    return out, dx, dw, db


def test_every_op_has_the_same_numba_versions():
    assert NUMBA_VERSIONS, "no numba conv2d kernels registered"
    for op in OPS:
        assert registry.versions(op, "numba") == NUMBA_VERSIONS, op
        assert 1 in registry.versions(op, "numpy"), op


# ----------------------------------------------------------------------------
# numba versions vs the reference, random shapes
# ----------------------------------------------------------------------------
@st.composite
def conv_cases(draw):
    N, C, K = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))   # may exceed the filter
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    # smallest input with an output of at least 1, plus some
    H = max(1, dilation[0] * (R - 1) + 1 - 2 * padding[0]) + draw(st.integers(0, 6))
    W = max(1, dilation[1] * (S - 1) + 1 - 2 * padding[1]) + draw(st.integers(0, 6))
    as_int = draw(st.booleans())   # hyper-parameters given as ints where both halves agree
    hp = {k: (v[0] if as_int and v[0] == v[1] else v)
          for k, v in (("stride", stride), ("padding", padding), ("dilation", dilation))}
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return (N, C, H, W), (K, C, R, S), hp, np.dtype(dtype), bias, seed


def tolerances(dtype, terms):
    """float32 results vs the float64 reference of the same inputs: the error of a sum of
    ``terms`` products of numbers in [-1, 1] grows with ``terms``."""
    if dtype == np.float64:
        return dict(atol=1e-12 * terms + 1e-12, rtol=1e-10)
    return dict(atol=1e-6 * terms + 1e-6, rtol=1e-4)


@pytest.mark.parametrize("version", NUMBA_VERSIONS)
@given(case=conv_cases())
def test_numba_matches_reference(version, case):
    check_against_reference(version, *case)


def check_against_reference(version, x_shape, w_shape, hp, dtype, has_bias, seed, terms=1):
    """numba ``version``'s forward, dx and accumulated dweight/dbias vs the float64 reference;
    ``terms`` scales the tolerances (Winograd's transforms add up to 4x4 values per term)."""
    rng = np.random.default_rng(seed)
    N, C, H, W = x_shape
    K, _, R, S = w_shape
    _, _, P, Q = conv2d_output_shape(x_shape, w_shape, **hp)
    x = rng.uniform(-1, 1, x_shape).astype(dtype)
    w = rng.uniform(-1, 1, w_shape).astype(dtype)
    b = rng.uniform(-1, 1, K).astype(dtype) if has_bias else None
    dout = rng.uniform(-1, 1, (N, K, P, Q)).astype(dtype)
    # reference in float64 on the same (rounded) numbers
    f64 = [a.astype(np.float64) if a is not None else None for a in (x, w, b, dout)]
    out_r, dx_r, dw_r, db_r = reference(*f64, **hp)

    fwd, bwd_data, bwd_weight = kernels_of("numba", version)
    out = fwd(x, w, b, **hp)
    assert out.dtype == dtype and out.shape == (N, K, P, Q)
    assert_close(f"out[v{version}]", out, out_r, **tolerances(dtype, terms * (C * R * S + 1)))

    dx = bwd_data(dout, w, x_shape, **hp)
    assert dx.dtype == dtype
    assert_close(f"dx[v{version}]", dx, dx_r, **tolerances(dtype, terms * K * R * S))

    # accumulation: onto existing values, twice -> twice the gradient
    dw0 = rng.uniform(-1, 1, w_shape).astype(dtype)
    db0 = rng.uniform(-1, 1, K).astype(dtype)
    dw, db = dw0.copy(), db0.copy()
    tol = tolerances(dtype, terms * (2 * N * P * Q + 1))
    bwd_weight(dw, db, dout, x, **hp)
    assert_close(f"dweight[v{version}]", dw, dw0 + dw_r, **tol)
    assert_close(f"dbias[v{version}]", db, db0 + db_r, **tol)
    bwd_weight(dw, db, dout, x, **hp)
    assert_close(f"dweight twice[v{version}]", dw, dw0 + 2 * dw_r, **tol)
    assert_close(f"dbias twice[v{version}]", db, db0 + 2 * db_r, **tol)


# numba v4 runs Winograd F(2x2, 3x3) / F(2x2, 5x5) (v5: F(4x4, 3x3) / F(2x2, 5x5)) only on
# 3x3 / 5x5 stride-1 undilated convolutions with enough channels, which the random cases above
# never draw. Here the channel
# gate is lowered so small cases run it: odd and even P and Q (half-used edge tiles), padding
# 0..4 (tiles that read only padding), one output pixel, channels enough for real GEMMs.
WINO_CASES = [(1, 1, 5, 5, 1, 0), (2, 3, 5, 7, 4, 1), (3, 2, 6, 6, 5, 2), (2, 4, 7, 4, 3, (0, 2)),
              (1, 5, 9, 8, 2, 3), (2, 16, 13, 13, 24, 1), (1, 3, 1, 1, 2, 2), (2, 2, 6, 5, 3, 4)]


@pytest.fixture
def winograd_everywhere(monkeypatch):
    monkeypatch.setattr(conv2d_module, "_WINO_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv2d_module, "_BATCHED_MAX_COLUMNS", 0)   # (small cases go there first)
    monkeypatch.setattr(conv2d_module, "_WINO4_MIN_TILES_PER_CHANNEL", 0)   # v5: F(4x4, 3x3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("version,R", [(4, 3), (4, 5), (5, 3)])
@pytest.mark.parametrize("case", WINO_CASES, ids=lambda c: "n{}c{}h{}w{}k{}p{}".format(*c))
def test_winograd_matches_reference(case, version, R, dtype, winograd_everywhere):
    N, C, H, W, K, padding = case
    hp = dict(stride=1, padding=padding, dilation=1)
    x_shape, w_shape = (N, C, H, W), (K, C, R, R)
    assert winograd_applies(conv_geometry(x_shape, w_shape, **hp))
    # the transforms add up to a*a numbers per term (a = 6 for F(2x2, 5x5) and F(4x4, 3x3):
    # B^T entries up to 5)
    a = 4 if (version, R) == (4, 3) else 6
    check_against_reference(version, x_shape, w_shape, hp, dtype, True, seed=sum(case[:5]),
                            terms=4 if a == 4 else 16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("version,R", [(5, 3), (4, 5)])
def test_winograd_weight_grad_lanes_are_the_one_filter_bits(version, R, dtype, monkeypatch,
                                                           winograd_everywhere):
    """The 6 x 6 inverse weight transform, _WL filters at a time (37 channels: full lane
    blocks and a partial one), adds exactly what the one-filter code adds, and it ran."""
    rng = np.random.default_rng(R)
    g = conv_geometry((2, 37, 9, 9), (5, 37, R, R), padding=R // 2)
    plan = conv2d_module._wino_plan(g, dtype, tile3=4 if version == 5 else 2)
    assert plan.XI == 36
    ran = []
    real = conv2d_module._wino_weight_grad6
    monkeypatch.setattr(conv2d_module, "_wino_weight_grad6",
                        lambda *a: ran.append(1) or real(*a))
    check_against_reference(version, (2, 37, 9, 9), (5, 37, R, R), dict(padding=R // 2), dtype,
                            True, seed=R, terms=16)
    assert ran
    dU = rng.standard_normal((36, 5, 37)).astype(dtype)
    start = rng.standard_normal((5, 37, R, R)).astype(dtype)
    one, lanes = start.copy(), start.copy()
    k = conv2d_module._wino_constants(dtype)
    pads, locs = conv2d_module._wino_scratch(plan, g, dtype)
    conv2d_module._wino_weight_grad(one, dU, plan.m, locs, k)
    Cp = -(-37 // conv2d_module._WL) * conv2d_module._WL
    real(lanes, dU, R, np.zeros((conv2d_module._threads(), 36 * Cp), dtype),
         np.zeros((conv2d_module._threads(), R * R * conv2d_module._WL)), k)
    np.testing.assert_array_equal(lanes, one)


def test_winograd_in_chunks_of_images(monkeypatch, winograd_everywhere):
    # a chunk budget below one image's transform buffers: one image per chunk
    monkeypatch.setattr(conv2d_module, "_WINO_CHUNK_BYTES", 1)
    for version, R in ((4, 3), (4, 5), (5, 3)):
        g = conv_geometry((3, 4, 6, 5), (5, 4, R, R), padding=R // 2)
        assert conv2d_module._wino_plan(g, np.float64, tile3=4 if version == 5 else 2).nb == 1
        check_against_reference(version, (3, 4, 6, 5), (5, 4, R, R), dict(padding=R // 2),
                                np.float64, True, 7)


def test_winograd_workspace_is_reused_and_freed(winograd_everywhere):
    # scratch buffers survive between calls (no page faults per call) but never the results
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    fwd = registry.get("conv2d_forward", "numba", 4)
    out1 = fwd(x, w, None, padding=1)
    out2 = fwd(2 * x, w, None, padding=1)
    assert_close("out after a second call", out1, fwd(x, w, None, padding=1), atol=0, rtol=0)
    assert_close("2x input", out2, 2 * out1)
    # a 5x5 layer in between reshapes the same buffers
    w5 = rng.standard_normal((4, 3, 5, 5))
    assert_close("5x5", fwd(x, w5, None, padding=2), conv2d_forward_numpy(x, w5, None, 1, 2))
    assert_close("3x3 after 5x5", fwd(x, w, None, padding=1), out1, atol=0, rtol=0)
    assert conv2d_module._WORKSPACE.bufs
    conv2d_module.free_winograd_workspace()     # (free_conv2d_workspace's name before v7)
    assert not hasattr(conv2d_module._WORKSPACE, "bufs")


@pytest.mark.parametrize("hp,applies", [
    (dict(), True), (dict(padding=(2, 0)), True), (dict(stride=(1, 2)), False),
    (dict(dilation=2), False)])
@pytest.mark.parametrize("R", [3, 5])
def test_winograd_applies_to_3x3_and_5x5_stride_1(hp, applies, R):
    assert winograd_applies(conv_geometry((1, 32, 13, 13), (32, 32, R, R), **hp)) is applies
    assert not winograd_applies(conv_geometry((1, 32, 13, 13), (32, 32, R, R - 1), **hp))
    assert not winograd_applies(conv_geometry((1, 32, 13, 13), (32, 32, R + 1, R + 1), **hp))
    # few channels: v3 (the transforms would cost more than the GEMMs save)
    assert not winograd_applies(conv_geometry((1, 3, 13, 13), (64, 3, R, R), **hp))
    assert not winograd_applies(conv_geometry((1, 64, 13, 13), (16, 64, R, R), **hp))


def test_v5_takes_4x4_tiles_where_there_are_enough_tiles_per_channel():
    """F(4x4, 3x3) only in v5, only for 3x3, only with N * tiles >= 0.75 max(C, K) (measured:
    it lost at 13-14 px with N=8 and 256-384 channels, won at 28-56 px)."""
    def tile(x_shape, w_shape, tile3=4):
        return conv2d_module._wino_plan(conv_geometry(x_shape, w_shape, padding=w_shape[2] // 2),
                                        np.float32, tile3=tile3).m
    assert tile((4, 64, 28, 28), (128, 64, 3, 3)) == 4          # 4 * 49 tiles >= 96
    assert tile((4, 64, 28, 28), (128, 64, 3, 3), tile3=2) == 2  # v4
    assert tile((8, 384, 13, 13), (384, 384, 3, 3)) == 2        # 8 * 16 < 288
    assert tile((32, 384, 13, 13), (384, 384, 3, 3)) == 4       # 32 * 16 >= 288
    assert tile((8, 64, 28, 28), (64, 64, 5, 5)) == 2           # 5x5: F(2x2, 5x5)


@pytest.mark.parametrize("hp,applies", [
    (dict(), True), (dict(dilation=3), True), (dict(padding=1), False), (dict(stride=2), False)])
def test_pointwise_applies_to_1x1_stride_1_unpadded(hp, applies):
    assert pointwise_applies(conv_geometry((2, 8, 5, 5), (4, 8, 1, 1), **hp)) is applies
    assert not pointwise_applies(conv_geometry((2, 8, 5, 5), (4, 8, 1, 2), **hp))


# numba v4 with few output pixels (N*P*Q <= _BATCHED_MAX_COLUMNS, N >= 2): every image's im2col
# matrix side by side for one GEMM; the random cases above mostly land here, these pin it down
# with strides, dilations, padding and a non-square filter
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,w_shape,hp", [
    ((2, 3, 5, 7), (4, 3, 3, 3), dict(padding=1)),
    ((3, 2, 4, 6), (3, 2, 2, 3), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
    ((2, 5, 6, 6), (2, 5, 1, 1), dict(stride=2)),
    ((2, 2, 9, 9), (3, 2, 5, 5), dict(padding=2))])
@pytest.mark.parametrize("version", [4, 6])
def test_batched_im2col_matches_reference(x_shape, w_shape, hp, dtype, version, monkeypatch):
    """v4: serial gathers, BLAS-threaded GEMMs; v6: (image, channel) planes in parallel and
    the GEMMs split over numba's threads (which must run: spied)."""
    g = conv_geometry(x_shape, w_shape, **hp)
    assert batched_im2col_applies(g) and g.N * g.P * g.Q <= conv2d_module._BATCHED_MAX_COLUMNS
    ran = []
    for name in ("_im2col_batch_parallel", "_col2im_batch_parallel", "pool_matmul",
                 "pool_matmul_tn", "pool_matmul_nt_accumulate"):
        real = getattr(conv2d_module, name)
        monkeypatch.setattr(conv2d_module, name, lambda *a, _r=real, _n=name: ran.append(_n)
                            or _r(*a))
    check_against_reference(version, x_shape, w_shape, hp, dtype, True, seed=sum(x_shape))
    pool_path = {"_im2col_batch_parallel", "_col2im_batch_parallel", "pool_matmul",
                 "pool_matmul_tn", "pool_matmul_nt_accumulate"}
    assert set(ran) == (pool_path if version == 6 else set())


# numba v8's gathered micro-kernel on the few-output-pixel layers (float32): strides,
# dilations, padding, non-square filters, K and C*R*S off the tile sizes (partial panels and
# tiles on every side), one image, and VGG's 7x7 layer itself
GATHERED_CASES = [
    ((3, 2, 4, 6), (3, 2, 2, 3), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
    ((1, 5, 6, 6), (50, 5, 3, 3), dict(stride=2)),
    ((2, 40, 7, 7), (53, 40, 3, 3), dict(padding=1)),
    ((2, 41, 5, 6), (97, 41, 2, 4), dict(padding=(0, 2), dilation=(2, 1))),
    ((4, 256, 7, 7), (512, 256, 3, 3), dict(padding=1)),
]


@pytest.mark.parametrize("x_shape,w_shape,hp", GATHERED_CASES,
                         ids=lambda c: "x".join(map(str, c)) if isinstance(c, tuple) else None)
def test_gathered_matches_reference(x_shape, w_shape, hp, monkeypatch):
    """v8 runs its three gathered passes (spied) and matches the reference."""
    g = conv_geometry(x_shape, w_shape, **hp)
    assert conv2d_module.gathered_gemm_applies(g, np.float32)
    assert not direct_applies(g, np.float32)
    ran = []
    for name in ("_gathered_forward_tiles", "tile_gemm", "_gathered_col_rows"):
        real = getattr(conv2d_module, name)
        monkeypatch.setattr(conv2d_module, name, lambda *a, _r=real, _n=name: ran.append(_n)
                            or _r(*a))
    check_against_reference(8, x_shape, w_shape, hp, np.dtype(np.float32), True,
                            seed=sum(x_shape))
    # one forward, one backward-data, two weight gradients (accumulated twice): the backward
    # passes through tile_gemm, the weight gradient's col^T gathered first
    assert ran == ["_gathered_forward_tiles", "tile_gemm"] + ["_gathered_col_rows", "tile_gemm"] * 2


def test_gathered_applies_to_few_output_pixels_in_float32():
    def applies(x_shape, w_shape, dtype=np.float32, **hp):
        return conv2d_module.gathered_gemm_applies(conv_geometry(x_shape, w_shape, **hp), dtype)
    assert applies((4, 256, 7, 7), (512, 256, 3, 3), padding=1)        # N*P*Q = 196
    assert applies((1, 64, 9, 9), (8, 64, 3, 3), stride=2)              # one image
    assert not applies((4, 256, 7, 7), (512, 256, 3, 3), np.float64, padding=1)
    assert not applies((8, 256, 13, 13), (384, 256, 3, 3), padding=1)  # 1352 pixels
    assert not applies((2, 512, 7, 7), (128, 512, 1, 1))               # pointwise


def test_batched_im2col_applies_to_few_output_pixels():
    assert batched_im2col_applies(conv_geometry((2, 256, 7, 7), (512, 256, 3, 3), padding=1))
    assert not batched_im2col_applies(conv_geometry((1, 256, 7, 7), (512, 256, 3, 3), padding=1))
    assert not batched_im2col_applies(conv_geometry((8, 256, 13, 13), (384, 256, 3, 3), padding=1))
    assert not batched_im2col_applies(conv_geometry((2, 512, 7, 7), (128, 512, 1, 1)))  # pointwise


# numba v7's direct convolution (float32, stride 1, C*R*S <= 288): padding on either side,
# dilation, non-square filters, K and C*R*S not multiples of the 4-wide tiles, one image,
# several forward blocks per row and rows per block, several weight-gradient chunks and
# channel groups (K=40: 10 tiles of 4 > 8 per group), VGG's first layer itself
DIRECT_CASES = [
    ((1, 1, 5, 7), (5, 1, 3, 2), dict(padding=(1, 0), dilation=(2, 1))),
    ((2, 3, 9, 8), (6, 3, 5, 5), dict(padding=2)),
    ((3, 2, 13, 6), (7, 2, 1, 3), dict(padding=(0, 1))),
    ((2, 4, 7, 61), (4, 4, 2, 2), dict(dilation=2, padding=(1, 3))),
    ((2, 3, 30, 30), (40, 3, 3, 3), dict(padding=1)),
    ((1, 32, 6, 6), (3, 32, 3, 3), dict(padding=1)),
    ((2, 3, 56, 56), (64, 3, 3, 3), dict(padding=1)),
]


@pytest.mark.parametrize("x_shape,w_shape,hp", DIRECT_CASES,
                         ids=lambda c: "x".join(map(str, c)) if isinstance(c, tuple) else None)
def test_direct_matches_reference(x_shape, w_shape, hp, monkeypatch):
    """v7 runs its direct forward and weight gradient (spied) and matches the reference."""
    assert direct_applies(conv_geometry(x_shape, w_shape, **hp), np.float32)
    ran = []
    for name in ("_direct_forward_tiles", "_direct_weight_tiles"):
        real = getattr(conv2d_module, name)
        monkeypatch.setattr(conv2d_module, name, lambda *a, _r=real, _n=name: ran.append(_n)
                            or _r(*a))
    check_against_reference(7, x_shape, w_shape, hp, np.dtype(np.float32), True,
                            seed=sum(x_shape))
    assert set(ran) == {"_direct_forward_tiles", "_direct_weight_tiles"}


def test_direct_reads_only_its_image_and_reuses_its_workspace():
    """Images differ only in image 1: image 0's outputs and a second call agree bit for bit
    (the workspace is reused and never leaks one call's values into the next)."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (2, 3, 11, 9)).astype(np.float32)
    w = rng.uniform(-1, 1, (6, 3, 3, 3)).astype(np.float32)
    fwd = registry.get("conv2d_forward", "numba", 7)
    out = fwd(x, w, None, padding=1)
    x2 = x.copy()
    x2[1] = 1e6
    out2 = fwd(x2, w, None, padding=1)
    assert_close("image 0", out2[0], out[0], atol=0, rtol=0)
    assert_close("again", fwd(x, w, None, padding=1), out, atol=0, rtol=0)
    conv2d_module.free_conv2d_workspace()
    assert_close("after free", fwd(x, w, None, padding=1), out, atol=0, rtol=0)


def test_direct_applies_to_few_channel_stride_1_float32():
    def applies(x_shape, w_shape, dtype=np.float32, **hp):
        return direct_applies(conv_geometry(x_shape, w_shape, **hp), dtype)
    assert applies((2, 3, 56, 56), (64, 3, 3, 3), padding=1)
    assert applies((2, 32, 8, 8), (8, 32, 3, 3), dilation=2)          # C*R*S = 288
    assert applies((2, 8, 8, 8), (8, 8, 1, 1), padding=1)             # padded 1x1
    assert not applies((2, 33, 8, 8), (8, 33, 3, 3))                  # C*R*S = 297
    assert not applies((2, 3, 56, 56), (64, 3, 3, 3), np.float64)     # float32 kernels only
    assert not applies((2, 3, 56, 56), (64, 3, 3, 3), stride=(1, 2))
    assert not applies((2, 8, 8, 8), (8, 8, 1, 1))                    # pointwise


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7, 4), (5, 16, 1, 1, 3), (3, 1, 4, 4, 1)])
def test_pointwise_matches_reference(shape, dtype):
    N, C, H, W, K = shape
    assert pointwise_applies(conv_geometry((N, C, H, W), (K, C, 1, 1)))
    check_against_reference(4, (N, C, H, W), (K, C, 1, 1), dict(dilation=2), dtype, True,
                            seed=sum(shape))


@pytest.mark.parametrize("backend,version", ALL_KERNELS)
def test_backward_weight_without_dbias(backend, version):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((4, 3, 2, 3))
    dout = rng.standard_normal((2, 4, 3, 3))
    _, _, dw_r, _ = reference(x, w, None, dout, stride=2, padding=(0, 1))
    dw = np.zeros_like(w)
    assert registry.get("conv2d_backward_weight", backend, version)(
        dw, None, dout, x, stride=2, padding=(0, 1)) is None
    assert_close("dweight", dw, dw_r)


# ----------------------------------------------------------------------------
# the reference itself
# ----------------------------------------------------------------------------
GRAD_CASES = [
    dict(x=(2, 2, 5, 4), w=(3, 2, 3, 2), hp=dict(stride=1, padding=0, dilation=1)),
    dict(x=(1, 3, 6, 7), w=(2, 3, 2, 3), hp=dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2))),
    dict(x=(2, 1, 5, 5), w=(2, 1, 1, 1), hp=dict(stride=3, padding=1, dilation=1)),
    dict(x=(1, 2, 7, 6), w=(2, 2, 3, 3), hp=dict(stride=2, padding=2, dilation=2)),
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: f"x{c['x']}w{c['w']}")
def test_reference_backward_vs_central_differences(case):
    rng = np.random.default_rng(2)
    fwd, bwd_data, bwd_weight = kernels_of("numpy", 1)
    hp = case["hp"]
    x = rng.standard_normal(case["x"])
    w = rng.standard_normal(case["w"])
    b = rng.standard_normal(case["w"][0])
    G = rng.standard_normal(conv2d_output_shape(x.shape, w.shape, **hp))

    def loss():
        return float(np.sum(fwd(x, w, b, **hp) * G))

    dx = bwd_data(G, w, x.shape, **hp)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    bwd_weight(dw, db, G, x, **hp)
    assert_close("dx", dx, numerical_grad(loss, x), atol=1e-7, rtol=1e-6)
    assert_close("dweight", dw, numerical_grad(loss, w), atol=1e-7, rtol=1e-6)
    assert_close("dbias", db, numerical_grad(loss, b), atol=1e-7, rtol=1e-6)


def naive_conv2d(x, w, b, stride, padding, dilation):
    """The definition, one output element at a time."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P = (H + 2 * ph - dh * (R - 1) - 1) // sh + 1
    Q = (W + 2 * pw - dw * (S - 1) - 1) // sw + 1
    out = np.zeros((N, K, P, Q))
    for n in range(N):
        for k in range(K):
            for p in range(P):
                for q in range(Q):
                    acc = b[k]
                    for c in range(C):
                        for r in range(R):
                            for s in range(S):
                                h, v = p * sh - ph + r * dh, q * sw - pw + s * dw
                                if 0 <= h < H and 0 <= v < W:
                                    acc += w[k, c, r, s] * x[n, c, h, v]
                    out[n, k, p, q] = acc
    return out


FIXED_CASES = [
    dict(x=(2, 3, 7, 6), w=(4, 3, 3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1)),
    dict(x=(1, 2, 8, 9), w=(3, 2, 2, 3), stride=(2, 3), padding=(0, 2), dilation=(2, 1)),
    dict(x=(3, 1, 5, 5), w=(2, 1, 1, 1), stride=(4, 4), padding=(0, 0), dilation=(1, 1)),
    dict(x=(1, 4, 9, 7), w=(5, 4, 5, 3), stride=(1, 2), padding=(2, 1), dilation=(1, 2)),
]


@pytest.mark.parametrize("case", FIXED_CASES, ids=lambda c: f"x{c['x']}w{c['w']}s{c['stride']}")
def test_reference_forward_vs_naive_formula(case):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(case["x"]), rng.standard_normal(case["w"])
    b = rng.standard_normal(case["w"][0])
    hp = {k: case[k] for k in ("stride", "padding", "dilation")}
    assert_close("out", registry.get("conv2d_forward", "numpy")(x, w, b, **hp),
                 naive_conv2d(x, w, b, **hp))


@pytest.mark.parametrize("case", FIXED_CASES, ids=lambda c: f"x{c['x']}w{c['w']}s{c['stride']}")
def test_reference_vs_torch(case):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal(case["x"]), rng.standard_normal(case["w"])
    b = rng.standard_normal(case["w"][0])
    hp = {k: case[k] for k in ("stride", "padding", "dilation")}
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, **hp)
    G = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(G))
    out, dx, dw, db = reference(x, w, b, G, **hp)
    assert_close("out", out, yt.detach().numpy())
    assert_close("dx", dx, xt.grad.numpy())
    assert_close("dweight", dw, wt.grad.numpy())
    assert_close("dbias", db, bt.grad.numpy())


def test_output_shape():
    assert conv2d_output_shape((2, 3, 224, 224), (96, 3, 11, 11), 4, 0, 1) == (2, 96, 54, 54)
    assert conv2d_output_shape((8, 96, 27, 27), (256, 96, 5, 5), 1, 2, 1) == (8, 256, 27, 27)
    assert conv2d_output_shape((1, 1, 7, 9), (1, 1, 3, 2), (2, 1), (1, 0), (2, 3)) == (1, 1, 3, 6)


# ----------------------------------------------------------------------------
# argument checks, layouts, NaN
# ----------------------------------------------------------------------------
def _args(dtype=np.float64):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    dout = rng.standard_normal((2, 4, 4, 4)).astype(dtype)
    return x, w, b, dout


BAD_FORWARD = [
    # (what, change to (x, w, b, kwargs), error, message start, also in message)
    ("x rank", lambda x, w, b: (x[0], w, b, {}), ValueError, "x:", "3-d"),
    ("weight rank", lambda x, w, b: (x, w[0], b, {}), ValueError, "weight:", "3-d"),
    ("channels", lambda x, w, b: (x, w[:, :2], b, {}), ValueError, "weight:", "(2, 3, 6, 5)"),
    ("height", lambda x, w, b: (x[:, :, :2], w, b, {}), ValueError, "x:", "height"),
    ("width", lambda x, w, b: (x, w, b, {"dilation": (1, 6)}), ValueError, "x:", "width"),
    ("int x", lambda x, w, b: (x.astype(np.int64), w, b, {}), TypeError, "x:", "int64"),
    ("float16 w", lambda x, w, b: (x, w.astype(np.float16), b, {}), TypeError, "weight:", "float16"),
    ("dtype mismatch", lambda x, w, b: (x, w.astype(np.float32), b, {}), TypeError, "weight:",
     "float32"),
    ("bias dtype", lambda x, w, b: (x, w, b.astype(np.float32), {}), TypeError, "bias:", "float32"),
    ("bias shape", lambda x, w, b: (x, w, b[:3], {}), ValueError, "bias:", "(4)"),
    ("list x", lambda x, w, b: (x.tolist(), w, b, {}), TypeError, "x:", "list"),
    ("stride 0", lambda x, w, b: (x, w, b, {"stride": 0}), ValueError, "stride:", "1"),
    ("stride float", lambda x, w, b: (x, w, b, {"stride": 1.5}), TypeError, "stride:", "1.5"),
    ("padding < 0", lambda x, w, b: (x, w, b, {"padding": (0, -1)}), ValueError, "padding:", "-1"),
    ("dilation triple", lambda x, w, b: (x, w, b, {"dilation": (1, 1, 1)}), ValueError,
     "dilation:", "pair"),
]


@pytest.mark.parametrize("backend,version", ALL_KERNELS)
@pytest.mark.parametrize("what,change,exc,start,contains", BAD_FORWARD, ids=[c[0] for c in BAD_FORWARD])
def test_forward_rejects_bad_arguments(backend, version, what, change, exc, start, contains):
    x, w, b, _ = _args()
    x, w, b, kw = change(x, w, b)
    with pytest.raises(exc) as err:
        registry.get("conv2d_forward", backend, version)(x, w, b, **kw)
    msg = str(err.value)
    assert msg.startswith(start), msg
    assert contains in msg, msg


@pytest.mark.parametrize("backend,version", ALL_KERNELS)
def test_backward_rejects_bad_arguments(backend, version):
    x, w, b, dout = _args()
    bwd_data = registry.get("conv2d_backward_data", backend, version)
    bwd_weight = registry.get("conv2d_backward_weight", backend, version)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    cases = [
        (lambda: bwd_data(dout[:, :3], w, x.shape), ValueError, "dout:"),
        (lambda: bwd_data(dout.astype(np.float32), w, x.shape), TypeError, "dout:"),
        (lambda: bwd_data(dout, w, x.shape[1:]), ValueError, "x_shape:"),
        (lambda: bwd_data(dout, w, (2, 5, 6, 5)), ValueError, "weight:"),
        (lambda: bwd_data(dout, w, (2, 3, 1, 5)), ValueError, "x_shape:"),
        (lambda: bwd_data(dout, w.astype(np.int32), x.shape), TypeError, "weight:"),
        (lambda: bwd_weight(dw, db, dout, x[:, :, :5]), ValueError, "dout:"),
        (lambda: bwd_weight(dw.astype(np.float32), db, dout, x), TypeError, "dweight:"),
        (lambda: bwd_weight(dw[:, :2], db, dout, x), ValueError, "dweight:"),
        (lambda: bwd_weight(dw, db[:2], dout, x), ValueError, "dbias:"),
        (lambda: bwd_weight(dw, db.astype(np.float32), dout, x), TypeError, "dbias:"),
        (lambda: bwd_weight(dw, db, dout, x.astype(np.float16)), TypeError, "x:"),
        (lambda: bwd_weight(dw, db, dout, x, stride=-1), ValueError, "stride:"),
    ]
    for call, exc, start in cases:
        with pytest.raises(exc) as err:
            call()
        assert str(err.value).startswith(start), str(err.value)
    ro = np.zeros_like(w)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="^dweight:"):
        bwd_weight(ro, db, dout, x)
    assert not dw.any() and not db.any(), "a rejected call must not write its outputs"


def test_output_shape_rejects_bad_arguments():
    with pytest.raises(ValueError, match="^x: output width"):
        conv2d_output_shape((1, 1, 5, 2), (1, 1, 1, 3), 1, 0, 1)
    with pytest.raises(ValueError, match="^weight:"):
        conv2d_output_shape((1, 2, 5, 5), (1, 3, 1, 1), 1, 0, 1)
    with pytest.raises(ValueError, match="^stride:"):
        conv2d_output_shape((1, 1, 5, 5), (1, 1, 1, 1), 0, 0, 1)


@pytest.mark.parametrize("backend,version", ALL_KERNELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_arrays(backend, version, dtype):
    x, w, b, _ = _args(dtype)
    hp = dict(padding=(1, 0), stride=(1, 2))
    dout = np.random.default_rng(6).standard_normal((2, 4, 6, 2)).astype(dtype)
    ref = reference(x, w, b, dout, **hp)
    xs = np.asfortranarray(x)                       # F-order
    ws = np.repeat(w, 2, axis=3)[:, :, :, ::2]      # strided view
    bs = np.repeat(b, 3)[::3]
    douts = np.ascontiguousarray(dout.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert not (xs.flags.c_contiguous or ws.flags.c_contiguous or bs.flags.c_contiguous
                or douts.flags.c_contiguous)
    fwd, bwd_data, bwd_weight = kernels_of(backend, version)
    assert_close("out", fwd(xs, ws, bs, **hp), ref[0], **tolerances(dtype, 20))
    assert_close("dx", bwd_data(douts, ws, x.shape, **hp), ref[1], **tolerances(dtype, 30))
    big_w = np.zeros((4, 3, 3, 4), dtype)
    big_b = np.zeros(8, dtype)
    dws, dbs = big_w[:, :, :, 1:3], big_b[::2]      # caller-owned non-contiguous accumulators
    bwd_weight(dws, dbs, douts, xs, **hp)
    assert_close("dweight", dws, ref[2], **tolerances(dtype, 30))
    assert_close("dbias", dbs, ref[3], **tolerances(dtype, 30))
    assert not big_w[:, :, :, [0, 3]].any() and not big_b[1::2].any()


@pytest.mark.parametrize("backend,version", ALL_KERNELS)
def test_nan_propagates(backend, version):
    x, w, b, _ = _args(np.float32)
    hp = dict(padding=1, stride=(1, 2))
    dout = np.random.default_rng(7).standard_normal((2, 4, 6, 3)).astype(np.float32)
    x[1, 2, 3, 1] = np.nan
    dout[0, 1, 2, 0] = np.nan
    f64 = [a.astype(np.float64) for a in (x, w, b, dout)]
    out_r, dx_r, dw_r, db_r = reference(*f64, **hp)
    fwd, bwd_data, bwd_weight = kernels_of(backend, version)
    out = fwd(x, w, b, **hp)
    assert np.isnan(out).any() and not np.isnan(out).all()
    assert_close("out", out, out_r, **tolerances(np.float32, 20))   # NaN exactly where ref's are
    assert_close("dx", bwd_data(dout, w, x.shape, **hp), dx_r, **tolerances(np.float32, 30))
    dw, db = np.zeros_like(w), np.zeros_like(b)
    bwd_weight(dw, db, dout, x, **hp)
    assert np.isnan(dw).any() and np.isnan(db).any()

