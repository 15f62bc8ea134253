"""Pooling CUDA kernels (kernels/cuda/pool2d.cu) on "cuda-emu" (the CPU emulator) and "cuda"
(a GPU; skipped with the reason when there is none) vs the NumPy reference: fixed edge-case
geometries and random ones (hypothesis), both dtypes, argmax equality, NaN propagation,
identical argument errors, and the wrong-array-module error.

Also run under ``SEQGRID_EMU_REVERSE=1`` (blocks and threads in reverse order) and
``SEQGRID_EMU_ASAN=1`` (with ``kernels.cuda.emu.asan_env()``) to catch order dependence and
out-of-bounds accesses."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from kernels import registry
from util import assert_close

BACKENDS = ["cuda-emu", "cuda"]
DTYPES = [np.float32, np.float64]
OPS = ["maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward",
       "adaptive_avgpool2d_forward", "adaptive_avgpool2d_backward"]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    ok, why = registry.backend_status()[request.param]
    if not ok:
        pytest.skip(why)
    return request.param


def dev(backend, a):
    """Move a host array to the backend's memory (CuPy on "cuda")."""
    if backend == "cuda":
        import cupy
        return cupy.asarray(a)
    return a


def host(backend, a):
    if backend == "cuda":
        return a.get()
    assert isinstance(a, np.ndarray), type(a)
    return a


def ref(op):
    return registry.get(op, "numpy", 1)


def gpu(op, backend):
    return registry.get(op, backend, 1)


def _data(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ----------------------------------------------------------------------------
# max pooling
# ----------------------------------------------------------------------------
def _check_max(backend, x, k, s, p, d, cm, seed=0):
    out_r, arg_r = ref("maxpool2d_forward")(x, k, s, p, d, cm)
    out, arg = gpu("maxpool2d_forward", backend)(dev(backend, x), k, s, p, d, cm)
    out, arg = host(backend, out), host(backend, arg)
    tag = f"[{backend} {x.dtype} {x.shape} k={k} s={s} p={p} d={d} ceil={cm}]"
    assert_close(f"out {tag}", out, out_r, atol=0, rtol=0)
    assert arg.dtype == np.int64, tag
    assert np.array_equal(arg, arg_r), f"argmax {tag}"
    dout = _data(out_r.shape, x.dtype, seed + 1)
    dx_r = ref("maxpool2d_backward")(dout, arg_r, x.shape)
    dx = gpu("maxpool2d_backward", backend)(dev(backend, dout), dev(backend, arg_r), x.shape)
    assert_close(f"dx {tag}", host(backend, dx), dx_r)


MAX_CASES = [  # shape, kernel, stride, padding, dilation, ceil_mode
    ((2, 3, 8, 8), 2, None, 0, 1, False),
    ((1, 2, 7, 9), 2, 2, 0, 1, True),          # odd sizes, ceil: extra partial window
    ((1, 2, 5, 5), 2, 2, 1, 1, True),          # ceil: last window would start in right pad
    ((2, 1, 6, 6), 3, 2, 1, 1, True),          # C=1, overlapping windows
    ((2, 2, 9, 11), 3, 2, 1, 2, False),        # dilation 2
    ((1, 2, 10, 7), (3, 2), (2, 3), (1, 0), (2, 1), True),
    ((1, 1, 7, 7), 2, 3, 0, 1, False),         # stride > window, N=C=1
    ((1, 3, 7, 7), 2, 3, 1, 1, True),
    ((1, 1, 1, 1), 1, 1, 0, 1, False),
    ((3, 2, 13, 5), 3, 1, 1, 1, False),        # stride 1: every cell in up to 9 windows
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s,p,d,cm", MAX_CASES)
def test_maxpool_matches_reference(backend, shape, k, s, p, d, cm, dtype):
    x = _data(shape, dtype, 1)
    x[..., ::2, ::3] = 0.5                                       # ties
    _check_max(backend, x, k, s, p, d, cm)


@st.composite
def pool_case(draw, dilation=True):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 5)), draw(st.integers(1, 5))   # stride > window included
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    dh, dw = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2]))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    H = draw(st.integers(dh * (kh - 1) + 1, 12))
    W = draw(st.integers(dw * (kw - 1) + 1, 12))
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return (N, C, H, W), (kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil_mode


@pytest.mark.parametrize("dtype", DTYPES)
@given(case=pool_case(), seed=st.integers(0, 2**16))
def test_maxpool_random_geometry(backend, dtype, case, seed):
    shape, k, s, p, d, cm = case
    x = _data(shape, dtype, seed)
    x[..., ::3, ::2] = np.round(x[..., ::3, ::2])                # some ties
    _check_max(backend, x, k, s, p, d, cm, seed)


def test_maxpool_nan_propagates(backend):
    x = _data((1, 2, 6, 6), np.float32, 14)
    x[0, 0, 1, 1] = np.nan                                       # window (0, 0) of 2x2/s2
    x[0, 1, 4, 4] = x[0, 1, 5, 5] = np.nan                       # two NaN: last one wins
    f = gpu("maxpool2d_forward", backend)
    for k, s, p in [(2, 2, 0), (3, 1, 1)]:
        out, arg = (host(backend, a) for a in f(dev(backend, x), k, s, p))
        r_out, r_arg = ref("maxpool2d_forward")(x, k, s, p)
        assert_close(f"out k={k}", out, r_out, atol=0, rtol=0)
        assert np.array_equal(arg, r_arg), f"argmax k={k}"
    out, arg = (host(backend, a) for a in f(dev(backend, x), 2))
    assert np.isnan(out[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 7
    assert np.isnan(out[0, 1, 2, 2]) and arg[0, 1, 2, 2] == 35
    assert np.isfinite(out[0, 0, 1:, :]).all()
    dx = host(backend, gpu("maxpool2d_backward", backend)(
        dev(backend, np.ones_like(out)), dev(backend, arg), x.shape))
    assert dx[0, 0, 1, 1] == 1 and dx[0, 1, 5, 5] == 1 and dx[0, 1, 4, 4] == 0
    for op, args in [("avgpool2d_forward", (2,)), ("adaptive_avgpool2d_forward", (3,))]:
        out = host(backend, gpu(op, backend)(dev(backend, x), *args))
        assert np.isnan(out[0, 0, 0, 0]) and np.isnan(out[0, 1, 2, 2]), op
        assert np.isfinite(out[0, 0, 1:, :]).all(), op


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool_all_minus_inf_window(backend, dtype):
    x = np.full((1, 1, 4, 4), -np.inf, dtype)
    out, arg = (host(backend, a) for a in gpu("maxpool2d_forward", backend)(dev(backend, x),
                                                                          3, 2, 1))
    assert np.all(out == -np.inf)
    np.testing.assert_array_equal(arg[0, 0], [[0, 1], [4, 5]])  # first in-bounds cell


# ----------------------------------------------------------------------------
# average and adaptive average pooling
# ----------------------------------------------------------------------------
def _check_avg(backend, x, k, s, p, cm, cip, div, seed=0):
    tag = f"[{backend} {x.dtype} {x.shape} k={k} s={s} p={p} ceil={cm} cip={cip} div={div}]"
    out_r = ref("avgpool2d_forward")(x, k, s, p, cm, cip, div)
    out = gpu("avgpool2d_forward", backend)(dev(backend, x), k, s, p, cm, cip, div)
    assert_close(f"out {tag}", host(backend, out), out_r)
    dout = _data(out_r.shape, x.dtype, seed + 1)
    dx_r = ref("avgpool2d_backward")(dout, x.shape, k, s, p, cm, cip, div)
    dx = gpu("avgpool2d_backward", backend)(dev(backend, dout), x.shape, k, s, p, cm, cip, div)
    assert_close(f"dx {tag}", host(backend, dx), dx_r)


AVG_CASES = [  # shape, kernel, stride, padding, ceil_mode
    ((2, 3, 8, 8), 2, None, 0, False),
    ((1, 2, 7, 9), 3, 2, 1, True),             # ceil_mode window past the padded input
    ((1, 1, 5, 5), 2, 2, 1, True),
    ((2, 1, 6, 6), 3, 2, 1, True),
    ((1, 2, 10, 7), (3, 2), (2, 3), (1, 1), True),
    ((1, 1, 7, 7), 2, 3, 1, False),            # stride > window
    ((1, 1, 4, 4), 4, 1, 2, True),
    ((1, 2, 11, 13), 3, 1, 1, False),          # stride 1: gather over up to 9 windows
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cip,div", [(True, None), (False, None), (True, 5), (False, -2)])
@pytest.mark.parametrize("shape,k,s,p,cm", AVG_CASES)
def test_avgpool_matches_reference(backend, shape, k, s, p, cm, cip, div, dtype):
    _check_avg(backend, _data(shape, dtype, 3), k, s, p, cm, cip, div)


@pytest.mark.parametrize("dtype", DTYPES)
@given(case=pool_case(dilation=False), cip=st.booleans(),
       div=st.sampled_from([None, None, 3, -2]), seed=st.integers(0, 2**16))
def test_avgpool_random_geometry(backend, dtype, case, cip, div, seed):
    shape, k, s, p, _, cm = case
    _check_avg(backend, _data(shape, dtype, seed), k, s, p, cm, cip, div, seed)


def _check_adaptive(backend, x, osz, seed=0):
    tag = f"[{backend} {x.dtype} {x.shape} output_size={osz}]"
    out_r = ref("adaptive_avgpool2d_forward")(x, osz)
    out = gpu("adaptive_avgpool2d_forward", backend)(dev(backend, x), osz)
    assert_close(f"out {tag}", host(backend, out), out_r)
    dout = _data(out_r.shape, x.dtype, seed + 1)
    dx_r = ref("adaptive_avgpool2d_backward")(dout, x.shape)
    dx = gpu("adaptive_avgpool2d_backward", backend)(dev(backend, dout), x.shape)
    assert_close(f"dx {tag}", host(backend, dx), dx_r)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,osz", [((2, 3, 10, 7), (3, 4)), ((1, 2, 7, 7), 5),
                                       ((1, 1, 5, 13), (4, None)), ((1, 1, 3, 3), 7),
                                       ((2, 1, 8, 8), 1), ((1, 2, 9, 6), (9, 6))])
def test_adaptive_matches_reference(backend, shape, osz, dtype):
    _check_adaptive(backend, _data(shape, dtype, 5), osz)


@pytest.mark.parametrize("dtype", DTYPES)
@given(H=st.integers(1, 12), W=st.integers(1, 12), P=st.integers(1, 9), Q=st.integers(1, 9),
       N=st.integers(1, 2), C=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_adaptive_random_geometry(backend, dtype, H, W, P, Q, N, C, seed):
    _check_adaptive(backend, _data((N, C, H, W), dtype, seed), (P, Q), seed)


# ----------------------------------------------------------------------------
# registrations, arguments, errors
# ----------------------------------------------------------------------------
def test_every_op_registered_on_both_gpu_backends():
    for op in OPS:
        for b in BACKENDS:
            assert registry.versions(op, b) == [1], (op, b)
            assert registry.default_version(op, b) == 1, (op, b)


def test_cuda_without_gpu_says_why():
    ok, why = registry.backend_status()["cuda"]
    if ok:
        pytest.skip("a GPU is present")
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(registry.BackendUnavailableError, match="cuda"):
        gpu("maxpool2d_forward", "cuda")(x, 2)


def test_wrong_array_module_is_rejected(backend):
    x = np.zeros((1, 2, 6, 6), np.float32)
    dout = np.zeros((1, 2, 3, 3), np.float32)
    arg = np.zeros((1, 2, 3, 3), np.int64)
    if backend == "cuda":
        # host (NumPy) arrays given to the GPU backend
        msg = r"expected a cupy array \(GPU memory\), got a NumPy \(host\) array"
        cases = [("x", lambda: gpu("maxpool2d_forward", backend)(x, 2)),
                 ("x", lambda: gpu("avgpool2d_forward", backend)(x, 2)),
                 ("x", lambda: gpu("adaptive_avgpool2d_forward", backend)(x, 2)),
                 ("dout", lambda: gpu("maxpool2d_backward", backend)(dout, dev(backend, arg),
                                                                     x.shape)),
                 ("argmax", lambda: gpu("maxpool2d_backward", backend)(dev(backend, dout), arg,
                                                                       x.shape)),
                 ("dout", lambda: gpu("avgpool2d_backward", backend)(dout, x.shape, 2)),
                 ("dout", lambda: gpu("adaptive_avgpool2d_backward", backend)(dout, x.shape))]
        for name, call in cases:
            with pytest.raises(TypeError, match=f"^{name}: {msg}"):
                call()
        return
    # cuda-emu works on NumPy arrays: a CuPy array (if CuPy is there) or a list is rejected
    try:
        import cupy
        bad = cupy.asarray(x) if registry.backend_status()["cuda"][0] else None
    except ImportError:
        bad = None
    if bad is not None:
        with pytest.raises(TypeError, match=r"^x: expected a NumPy array \(host memory\), got a "
                                            r"CuPy \(GPU\) array"):
            gpu("maxpool2d_forward", backend)(bad, 2)
    with pytest.raises(TypeError, match="^x: expected a NumPy array"):
        gpu("maxpool2d_forward", backend)(x.tolist(), 2)
    with pytest.raises(TypeError, match="^argmax: expected a NumPy array"):
        gpu("maxpool2d_backward", backend)(dout, arg.tolist(), x.shape)


def _message(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the exception itself is compared
        return type(exc), str(exc)
    return None, "no error"


@pytest.mark.parametrize("op,args,kwargs", [
    ("maxpool2d_forward", (0,), {}),
    ("maxpool2d_forward", ((2, 2, 2),), {}),
    ("maxpool2d_forward", (2.5,), {}),
    ("maxpool2d_forward", (2,), dict(stride=0)),
    ("maxpool2d_forward", (3,), dict(padding=2)),
    ("maxpool2d_forward", (2,), dict(dilation=0)),
    ("maxpool2d_forward", (7,), {}),
    ("maxpool2d_forward", (4,), dict(dilation=2)),
    ("avgpool2d_forward", (2,), dict(divisor_override=0)),
    ("avgpool2d_forward", (2,), dict(divisor_override=1.5)),
    ("avgpool2d_forward", (2,), dict(count_include_pad="no")),
    ("avgpool2d_forward", (2,), dict(ceil_mode=2)),
    ("adaptive_avgpool2d_forward", (0,), {}),
    ("adaptive_avgpool2d_forward", ((2, 3, 4),), {}),
])
def test_argument_errors_identical_to_reference(backend, op, args, kwargs):
    x = np.zeros((1, 2, 6, 6), np.float32)
    want = _message(lambda: ref(op)(x, *args, **kwargs))
    assert want[0] is not None
    assert _message(lambda: gpu(op, backend)(dev(backend, x), *args, **kwargs)) == want


def test_backward_argument_errors(backend):
    X = (1, 2, 6, 6)
    dout = dev(backend, np.zeros((1, 2, 3, 3), np.float32))
    arg = dev(backend, np.zeros((1, 2, 3, 3), np.int64))
    b = gpu("maxpool2d_backward", backend)
    with pytest.raises(TypeError, match="^argmax: expected dtype int64"):
        b(dout, arg.astype(np.int32), X)
    with pytest.raises(ValueError, match="^argmax: expected shape"):
        b(dout, arg[..., :2], X)
    with pytest.raises(ValueError, match=r"^argmax: indices must lie in \[0, 36\)"):
        b(dout, arg + 36, X)                                     # outside the 6x6 plane
    with pytest.raises(ValueError, match="^argmax: indices"):
        b(dout, arg - 1, X)
    with pytest.raises(TypeError, match="^dout"):
        b(dout.astype(np.int32), arg, X)
    with pytest.raises(ValueError, match="^x_shape"):
        b(dout, arg, (1, 2, 6))
    a = gpu("avgpool2d_backward", backend)
    with pytest.raises(ValueError, match="^dout"):
        a(dev(backend, np.zeros((1, 2, 4, 4), np.float32)), X, 2)   # expects (1, 2, 3, 3)
    with pytest.raises(ValueError, match="^x_shape"):
        a(dout, (1, 2, 6), 2)
    with pytest.raises(ValueError, match="^x_shape"):
        gpu("adaptive_avgpool2d_backward", backend)(
            dev(backend, np.zeros((1, 3, 3, 3), np.float32)), X)    # C differs


def test_non_contiguous_input(backend):
    base = _data((2, 7, 9, 3), np.float64, 13)
    x = base.transpose(0, 3, 1, 2)[:, :, :, ::2]                  # (2, 3, 7, 5), strided
    xd = dev(backend, base).transpose(0, 3, 1, 2)[:, :, :, ::2]   # strided in backend memory
    assert not xd.flags.c_contiguous
    for op, args in [("maxpool2d_forward", (3, 2, 1)),
                     ("avgpool2d_forward", (3, 2, 1, True, False)),
                     ("adaptive_avgpool2d_forward", ((3, 2),))]:
        want = ref(op)(np.ascontiguousarray(x), *args)
        got = gpu(op, backend)(xd, *args)
        got, want = (got[0], want[0]) if isinstance(got, tuple) else (got, want)
        assert_close(f"out {op}", host(backend, got), want)


def test_empty_batch(backend):
    x = dev(backend, np.zeros((0, 3, 6, 6), np.float32))
    out, arg = gpu("maxpool2d_forward", backend)(x, 2)
    assert out.shape == arg.shape == (0, 3, 3, 3)
    assert gpu("maxpool2d_backward", backend)(out, arg, x.shape).shape == x.shape
    o = gpu("avgpool2d_forward", backend)(x, 2, ceil_mode=True)
    assert gpu("avgpool2d_backward", backend)(o, x.shape, 2, ceil_mode=True).shape == x.shape
    o = gpu("adaptive_avgpool2d_forward", backend)(x, 4)
    assert gpu("adaptive_avgpool2d_backward", backend)(o, x.shape).shape == x.shape


def test_outputs_live_in_backend_memory(backend):
    x = dev(backend, _data((1, 2, 6, 6), np.float32, 15))
    xp = type(x)
    out, arg = gpu("maxpool2d_forward", backend)(x, 2)
    outs = [out, arg, gpu("maxpool2d_backward", backend)(out, arg, x.shape),
            gpu("avgpool2d_forward", backend)(x, 2),
            gpu("avgpool2d_backward", backend)(out, x.shape, 2),
            gpu("adaptive_avgpool2d_forward", backend)(x, 3),
            gpu("adaptive_avgpool2d_backward", backend)(out, x.shape)]
    for o in outs:
        assert type(o) is xp and o.flags.c_contiguous
    assert out.dtype == np.float32 and arg.dtype == np.int64
