"""conv2d CUDA kernels (kernels/cuda/conv2d.cu), every version of every op, on "cuda-emu" (the
CPU emulator) and "cuda" (a GPU; skipped with the reason when there is none) vs the NumPy
reference: fixed edge-case geometries (1x1 filters, stride > filter, padding, dilation, odd
sizes, N=1, C=1, stride phases without taps, K/C/C*R*S/N*P*Q spanning several 64-wide tiles,
split-K) and random ones (hypothesis), both dtypes, accumulation semantics, NaN propagation,
identical argument errors, non-contiguous arrays and the wrong-array-module error.

v3 is a new forward only (its backward ops are v2's kernels: checked identical to v2, not
again against the reference); v4 is v3's forward with new backward kernels (v3's GEMM for dx
and dW), whose tile configurations, split-K, vector stores and fallbacks have their own cases;
v5 is Winograd F(2x2, 3x3) for 3x3 stride-1 layers (v4 elsewhere), with its own cases. Its three tile configurations (128x128, 64x64, 32x128), the 1x1
vector-load path, the unaligned-input and the 32-bit-index fallbacks have their own cases; the
128x128 tile is forced on small shapes by lowering the SM count of the tile rule.

Also run under ``SEQGRID_EMU_REVERSE=1`` (blocks and threads in reverse order) and
``SEQGRID_EMU_ASAN=1`` (with ``kernels.cuda.emu.asan_env()``) to catch order dependence and
out-of-bounds accesses."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from kernels import conv2d as conv_mod
from kernels import registry
from kernels.conv2d import conv2d_output_shape
from util import assert_close

BACKENDS = ["cuda-emu", "cuda"]
DTYPES = [np.float32, np.float64]
OPS = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight")
VERSIONS = [1, 2, 3, 4, 5]
FORWARD_ONLY = {3}          # versions whose backward ops are an earlier version's kernels


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    ok, why = registry.backend_status()[request.param]
    if not ok:
        pytest.skip(why)
    return request.param


def dev(backend, a):
    """Move a host array to the backend's memory (CuPy on "cuda")."""
    if backend == "cuda" and a is not None:
        import cupy
        return cupy.asarray(a)
    return a


def host(backend, a):
    if backend == "cuda":
        return a.get()
    assert isinstance(a, np.ndarray), type(a)
    return a


def kernels_of(backend, version):
    return tuple(registry.get(op, backend, version) for op in OPS)


def reference(x, w, b, dout, **hp):
    """Forward, dx, dweight, dbias of the NumPy reference in float64 (dweight/dbias from 0)."""
    x, w, dout = (a.astype(np.float64) for a in (x, w, dout))
    b = None if b is None else b.astype(np.float64)
    fwd, bwd_data, bwd_weight = kernels_of("numpy", 1)
    dw, db = np.zeros_like(w), np.zeros(w.shape[0])
    bwd_weight(dw, db, dout, x, **hp)
    return fwd(x, w, b, **hp), bwd_data(dout, w, x.shape, **hp), dw, db


def reference_forward(x, w, b, **hp):
    """The NumPy reference forward in float64."""
    return kernels_of("numpy", 1)[0](x.astype(np.float64), w.astype(np.float64),
                                     None if b is None else b.astype(np.float64), **hp)


def tolerances(dtype, terms):
    """vs the float64 reference of the same (rounded) numbers in [-1, 1]: the error of a sum
    of ``terms`` products grows with ``terms`` (float32 kernels accumulate in float)."""
    if np.dtype(dtype) == np.float64:
        return dict(atol=1e-12 * terms + 1e-12, rtol=1e-10)
    return dict(atol=2e-6 * terms + 1e-6, rtol=1e-4)


def _data(shape, dtype, rng):
    return rng.uniform(-1, 1, shape).astype(dtype)


def check_all(backend, version, x_shape, w_shape, hp, dtype, seed=0, has_bias=True,
              backward=True):
    """Every op of ``version`` against the reference; parameter grads accumulate, twice.
    ``backward=False``: the forward only."""
    rng = np.random.default_rng(seed)
    N, C, H, W = x_shape
    K, _, R, S = w_shape
    _, _, P, Q = conv2d_output_shape(x_shape, w_shape, **hp)
    x, w, dout = _data(x_shape, dtype, rng), _data(w_shape, dtype, rng), _data((N, K, P, Q),
                                                                              dtype, rng)
    b = _data(K, dtype, rng) if has_bias else None
    tag = f"[{backend} v{version} {np.dtype(dtype)} x{x_shape} w{w_shape} {hp}]"
    fwd, bwd_data, bwd_weight = kernels_of(backend, version)

    out = fwd(dev(backend, x), dev(backend, w), dev(backend, b), **hp)
    assert out.dtype == dtype and out.shape == (N, K, P, Q), tag
    assert_close(f"out {tag}", host(backend, out), reference_forward(x, w, b, **hp),
                 **tolerances(dtype, C * R * S + 1))
    if not backward:
        return
    _, dx_r, dw_r, db_r = reference(x, w, b, dout, **hp)

    dx = bwd_data(dev(backend, dout), dev(backend, w), x_shape, **hp)
    assert dx.dtype == dtype and dx.shape == x_shape, tag
    assert_close(f"dx {tag}", host(backend, dx), dx_r, **tolerances(dtype, K * R * S))

    dw0, db0 = _data(w_shape, dtype, rng), _data(K, dtype, rng)
    dw, db = dev(backend, dw0.copy()), dev(backend, db0.copy())
    tol = tolerances(dtype, 2 * N * P * Q + 1)
    xd, dd = dev(backend, x), dev(backend, dout)
    assert bwd_weight(dw, db, dd, xd, **hp) is None
    assert_close(f"dweight {tag}", host(backend, dw), dw0 + dw_r, **tol)
    assert_close(f"dbias {tag}", host(backend, db), db0 + db_r, **tol)
    bwd_weight(dw, db, dd, xd, **hp)
    assert_close(f"dweight twice {tag}", host(backend, dw), dw0 + 2 * dw_r, **tol)
    assert_close(f"dbias twice {tag}", host(backend, db), db0 + 2 * db_r, **tol)


CASES = [  # id, x shape, w shape, hyper-parameters
    ("1x1", (2, 5, 6, 7), (4, 5, 1, 1), {}),
    ("1x1 stride 2", (1, 3, 7, 7), (3, 3, 1, 1), dict(stride=2)),
    ("stride > filter", (2, 2, 9, 10), (3, 2, 2, 2), dict(stride=3)),
    ("padding", (1, 3, 5, 6), (4, 3, 3, 3), dict(padding=(2, 1))),
    ("dilation 2", (2, 2, 9, 11), (3, 2, 3, 2), dict(dilation=2, padding=1)),
    ("odd mixed", (3, 3, 7, 9), (5, 3, 3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
    ("N=1 C=1", (1, 1, 8, 8), (2, 1, 3, 3), dict(padding=1)),
    ("K=1", (2, 3, 6, 5), (1, 3, 2, 2), dict(stride=(1, 2))),
    ("stride == dilation", (1, 2, 11, 11), (2, 2, 3, 3), dict(stride=2, dilation=2)),
    ("stride 3 dilation 2", (2, 2, 13, 12), (3, 2, 4, 3),
     dict(stride=3, dilation=2, padding=(2, 1))),
    ("phases without taps", (1, 2, 12, 13), (2, 2, 2, 2), dict(stride=4, dilation=2, padding=1)),
    ("filter covers input", (2, 3, 5, 4), (2, 3, 5, 4), {}),
    ("K spans tiles", (2, 4, 6, 6), (70, 4, 3, 3), dict(padding=1)),
    ("C spans tiles", (1, 70, 5, 5), (5, 70, 3, 3), dict(padding=1)),
    ("NPQ spans tiles, split-K", (4, 3, 16, 16), (8, 3, 3, 3), dict(padding=1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("x_shape,w_shape,hp", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_matches_reference(backend, version, x_shape, w_shape, hp, dtype):
    check_all(backend, version, x_shape, w_shape, hp, dtype, seed=len(CASES),
              backward=version not in FORWARD_ONLY)


@st.composite
def conv_cases(draw):
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    K = draw(st.sampled_from([1, 2, 3, 5, 65, 67]))      # K beyond one 64-row tile
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))   # may exceed the filter
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    H = max(1, dilation[0] * (R - 1) + 1 - 2 * padding[0]) + draw(st.integers(0, 8))
    W = max(1, dilation[1] * (S - 1) + 1 - 2 * padding[1]) + draw(st.integers(0, 8))
    hp = dict(stride=stride, padding=padding, dilation=dilation)
    return (N, C, H, W), (K, C, R, S), hp, draw(st.booleans()), draw(st.integers(0, 2**16))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("version", VERSIONS)
@given(case=conv_cases())
def test_random_geometry(backend, version, dtype, case):
    x_shape, w_shape, hp, has_bias, seed = case
    check_all(backend, version, x_shape, w_shape, hp, dtype, seed, has_bias,
              backward=version not in FORWARD_ONLY)


def test_split_k_paths_are_covered():
    """The fixed cases above exercise bwd-weight v2 both with one split (straight into dW)
    and with several (workspace + conv2d_add_splits)."""
    geo = {c[0]: conv_mod.conv_geometry(c[1], c[2], **c[3]) for c in CASES}
    assert conv_mod._cu_weight_splits(geo["1x1"])[0] == 1
    splits, chunk = conv_mod._cu_weight_splits(geo["NPQ spans tiles, split-K"])
    assert splits > 1 and chunk % 16 == 0
    assert (splits - 1) * chunk < 4 * 16 * 16 <= splits * chunk


# ----------------------------------------------------------------------------
# v3 forward: tile configurations, the 1x1 vector path, fallbacks
# ----------------------------------------------------------------------------
LARGE, MEDIUM, SMALL_K = conv_mod._CU3_LARGE, conv_mod._CU3_MEDIUM, conv_mod._CU3_SMALL_K

V3_CASES = [  # id, x shape, w shape, hyper-parameters, tile config, 1x1 vector path, force 128x128
    ("large K=130 stride dilation", (2, 3, 9, 11), (130, 3, 3, 2),
     dict(stride=2, dilation=(2, 1), padding=(1, 0)), LARGE, False, True),
    ("large 1x1 vector", (2, 20, 4, 6), (72, 20, 1, 1), {}, LARGE, True, True),
    ("medium 1x1 vector", (2, 12, 4, 6), (40, 12, 1, 1), {}, MEDIUM, True, False),
    ("medium K=64 odd PQ", (1, 5, 7, 9), (64, 5, 3, 3), dict(padding=1), MEDIUM, False, False),
    ("medium 1x1 stride 2", (2, 9, 8, 8), (66, 9, 1, 1), dict(stride=2), MEDIUM, False, False),
    ("small-K NPQ spans tiles", (2, 3, 12, 12), (32, 3, 3, 3), dict(padding=1), SMALL_K, False,
     False),
    ("small-K 1x1 vector C=10", (3, 10, 4, 4), (8, 10, 1, 1), {}, SMALL_K, True, False),
    ("small-K 1x1 C=1 odd PQ", (2, 1, 5, 5), (3, 1, 1, 1), {}, SMALL_K, False, False),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,w_shape,hp,config,vec,force_large",
                         [c[1:] for c in V3_CASES], ids=[c[0] for c in V3_CASES])
def test_v3_forward_configs(backend, monkeypatch, x_shape, w_shape, hp, config, vec,
                            force_large, dtype):
    if force_large:
        monkeypatch.setattr(conv_mod, "_CU3_SMS", 1)
    plan = conv_mod._cu_forward_gemm_plan(conv_mod.conv_geometry(x_shape, w_shape, **hp))
    assert (plan.config, plan.vec) == (config, vec)
    # float64 without bias: both epilogue branches
    check_all(backend, 3, x_shape, w_shape, hp, dtype, seed=11,
              has_bias=dtype == np.float32, backward=False)


def test_v3_large_tiles_by_the_rule(backend):
    """128x128 tiles without forcing: 133 column tiles (the last 4 wide) for K = 70 < 128 and
    C*R*S = 18 (2 full stages + 2 rows)."""
    x_shape, w_shape, hp = (1, 2, 130, 130), (70, 2, 3, 3), dict(padding=1)
    plan = conv_mod._cu_forward_gemm_plan(conv_mod.conv_geometry(x_shape, w_shape, **hp))
    assert plan.config == LARGE and plan.grid == (133, 1) and plan.out_vec and not plan.vec
    check_all(backend, 3, x_shape, w_shape, hp, np.float32, seed=12, backward=False)


@pytest.mark.parametrize("dtype", DTYPES)
@given(case=conv_cases())
def test_random_geometry_v3_large_tiles(backend, dtype, case):
    """K = 65, 67 on 128x128 tiles (the rule gives them 64x64 tiles at these sizes)."""
    x_shape, w_shape, hp, has_bias, seed = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv_mod, "_CU3_SMS", 1)
        check_all(backend, 3, x_shape, w_shape, hp, dtype, seed, has_bias, backward=False)


def test_v3_tile_rule():
    """The rule on the H200 benchmark shapes, and its grids."""
    shapes = [  # x, w, hp, config, vec
        ((16, 64, 112, 112), (128, 64, 3, 3), dict(padding=1), LARGE, False),
        ((16, 256, 28, 28), (512, 256, 3, 3), dict(padding=1), LARGE, False),
        ((16, 512, 28, 28), (128, 512, 1, 1), {}, MEDIUM, True),
        ((4, 1, 161, 700), (32, 1, 5, 20), dict(stride=2), SMALL_K, False),
        ((16, 1, 48, 480), (16, 1, 3, 3), dict(padding=1), SMALL_K, False),
        ((16, 512, 7, 7), (512, 512, 3, 3), dict(padding=1), MEDIUM, False),   # 28 large tiles
        ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), MEDIUM, False),     # K <= 64
    ]
    for x_shape, w_shape, hp, config, vec in shapes:
        g = conv_mod.conv_geometry(x_shape, w_shape, **hp)
        plan = conv_mod._cu_forward_gemm_plan(g)
        assert (plan.config, plan.vec, plan.out_vec) == (config, vec, g.P * g.Q % 4 == 0), x_shape
        assert plan.grid == (-(-g.N * g.P * g.Q // config[1]), -(-g.K // config[0]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_v3_unaligned_x_takes_the_gather_path(backend, dtype):
    """A contiguous x that is not 16-byte aligned: the 1x1 vector path must not be used."""
    rng = np.random.default_rng(12)
    x_shape, w_shape = (2, 12, 4, 6), (40, 12, 1, 1)
    x, w, b = _data(x_shape, dtype, rng), _data(w_shape, dtype, rng), _data(40, dtype, rng)
    xp = np
    if backend == "cuda":
        import cupy as xp
    buf = xp.empty(x.size + 4, dtype)
    off = next(k for k in range(1, 4) if conv_mod._cu_address(buf[k:]) % 16)
    xu = buf[off:off + x.size].reshape(x_shape)
    xu[...] = dev(backend, x)
    assert xu.flags.c_contiguous
    g = conv_mod.conv_geometry(x_shape, w_shape)
    assert conv_mod._cu_forward_gemm_plan(g, dev(backend, x)).vec
    assert not conv_mod._cu_forward_gemm_plan(g, xu).vec
    out = registry.get("conv2d_forward", backend, 3)(xu, dev(backend, w), dev(backend, b))
    assert_close("out", host(backend, out), reference_forward(x, w, b),
                 **tolerances(dtype, 13))


def test_v3_falls_back_to_v2_past_int32_indices(backend, monkeypatch):
    """v3 indexes with int: a tensor larger than _CU3_INDEX_MAX goes to the v2 kernel."""
    calls = []
    tiled = conv_mod._cu_forward_tiled
    monkeypatch.setattr(conv_mod, "_cu_forward_tiled", lambda *a: calls.append(1) or tiled(*a))
    rng = np.random.default_rng(13)
    x, w = _data((2, 3, 6, 5), np.float32, rng), _data((4, 3, 3, 2), np.float32, rng)
    fwd = registry.get("conv2d_forward", backend, 3)
    fwd(dev(backend, x), dev(backend, w), None, padding=1)
    assert not calls
    monkeypatch.setattr(conv_mod, "_CU3_INDEX_MAX", x.size - 1)
    out = fwd(dev(backend, x), dev(backend, w), None, padding=1)
    assert calls == [1]
    assert_close("out", host(backend, out), reference_forward(x, w, None, padding=1),
                 **tolerances(np.float32, 19))


def test_v3_backward_is_v2(backend):
    """v3's backward ops run v2's kernels: bit-identical results."""
    for case in ("NPQ spans tiles, split-K", "odd mixed"):
        _, x_shape, w_shape, hp = next(c for c in CASES if c[0] == case)
        rng = np.random.default_rng(14)
        _, _, P, Q = conv2d_output_shape(x_shape, w_shape, **hp)
        x, w = _data(x_shape, np.float32, rng), _data(w_shape, np.float32, rng)
        dout = _data((x_shape[0], w_shape[0], P, Q), np.float32, rng)
        res = []
        for v in (2, 3):
            _, bwd_data, bwd_weight = kernels_of(backend, v)
            dw, db = dev(backend, np.zeros_like(w)), dev(backend, np.zeros(w_shape[0], np.float32))
            bwd_weight(dw, db, dev(backend, dout), dev(backend, x), **hp)
            dx = bwd_data(dev(backend, dout), dev(backend, w), x_shape, **hp)
            res.append([host(backend, a) for a in (dx, dw, db)])
        for a, b in zip(*res):
            assert np.array_equal(a, b), case


# ----------------------------------------------------------------------------
# registrations, semantics, errors
# ----------------------------------------------------------------------------
def test_every_op_registered_on_both_gpu_backends():
    for op in OPS:
        for b in BACKENDS:
            assert registry.versions(op, b) == VERSIONS, (op, b)
            # v5: Winograd on 3x3 stride-1 layers of >= 32 channels, else v4 (v3's forward,
            # the GEMM backward): training steps 0.34-1.62x cuDNN on an H200 (v3: 0.04-0.89x)
            assert registry.default_version(op, b) == 5, (op, b)


def test_cuda_without_gpu_says_why():
    ok, why = registry.backend_status()["cuda"]
    if ok:
        pytest.skip("a GPU is present")
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(registry.BackendUnavailableError, match="cuda"):
        registry.get("conv2d_forward", "cuda")(x, x[:, :, :2, :2], None)


@pytest.mark.parametrize("version", VERSIONS)
def test_backward_weight_without_dbias_and_deterministic(backend, version):
    rng = np.random.default_rng(1)
    x, w = _data((4, 3, 16, 16), np.float32, rng), _data((8, 3, 3, 3), np.float32, rng)
    dout = _data((4, 8, 16, 16), np.float32, rng)
    _, _, dw_r, _ = reference(x, w, None, dout, padding=1)
    bwd = registry.get("conv2d_backward_weight", backend, version)
    results = []
    for _ in range(2):
        dw = dev(backend, np.zeros_like(w))
        assert bwd(dw, None, dev(backend, dout), dev(backend, x), padding=1) is None
        results.append(host(backend, dw))
    assert_close("dweight", results[0], dw_r, **tolerances(np.float32, 4 * 256))
    assert np.array_equal(results[0], results[1]), "bwd-weight must be deterministic"


@pytest.mark.parametrize("version", VERSIONS)
def test_nan_propagates(backend, version):
    rng = np.random.default_rng(7)
    hp = dict(padding=1, stride=(1, 2))
    x, w, b = _data((2, 3, 6, 5), np.float32, rng), _data((4, 3, 3, 2), np.float32, rng), None
    dout = _data((2, 4, 6, 3), np.float32, rng)
    x[1, 2, 3, 1] = np.nan
    dout[0, 1, 2, 0] = np.nan
    out_r, dx_r, dw_r, db_r = reference(x, w, b, dout, **hp)
    fwd, bwd_data, bwd_weight = kernels_of(backend, version)
    out = host(backend, fwd(dev(backend, x), dev(backend, w), None, **hp))
    assert np.isnan(out).any() and not np.isnan(out).all()
    assert_close("out", out, out_r, **tolerances(np.float32, 20))   # NaN exactly where ref's are
    dx = host(backend, bwd_data(dev(backend, dout), dev(backend, w), x.shape, **hp))
    assert np.isnan(dx).any() and not np.isnan(dx).all()
    assert_close("dx", dx, dx_r, **tolerances(np.float32, 30))
    dw, db = dev(backend, np.zeros_like(w)), dev(backend, np.zeros(4, np.float32))
    bwd_weight(dw, db, dev(backend, dout), dev(backend, x), **hp)
    dw, db = host(backend, dw), host(backend, db)
    assert np.isnan(dw).any() and np.isnan(db).any()
    # the reference multiplies dout's NaN by the zero padding (NaN); a kernel that skips the
    # padded taps (v1, like numba v1) leaves those finite: compare where the reference is
    finite = np.isfinite(dw_r)
    assert_close("dweight", dw[finite], dw_r[finite], **tolerances(np.float32, 100))
    assert_close("dbias", db, db_r, **tolerances(np.float32, 100))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_arrays(backend, version, dtype):
    rng = np.random.default_rng(6)
    hp = dict(padding=(1, 0), stride=(1, 2))
    x, w, b = _data((2, 3, 6, 5), dtype, rng), _data((4, 3, 3, 2), dtype, rng), _data(4, dtype, rng)
    dout = _data((2, 4, 6, 2), dtype, rng)
    ref = reference(x, w, b, dout, **hp)
    # strided views in the backend's memory
    xs = dev(backend, np.ascontiguousarray(x.transpose(0, 1, 3, 2))).transpose(0, 1, 3, 2)
    ws = dev(backend, np.repeat(w, 2, axis=3))[:, :, :, ::2]
    bs = dev(backend, np.repeat(b, 3))[::3]
    douts = dev(backend, np.ascontiguousarray(dout.transpose(0, 1, 3, 2))).transpose(0, 1, 3, 2)
    assert not (xs.flags.c_contiguous or ws.flags.c_contiguous or bs.flags.c_contiguous
                or douts.flags.c_contiguous)
    fwd, bwd_data, bwd_weight = kernels_of(backend, version)
    assert_close("out", host(backend, fwd(xs, ws, bs, **hp)), ref[0], **tolerances(dtype, 20))
    assert_close("dx", host(backend, bwd_data(douts, ws, x.shape, **hp)), ref[1],
                 **tolerances(dtype, 30))
    big_w = dev(backend, np.zeros((4, 3, 3, 4), dtype))
    big_b = dev(backend, np.zeros(8, dtype))
    dws, dbs = big_w[:, :, :, 1:3], big_b[::2]      # caller-owned non-contiguous accumulators
    bwd_weight(dws, dbs, douts, xs, **hp)
    assert_close("dweight", host(backend, dws), ref[2], **tolerances(dtype, 30))
    assert_close("dbias", host(backend, dbs), ref[3], **tolerances(dtype, 30))
    big_w, big_b = host(backend, big_w), host(backend, big_b)
    assert not big_w[:, :, :, [0, 3]].any() and not big_b[1::2].any()


def test_outputs_live_in_backend_memory(backend):
    rng = np.random.default_rng(8)
    x, w = dev(backend, _data((1, 2, 5, 5), np.float32, rng)), dev(backend, _data((3, 2, 2, 2),
                                                                              np.float32, rng))
    xp = type(x)
    for v in VERSIONS:
        fwd, bwd_data, _ = kernels_of(backend, v)
        out = fwd(x, w, None)
        dx = bwd_data(out, w, x.shape)
        for o in (out, dx):
            assert type(o) is xp and o.flags.c_contiguous and o.dtype == np.float32


def _message(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the exception itself is compared
        return type(exc), str(exc)
    return None, "no error"


def _args(dtype=np.float64):
    rng = np.random.default_rng(5)
    return (_data((2, 3, 6, 5), dtype, rng), _data((4, 3, 3, 2), dtype, rng),
            _data(4, dtype, rng), _data((2, 4, 4, 4), dtype, rng))


BAD = [  # id, op, arguments from (x, w, b, dout, dw, db)
    ("x rank", 0, lambda x, w, b, d, dw, db: (x[0], w, b)),
    ("channels", 0, lambda x, w, b, d, dw, db: (x, w[:, :2], b)),
    ("height", 0, lambda x, w, b, d, dw, db: (x[:, :, :2], w, b)),
    ("int x", 0, lambda x, w, b, d, dw, db: (x.astype(np.int64), w, b)),
    ("dtype mismatch", 0, lambda x, w, b, d, dw, db: (x, w.astype(np.float32), b)),
    ("bias shape", 0, lambda x, w, b, d, dw, db: (x, w, b[:3])),
    ("stride 0", 0, lambda x, w, b, d, dw, db: (x, w, b, 0)),
    ("stride float", 0, lambda x, w, b, d, dw, db: (x, w, b, 1.5)),
    ("padding < 0", 0, lambda x, w, b, d, dw, db: (x, w, b, 1, (0, -1))),
    ("dilation triple", 0, lambda x, w, b, d, dw, db: (x, w, b, 1, 0, (1, 1, 1))),
    ("dout shape", 1, lambda x, w, b, d, dw, db: (d[:, :3], w, x.shape)),
    ("dout dtype", 1, lambda x, w, b, d, dw, db: (d.astype(np.float32), w, x.shape)),
    ("x_shape rank", 1, lambda x, w, b, d, dw, db: (d, w, x.shape[1:])),
    ("x_shape channels", 1, lambda x, w, b, d, dw, db: (d, w, (2, 5, 6, 5))),
    ("bw dout shape", 2, lambda x, w, b, d, dw, db: (dw, db, d, x[:, :, :5])),
    ("dweight dtype", 2, lambda x, w, b, d, dw, db: (dw.astype(np.float32), db, d, x)),
    ("dweight shape", 2, lambda x, w, b, d, dw, db: (dw[:, :2], db, d, x)),
    ("dbias shape", 2, lambda x, w, b, d, dw, db: (dw, db[:2], d, x)),
    ("x float16", 2, lambda x, w, b, d, dw, db: (dw, db, d, x.astype(np.float16))),
    ("bw stride -1", 2, lambda x, w, b, d, dw, db: (dw, db, d, x, -1)),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("op,make", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_argument_errors_identical_to_reference(backend, version, op, make):
    x, w, b, d = _args()
    dw, db = np.zeros_like(w), np.zeros_like(b)
    args = make(x, w, b, d, dw, db)
    want = _message(lambda: registry.get(OPS[op], "numpy", 1)(*args))
    assert want[0] is not None
    moved = tuple(dev(backend, a) if isinstance(a, np.ndarray) else a for a in args)
    assert _message(lambda: registry.get(OPS[op], backend, version)(*moved)) == want
    if backend == "cuda-emu":
        assert not dw.any() and not db.any(), "a rejected call must not write its outputs"


def test_read_only_accumulator_rejected():
    x, w, b, d = _args()
    ro = np.zeros_like(w)
    ro.flags.writeable = False
    for v in VERSIONS:
        with pytest.raises(ValueError, match="^dweight: must be writeable"):
            registry.get("conv2d_backward_weight", "cuda-emu", v)(ro, None, d, x)


def test_wrong_array_module_is_rejected(backend):
    x, w, b, d = _args(np.float32)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    for v in VERSIONS:
        fwd, bwd_data, bwd_weight = kernels_of(backend, v)
        if backend == "cuda":
            # host (NumPy) arrays given to the GPU backend, one argument at a time
            msg = r"expected a cupy array \(GPU memory\), got a NumPy \(host\) array"
            X, Wt, B, D, DW, DB = (dev(backend, a) for a in (x, w, b, d, dw, db))
            cases = [("x", lambda: fwd(x, Wt, B)), ("weight", lambda: fwd(X, w, B)),
                     ("bias", lambda: fwd(X, Wt, b)),
                     ("dout", lambda: bwd_data(d, Wt, x.shape)),
                     ("weight", lambda: bwd_data(D, w, x.shape)),
                     ("x", lambda: bwd_weight(DW, DB, D, x)),
                     ("dout", lambda: bwd_weight(DW, DB, d, X)),
                     ("dweight", lambda: bwd_weight(dw, DB, D, X)),
                     ("dbias", lambda: bwd_weight(DW, db, D, X))]
            for name, call in cases:
                with pytest.raises(TypeError, match=f"^{name}: {msg}"):
                    call()
            continue
        # cuda-emu works on NumPy arrays: a CuPy array (if a GPU is there) or a list is rejected
        try:
            import cupy
            bad = cupy.asarray(x) if registry.backend_status()["cuda"][0] else None
        except ImportError:
            bad = None
        if bad is not None:
            with pytest.raises(TypeError, match=r"^x: expected a NumPy array \(host memory\), "
                                                r"got a CuPy \(GPU\) array"):
                fwd(bad, w, b)
        with pytest.raises(TypeError, match="^x: expected a NumPy array"):
            fwd(x.tolist(), w, b)
        with pytest.raises(TypeError, match="^weight: expected a NumPy array"):
            bwd_data(d, w.tolist(), x.shape)
        with pytest.raises(TypeError, match="^dweight: expected a NumPy array"):
            bwd_weight(dw.tolist(), db, d, x)


def test_int32_dimension_guard():
    """Per-tensor sizes (and C*R*S, K*R*S) are ints in the kernels: larger ones are refused
    before anything is allocated or launched (element offsets themselves are 64-bit)."""
    g = conv_mod.conv_geometry((1, 2**16, 300, 300), (1, 2**16, 256, 256))
    with pytest.raises(ValueError, match="2\\^31-1"):
        conv_mod._cu_dims(g)
    assert all(type(d) is np.int32 for d in conv_mod._cu_dims(conv_mod.conv_geometry(
        (1, 2, 5, 5), (3, 2, 3, 3))))


# ----------------------------------------------------------------------------
# v4 backward: tile configurations, split-K, vector stores, fallbacks
# ----------------------------------------------------------------------------
V4_CASES = [  # id, x shape, w shape, hyper-parameters
    ("stride 1 HW%4 (vector dx), CRS%4 (vector dW)", (2, 6, 4, 6), (9, 6, 2, 2), dict(padding=1)),
    ("stride 2 odd", (2, 7, 9, 11), (66, 7, 3, 2), dict(stride=2, dilation=(2, 1), padding=(1, 0))),
    ("phases without taps", (1, 6, 12, 13), (3, 6, 2, 2), dict(stride=4, dilation=2, padding=1)),
    ("1x1 C=70", (1, 70, 5, 3), (5, 70, 1, 1), {}),
    ("K=130 C*R*S=130", (2, 130, 3, 4), (130, 130, 1, 1), dict(stride=(1, 2))),
]


@pytest.mark.parametrize("config", [LARGE, MEDIUM, SMALL_K], ids=["128x128", "64x64", "32x128"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,w_shape,hp", [c[1:] for c in V4_CASES],
                         ids=[c[0] for c in V4_CASES])
def test_v4_backward_configs(backend, monkeypatch, x_shape, w_shape, hp, dtype, config):
    """Every tile configuration in both backward modes (forced), several splits and one."""
    monkeypatch.setattr(conv_mod, "_cu4_data_config", lambda rows, cols: config)
    monkeypatch.setattr(conv_mod, "_cu4_weight_config", lambda rows, cols: config)
    check_all(backend, 4, x_shape, w_shape, hp, dtype, seed=15, has_bias=dtype == np.float32)


def test_v4_plans():
    """Vector stores, split-K and the tile rule on the benchmark shapes and edge cases."""
    geo = conv_mod.conv_geometry
    g = geo((16, 64, 112, 112), (128, 64, 3, 3), padding=1)
    data, weight = conv_mod._cu4_data_plan(g), conv_mod._cu4_weight_plan(g)
    assert data.config == LARGE and data.out_vec and data.grid == (1568, 1, 1)    # C = 64
    assert weight.config == LARGE and weight.out_vec and weight.grid[:2] == (5, 1)
    assert weight.chunk % 8 == 0 and (weight.grid[2] - 1) * weight.chunk < 16 * 112 * 112
    assert weight.grid[2] * weight.chunk >= 16 * 112 * 112 and weight.grid[2] > 1
    g = geo((4, 1, 161, 700), (32, 1, 5, 20), stride=2)          # DeepSpeech conv1
    weight = conv_mod._cu4_weight_plan(g)
    assert weight.config == SMALL_K and weight.out_vec and weight.grid[:2] == (1, 1)
    assert weight.grid[2] * weight.chunk >= 4 * 79 * 341 > (weight.grid[2] - 1) * weight.chunk
    data = conv_mod._cu4_data_plan(geo((2, 6, 9, 11), (8, 6, 3, 3), stride=2))
    assert not data.out_vec and data.grid[2] == 4
    assert not conv_mod._cu4_weight_plan(geo((1, 3, 5, 5), (4, 3, 3, 3))).out_vec   # CRS 27
    small = conv_mod._cu4_weight_plan(geo((1, 8, 4, 4), (8, 8, 1, 1)))
    assert small.grid[2] == 1                                     # 2 stages: one split


def test_v4_small_c_runs_the_direct_kernel(backend, monkeypatch):
    """C <= _CU4_DIRECT_MAX_C: dx by v1's direct kernel; C = 5: the GEMM."""
    calls = []
    direct = conv_mod._cu_backward_data_direct
    monkeypatch.setattr(conv_mod, "_cu_backward_data_direct",
                        lambda *a: calls.append(1) or direct(*a))
    for C, expect in ((conv_mod._CU4_DIRECT_MAX_C, [1]), (conv_mod._CU4_DIRECT_MAX_C + 1, [])):
        calls.clear()
        check_all(backend, 4, (2, C, 7, 6), (3, C, 3, 3), dict(padding=1), np.float32, seed=16)
        assert calls == expect, C


def test_v4_falls_back_to_v2_past_int32_indices(backend, monkeypatch):
    """v4 indexes with int: larger tensors go to v2's backward kernels."""
    calls = []
    for name in ("_cu_backward_data_tiled", "_cu_backward_weight_tiled"):
        fn = getattr(conv_mod, name)
        monkeypatch.setattr(conv_mod, name, lambda *a, fn=fn, name=name: calls.append(name)
                            or fn(*a))
    monkeypatch.setattr(conv_mod, "_CU3_INDEX_MAX", 40)
    check_all(backend, 4, (2, 6, 6, 5), (4, 6, 3, 2), dict(padding=1), np.float32, seed=17)
    assert calls == ["_cu_backward_data_tiled"] + 2 * ["_cu_backward_weight_tiled"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_v4_unaligned_outputs_take_scalar_stores(backend, dtype):
    """A dW accumulator that is contiguous but not 16-byte aligned: scalar stores, same sums."""
    rng = np.random.default_rng(18)
    x_shape, w_shape = (2, 6, 4, 6), (9, 6, 2, 2)
    x, dout = _data(x_shape, dtype, rng), _data((2, 9, 3, 5), dtype, rng)
    xp = np
    if backend == "cuda":
        import cupy as xp
    buf = xp.zeros(9 * 24 + 4, dtype)
    off = next(k for k in range(1, 4) if conv_mod._cu_address(buf[k:]) % 16)
    dw = buf[off:off + 9 * 24].reshape(w_shape)
    g = conv_mod.conv_geometry(x_shape, w_shape)
    assert conv_mod._cu4_weight_plan(g, dw=dev(backend, np.zeros(w_shape, dtype))).out_vec
    assert not conv_mod._cu4_weight_plan(g, dw=dw).out_vec
    registry.get("conv2d_backward_weight", backend, 4)(dw, None, dev(backend, dout),
                                                        dev(backend, x))
    _, _, dw_r, _ = reference(x, _data(w_shape, dtype, rng), None, dout)
    assert_close("dW", host(backend, dw), dw_r, **tolerances(dtype, 2 * 2 * 3 * 5))


@pytest.mark.parametrize("cols_max", [0, 2**14], ids=["one thread per output", "8 rows x 32"])
@pytest.mark.parametrize("splits,total", [(1, 5), (8, 64), (13, 70), (520, 97)])
def test_v4_split_sum(backend, monkeypatch, splits, total, cols_max):
    """The workspace sum, both kernels: every output, any number of splits."""
    monkeypatch.setattr(conv_mod, "_CU4_ADD_COLS_MAX", cols_max)
    rng = np.random.default_rng(20)
    part, dst = rng.uniform(-1, 1, (splits, total)), rng.uniform(-1, 1, total)
    got = dev(backend, dst.copy())
    conv_mod._cu4_add_splits(backend, got, dev(backend, part))
    assert_close("dst", host(backend, got), dst + part.sum(0), atol=1e-12 * splits, rtol=1e-12)


# ----------------------------------------------------------------------------
# v5 Winograd F(2x2, 3x3)
# ----------------------------------------------------------------------------
WINO_CASES = [  # id, x shape, w shape, padding (the channel rules are lowered to 1)
    ("pad 0 odd P Q", (2, 3, 7, 8), (4, 3, 3, 3), 0),
    ("pad 1", (3, 5, 6, 6), (7, 5, 3, 3), 1),
    ("pad (2, 0)", (1, 4, 5, 9), (3, 4, 3, 3), (2, 0)),
    ("pad 3 (dx pad -1)", (2, 2, 4, 5), (3, 2, 3, 3), 3),
    ("1x1 output", (2, 6, 3, 3), (2, 6, 3, 3), 0),
    ("C=K=1", (2, 1, 5, 6), (1, 1, 3, 3), 1),
]


@pytest.mark.parametrize("chunked", [False, True], ids=["one chunk", "image chunks"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,w_shape,pad", [c[1:] for c in WINO_CASES],
                         ids=[c[0] for c in WINO_CASES])
def test_v5_winograd(backend, monkeypatch, x_shape, w_shape, pad, dtype, chunked):
    """All three passes through the Winograd kernels (spied), with every image in its own chunk
    when ``chunked``."""
    calls = []
    launch = conv_mod._cu5_launch
    monkeypatch.setattr(conv_mod, "_cu5_launch", lambda *a: calls.append(a[1]) or launch(*a))
    monkeypatch.setattr(conv_mod, "_CU5_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_mod, "_CU5_MIN_CHANNELS_DW", 1)
    if chunked:
        monkeypatch.setattr(conv_mod, "_CU5_WORKSPACE", 1)
    check_all(backend, 5, x_shape, w_shape, dict(padding=pad), dtype, seed=21,
              has_bias=dtype == np.float32)
    chunks = x_shape[0] if chunked else 1
    assert calls.count("conv2d_wino_input") == 3 * chunks + chunks   # fwd, dx, 2x dW (per chunk)
    assert calls.count("conv2d_wino_output") == 2 * chunks
    assert calls.count("conv2d_wino_weight_grad") == 2


def test_v5_other_layers_run_v4(backend, monkeypatch):
    """Stride, dilation or a non-3x3 filter: v4's kernels, no Winograd launch."""
    calls = []
    monkeypatch.setattr(conv_mod, "_cu5_launch", lambda *a: calls.append(a[1]))
    monkeypatch.setattr(conv_mod, "_CU5_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_mod, "_CU5_MIN_CHANNELS_DW", 1)
    for w_shape, hp in (((3, 2, 3, 3), dict(stride=2)), ((3, 2, 3, 3), dict(dilation=2)),
                        ((3, 2, 3, 2), {}), ((3, 2, 5, 5), dict(padding=2))):
        check_all(backend, 5, (2, 2, 9, 9), w_shape, hp, np.float32, seed=22)
    assert calls == []


def test_v5_channel_rules():
    """Winograd for forward / dx from 32 channels (C and K), for dW from 128."""
    geo = conv_mod.conv_geometry
    for x_shape, w_shape, fwd, dw in (((8, 3, 224, 224), (64, 3, 3, 3), False, False),
                                      ((8, 64, 112, 112), (128, 64, 3, 3), True, False),
                                      ((8, 128, 56, 56), (256, 128, 3, 3), True, True),
                                      ((8, 256, 28, 28), (32, 256, 3, 3), True, False)):
        g = geo(x_shape, w_shape, padding=1)
        assert conv_mod._cu5_applies(g) == fwd, x_shape
        assert conv_mod._cu5_applies(g, conv_mod._CU5_MIN_CHANNELS_DW) == dw, x_shape


@st.composite
def wino_cases(draw):
    N, C, K = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    pad = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    H = max(1, 3 - 2 * pad[0]) + draw(st.integers(0, 7))
    W = max(1, 3 - 2 * pad[1]) + draw(st.integers(0, 7))
    return (N, C, H, W), (K, C, 3, 3), pad, draw(st.booleans()), draw(st.integers(0, 2**16))


@pytest.mark.parametrize("dtype", DTYPES)
@given(case=wino_cases())
def test_v5_winograd_random_geometry(backend, dtype, case):
    """Random 3x3 stride-1 layers through Winograd (channel rules lowered to 1)."""
    x_shape, w_shape, pad, has_bias, seed = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv_mod, "_CU5_MIN_CHANNELS", 1)
        mp.setattr(conv_mod, "_CU5_MIN_CHANNELS_DW", 1)
        check_all(backend, 5, x_shape, w_shape, dict(padding=pad), dtype, seed, has_bias)
