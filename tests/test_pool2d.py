"""Pooling kernels: every Numba version vs the NumPy reference (hypothesis), the reference vs
PyTorch on fixed edge cases, reference gradients vs central differences, bad inputs, NaN."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from kernels import registry
from kernels.pool2d import pool2d_output_size
from util import assert_close, numerical_grad

DTYPES = [np.float32, np.float64]


def ref(op):
    return registry.get(op, "numpy", 1)


def numba_versions(op):
    return [registry.get(op, "numba", v) for v in registry.versions(op, "numba")]


# ----------------------------------------------------------------------------
# random geometries (hypothesis)
# ----------------------------------------------------------------------------
@st.composite
def pool_case(draw, dilation=True):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 5)), draw(st.integers(1, 5))   # stride > window included
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    dh, dw = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2]))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    H = draw(st.integers(dh * (kh - 1) + 1, 13))                 # odd and even sizes
    W = draw(st.integers(dw * (kw - 1) + 1, 13))
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return (N, C, H, W), (kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil_mode


def _data(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(case=pool_case(), seed=st.integers(0, 2**16))
def test_maxpool_numba_matches_reference(dtype, case, seed):
    shape, k, s, p, d, cm = case
    x = _data(shape, dtype, seed)
    x[..., ::3, ::2] = np.round(x[..., ::3, ::2])                # some ties
    out_r, arg_r = ref("maxpool2d_forward")(x, k, s, p, d, cm)
    dout = _data(out_r.shape, dtype, seed + 1)
    dx_r = ref("maxpool2d_backward")(dout, arg_r, shape)
    for f in numba_versions("maxpool2d_forward"):
        out, arg = f(x, k, s, p, d, cm)
        assert_close(f"out {f.name}", out, out_r, atol=0, rtol=0)
        assert arg.dtype == np.int64 and np.array_equal(arg, arg_r), f"argmax {f.name}"
    for b in numba_versions("maxpool2d_backward"):
        assert_close(f"dx {b.name}", b(dout, arg_r, shape), dx_r)


@pytest.mark.parametrize("dtype", DTYPES)
@given(case=pool_case(dilation=False), cip=st.booleans(),
       div=st.sampled_from([None, None, 3, -2]), seed=st.integers(0, 2**16))
def test_avgpool_numba_matches_reference(dtype, case, cip, div, seed):
    shape, k, s, p, _, cm = case
    x = _data(shape, dtype, seed)
    out_r = ref("avgpool2d_forward")(x, k, s, p, cm, cip, div)
    dout = _data(out_r.shape, dtype, seed + 1)
    dx_r = ref("avgpool2d_backward")(dout, shape, k, s, p, cm, cip, div)
    for f in numba_versions("avgpool2d_forward"):
        assert_close(f"out {f.name}", f(x, k, s, p, cm, cip, div), out_r)
    for b in numba_versions("avgpool2d_backward"):
        assert_close(f"dx {b.name}", b(dout, shape, k, s, p, cm, cip, div), dx_r)


@pytest.mark.parametrize("dtype", DTYPES)
@given(H=st.integers(1, 13), W=st.integers(1, 13), P=st.integers(1, 9), Q=st.integers(1, 9),
       N=st.integers(1, 2), C=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_adaptive_numba_matches_reference(dtype, H, W, P, Q, N, C, seed):
    x = _data((N, C, H, W), dtype, seed)
    out_r = ref("adaptive_avgpool2d_forward")(x, (P, Q))
    dout = _data(out_r.shape, dtype, seed + 1)
    dx_r = ref("adaptive_avgpool2d_backward")(dout, x.shape)
    for f in numba_versions("adaptive_avgpool2d_forward"):
        assert_close(f"out {f.name}", f(x, (P, Q)), out_r)
    for b in numba_versions("adaptive_avgpool2d_backward"):
        assert_close(f"dx {b.name}", b(dout, x.shape), dx_r)


def test_every_op_has_numpy_and_numba():
    for op in ["maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward",
               "avgpool2d_backward", "adaptive_avgpool2d_forward", "adaptive_avgpool2d_backward"]:
        assert registry.versions(op, "numpy") == [1], op
        assert 1 in registry.versions(op, "numba"), op


def test_maxpool_2x2_fast_path_large_and_odd():
    # the fused 2x2/s2 path of v2 with odd H/W (last row/column unused) and ceil_mode fallback
    x = _data((2, 3, 17, 15), np.float32, 7)
    dout = _data((2, 3, 8, 7), np.float32, 8)
    for cm in (False, True):
        out_r, arg_r = ref("maxpool2d_forward")(x, 2, None, 0, 1, cm)
        for f in numba_versions("maxpool2d_forward"):
            out, arg = f(x, 2, None, 0, 1, cm)
            assert_close(f"out {f.name}", out, out_r, atol=0, rtol=0)
            assert np.array_equal(arg, arg_r), f.name
    dx_r = ref("maxpool2d_backward")(dout, ref("maxpool2d_forward")(x, 2)[1], x.shape)
    for b in numba_versions("maxpool2d_backward"):
        assert_close(f"dx {b.name}", b(dout, ref("maxpool2d_forward")(x, 2)[1], x.shape), dx_r)


# planes wide enough for numba v3's paths: rows read directly (2x2 and 3x3 / stride 2, no
# padding) and the padded phase-split scratch (padding, ceil_mode, dilation, other windows)
LARGE_MAX_CASES = [  # shape, kernel, stride, padding, dilation, ceil_mode
    ((2, 3, 57, 61), 3, 2, 0, 1, False),       # direct 3x3/2, odd sizes
    ((1, 2, 112, 112), 2, 2, 0, 1, False),     # direct 2x2/2
    ((1, 2, 55, 55), 3, 2, 1, 1, True),        # scratch: padding, ceil_mode
    ((2, 2, 40, 37), (2, 3), (1, 2), (1, 1), (2, 1), False),  # 6 taps, dilation
    ((1, 3, 33, 30), 3, 1, 1, 1, False),       # stride 1
    ((1, 2, 31, 29), 2, 3, 1, 1, True),        # stride 3 > window
]


def test_large_cases_cover_v3_paths():
    from kernels.pool2d import _v3_direct
    paths = []
    for shape, k, s, p, d, cm in LARGE_MAX_CASES:
        kh, kw = (k, k) if isinstance(k, int) else k
        sh, sw = (s, s) if isinstance(s, int) else s
        ph, pw = (p, p) if isinstance(p, int) else p
        dh, dw = (d, d) if isinstance(d, int) else d
        P, Q = pool2d_output_size(shape[2:], (kh, kw), (sh, sw), (ph, pw), (dh, dw), cm)
        paths.append(_v3_direct(*shape[2:], P, Q, kh, kw, sh, sw, ph, pw, dh, dw))
    assert paths == [3, 2, 0, 0, 0, 0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s,p,d,cm", LARGE_MAX_CASES)
def test_maxpool_large_planes(shape, k, s, p, d, cm, dtype):
    x = _data(shape, dtype, 21)
    x[..., ::3, ::2] = np.round(x[..., ::3, ::2])                # ties
    x[0, 0, :6, :] = -np.inf                                     # all -inf windows
    x.reshape(-1)[5::97] = np.nan                                # scattered NaN
    out_r, arg_r = ref("maxpool2d_forward")(x, k, s, p, d, cm)
    dout = _data(out_r.shape, dtype, 22)
    dx_r = ref("maxpool2d_backward")(dout, arg_r, shape)
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # F-ordered planes
    for f in numba_versions("maxpool2d_forward"):
        for xx in (x, xt):
            out, arg = f(xx, k, s, p, d, cm)
            np.testing.assert_array_equal(out, out_r, err_msg=f"out {f.name}")  # NaN, -inf
            assert arg.dtype == np.int64 and np.array_equal(arg, arg_r), f"argmax {f.name}"
    for b in numba_versions("maxpool2d_backward"):
        assert_close(f"dx {b.name}", b(dout, arg_r, shape), dx_r)


LARGE_AVG_CASES = [  # shape, kernel, stride, padding, ceil_mode
    ((2, 3, 57, 61), 3, 2, 0, False),
    ((1, 2, 112, 112), 2, 2, 0, False),
    ((1, 2, 55, 55), 3, 2, 1, True),
    ((2, 2, 40, 37), (2, 3), (1, 2), (1, 1), True),
    ((1, 2, 31, 29), 2, 3, 1, True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cip,div", [(True, None), (False, None), (True, -3)])
@pytest.mark.parametrize("shape,k,s,p,cm", LARGE_AVG_CASES)
def test_avgpool_large_planes(shape, k, s, p, cm, cip, div, dtype):
    x = _data(shape, dtype, 23)
    out_r = ref("avgpool2d_forward")(x, k, s, p, cm, cip, div)
    dout = _data(out_r.shape, dtype, 24)
    dx_r = ref("avgpool2d_backward")(dout, shape, k, s, p, cm, cip, div)
    # v3 sums in the reference's order and dtype: identical results
    exact = {3: dict(atol=0, rtol=0)}
    for f in numba_versions("avgpool2d_forward"):
        assert_close(f"out {f.name}", f(x, k, s, p, cm, cip, div), out_r,
                     **exact.get(f.version, {}))
    for b in numba_versions("avgpool2d_backward"):
        assert_close(f"dx {b.name}", b(dout, shape, k, s, p, cm, cip, div), dx_r,
                     **exact.get(b.version, {}))


# ----------------------------------------------------------------------------
# reference vs PyTorch
# ----------------------------------------------------------------------------
MAX_CASES = [  # shape, kernel, stride, padding, dilation, ceil_mode
    ((2, 3, 8, 8), 2, None, 0, 1, False),
    ((1, 2, 7, 9), 2, 2, 0, 1, True),          # ceil: extra partial window
    ((1, 2, 5, 5), 2, 2, 1, 1, True),          # ceil: last window would start in right pad
    ((1, 1, 6, 6), 3, 2, 1, 1, True),
    ((2, 2, 9, 11), 3, 2, 1, 2, False),        # dilation
    ((1, 2, 10, 7), (3, 2), (2, 3), (1, 0), (2, 1), True),
    ((1, 1, 7, 7), 2, 3, 0, 1, False),         # stride > window
    ((1, 1, 7, 7), 2, 3, 1, 1, True),
    ((1, 1, 1, 1), 1, 1, 0, 1, False),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s,p,d,cm", MAX_CASES)
def test_maxpool_reference_matches_torch(shape, k, s, p, d, cm, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = _data(shape, dtype, 1)
    x[..., ::2, ::3] = 0.5                                       # ties
    out, arg = ref("maxpool2d_forward")(x, k, s, p, d, cm)
    xt = torch.from_numpy(x).requires_grad_()
    to, ti = F.max_pool2d(xt, k, s if s is not None else k, p, d, cm, return_indices=True)
    assert_close("out", out, to.detach().numpy(), atol=0, rtol=0)
    assert np.array_equal(arg, ti.numpy()), "argmax differs from torch"
    g = _data(out.shape, dtype, 2)
    to.backward(torch.from_numpy(g))
    assert_close("dx", ref("maxpool2d_backward")(g, arg, shape), xt.grad.numpy())


AVG_CASES = [  # shape, kernel, stride, padding, ceil_mode
    ((2, 3, 8, 8), 2, None, 0, False),
    ((1, 2, 7, 9), 3, 2, 1, True),             # ceil_mode window past the padded input
    ((1, 1, 5, 5), 2, 2, 1, True),
    ((1, 1, 6, 6), 3, 2, 1, True),
    ((1, 2, 10, 7), (3, 2), (2, 3), (1, 1), True),
    ((1, 1, 7, 7), 2, 3, 1, False),
    ((1, 1, 4, 4), 4, 1, 2, True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cip,div", [(True, None), (False, None), (True, 5)])
@pytest.mark.parametrize("shape,k,s,p,cm", AVG_CASES)
def test_avgpool_reference_matches_torch(shape, k, s, p, cm, cip, div, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = _data(shape, dtype, 3)
    out = ref("avgpool2d_forward")(x, k, s, p, cm, cip, div)
    xt = torch.from_numpy(x).requires_grad_()
    to = F.avg_pool2d(xt, k, s, p, cm, cip, div)
    assert_close("out", out, to.detach().numpy())
    g = _data(out.shape, dtype, 4)
    to.backward(torch.from_numpy(g))
    assert_close("dx", ref("avgpool2d_backward")(g, shape, k, s, p, cm, cip, div),
                 xt.grad.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,osz", [((2, 3, 10, 7), (3, 4)), ((1, 2, 7, 7), 5),
                                       ((1, 1, 5, 13), (4, None)), ((1, 1, 3, 3), 7),
                                       ((1, 2, 8, 8), 1)])
def test_adaptive_reference_matches_torch(shape, osz, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = _data(shape, dtype, 5)
    out = ref("adaptive_avgpool2d_forward")(x, osz)
    xt = torch.from_numpy(x).requires_grad_()
    to = F.adaptive_avg_pool2d(xt, osz)
    assert_close("out", out, to.detach().numpy())
    g = _data(out.shape, dtype, 6)
    to.backward(torch.from_numpy(g))
    assert_close("dx", ref("adaptive_avgpool2d_backward")(g, shape), xt.grad.numpy())


@pytest.mark.parametrize("args", [(5, 2, 2, 0, 1, True), (5, 2, 2, 1, 1, True),
                                  (6, 3, 2, 1, 1, True), (9, 3, 2, 1, 2, False),
                                  (7, 2, 3, 1, 1, True), (112, 2, 2, 0, 1, False)])
def test_output_size_matches_torch(args):
    torch = pytest.importorskip("torch")
    n, k, s, p, d, cm = args
    got = torch.nn.functional.max_pool2d(torch.zeros(1, 1, n, n), k, s, p, d, cm).shape[-1]
    assert pool2d_output_size(n, k, s, p, d, cm) == got
    assert pool2d_output_size((n, n), k, (s, s), p, d, cm) == (got, got)


# ----------------------------------------------------------------------------
# reference backward vs central differences (float64)
# ----------------------------------------------------------------------------
def _gradcheck(forward, backward, x, out_shape_seed=0):
    out = forward(x)
    w = _data(out.shape, np.float64, 100 + out_shape_seed)      # loss = sum(w * out)
    num = numerical_grad(lambda: float((w * forward(x)).sum()), x)
    assert_close("dx vs central differences", backward(w), num, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("k,s,p,d,cm", [(2, None, 0, 1, False), (3, 2, 1, 1, True),
                                        (3, 1, 1, 2, False), ((2, 3), (1, 2), (1, 1), 1, True)])
def test_maxpool_reference_gradient(k, s, p, d, cm):
    x = np.random.default_rng(9).permutation(70).reshape(1, 2, 5, 7) * 0.1  # no ties
    fwd = ref("maxpool2d_forward")
    arg = fwd(x, k, s, p, d, cm)[1]
    _gradcheck(lambda a: fwd(a, k, s, p, d, cm)[0],
               lambda g: ref("maxpool2d_backward")(g, arg, x.shape), x)


@pytest.mark.parametrize("k,s,p,cm,cip,div", [(2, None, 0, False, True, None),
                                              (3, 2, 1, True, True, None),
                                              (3, 2, 1, True, False, None),
                                              ((2, 3), (3, 1), (1, 1), True, False, 4)])
def test_avgpool_reference_gradient(k, s, p, cm, cip, div):
    x = _data((1, 2, 7, 6), np.float64, 11)
    _gradcheck(lambda a: ref("avgpool2d_forward")(a, k, s, p, cm, cip, div),
               lambda g: ref("avgpool2d_backward")(g, x.shape, k, s, p, cm, cip, div), x)


@pytest.mark.parametrize("osz", [(3, 4), 5, 2])
def test_adaptive_reference_gradient(osz):
    x = _data((1, 2, 7, 6), np.float64, 12)
    _gradcheck(lambda a: ref("adaptive_avgpool2d_forward")(a, osz),
               lambda g: ref("adaptive_avgpool2d_backward")(g, x.shape), x)


# ----------------------------------------------------------------------------
# bad inputs, non-contiguous input, NaN
# ----------------------------------------------------------------------------
X = np.zeros((1, 2, 6, 6), np.float32)


def _impls(op):
    return [ref(op)] + numba_versions(op)


@pytest.mark.parametrize("kwargs,exc,name", [
    (dict(kernel_size=0), ValueError, "kernel_size"),
    (dict(kernel_size=(2, 2, 2)), ValueError, "kernel_size"),
    (dict(kernel_size=2.5), TypeError, "kernel_size"),
    (dict(kernel_size=2, stride=0), ValueError, "stride"),
    (dict(kernel_size=2, padding=-1), ValueError, "padding"),
    (dict(kernel_size=3, padding=2), ValueError, "padding"),
    (dict(kernel_size=2, dilation=0), ValueError, "dilation"),
    (dict(kernel_size=7), ValueError, "kernel_size"),           # output size 0
    (dict(kernel_size=4, dilation=2), ValueError, "kernel_size"),
])
def test_maxpool_bad_hyperparameters(kwargs, exc, name):
    for f in _impls("maxpool2d_forward"):
        with pytest.raises(exc) as e:
            f(X, **kwargs)
        assert str(e.value).startswith(name), (f.name, str(e.value))


def test_padding_message_names_the_numbers():
    with pytest.raises(ValueError, match=r"^padding: .*padding=\(2, 2\).*kernel_size=\(3, 3\)"):
        ref("maxpool2d_forward")(X, 3, padding=2)


@pytest.mark.parametrize("x,exc,name", [
    (np.zeros((2, 6, 6), np.float32), ValueError, "x"),
    (np.zeros((1, 1, 2, 6, 6), np.float32), ValueError, "x"),
    (np.zeros((1, 2, 6, 6), np.int64), TypeError, "x"),
    (np.zeros((1, 2, 6, 6), np.float16), TypeError, "x"),
    ([[[[1.0]]]], TypeError, "x"),
])
def test_bad_input_arrays(x, exc, name):
    for op, args in [("maxpool2d_forward", (2,)), ("avgpool2d_forward", (2,)),
                     ("adaptive_avgpool2d_forward", (2,))]:
        for f in _impls(op):
            with pytest.raises(exc) as e:
                f(x, *args)
            assert str(e.value).startswith(name), (f.name, str(e.value))


def test_bad_avg_and_adaptive_arguments():
    for f in _impls("avgpool2d_forward"):
        with pytest.raises(ValueError, match="^divisor_override"):
            f(X, 2, divisor_override=0)
        with pytest.raises(TypeError, match="^divisor_override"):
            f(X, 2, divisor_override=1.5)
        with pytest.raises(TypeError, match="^count_include_pad"):
            f(X, 2, count_include_pad="no")
    for f in _impls("adaptive_avgpool2d_forward"):
        with pytest.raises(ValueError, match="^output_size"):
            f(X, 0)
        with pytest.raises(ValueError, match="^output_size"):
            f(X, (2, 3, 4))
    for b in _impls("avgpool2d_backward"):
        with pytest.raises(ValueError, match="^dout"):
            b(np.zeros((1, 2, 4, 4), np.float32), X.shape, 2)     # expects (1, 2, 3, 3)
        with pytest.raises(ValueError, match="^x_shape"):
            b(np.zeros((1, 2, 3, 3), np.float32), (1, 2, 6), 2)
    for b in _impls("adaptive_avgpool2d_backward"):
        with pytest.raises(ValueError, match="^x_shape"):
            b(np.zeros((1, 3, 3, 3), np.float32), X.shape)        # C differs


def test_bad_argmax():
    dout = np.zeros((1, 2, 3, 3), np.float32)
    arg = np.zeros((1, 2, 3, 3), np.int64)
    for b in _impls("maxpool2d_backward"):
        with pytest.raises(TypeError, match="^argmax"):
            b(dout, arg.astype(np.int32), X.shape)
        with pytest.raises(ValueError, match="^argmax"):
            b(dout, arg[..., :2], X.shape)
        with pytest.raises(ValueError, match="^argmax"):
            b(dout, arg + 36, X.shape)                           # outside the 6x6 plane
        with pytest.raises(ValueError, match="^argmax"):
            b(dout, arg - 1, X.shape)
        with pytest.raises(TypeError, match="^dout"):
            b(dout.astype(np.int32), arg, X.shape)
        with pytest.raises(ValueError, match="^x_shape"):
            b(dout, arg, (1, 2, 6))


@pytest.mark.parametrize("op,args", [("maxpool2d_forward", (3, 2, 1)),
                                     ("avgpool2d_forward", (3, 2, 1, True, False)),
                                     ("adaptive_avgpool2d_forward", ((3, 2),))])
def test_non_contiguous_input(op, args):
    base = _data((2, 7, 9, 3), np.float64, 13)
    x = base.transpose(0, 3, 1, 2)[:, :, :, ::2]                  # (2, 3, 7, 5), strided
    assert not x.flags.c_contiguous
    want = ref(op)(np.ascontiguousarray(x), *args)
    for f in _impls(op):
        got = f(x, *args)
        got, want_ = (got[0], want[0]) if isinstance(got, tuple) else (got, want)
        assert_close(f"out {f.name}", got, want_)


def test_nan_propagates():
    x = _data((1, 2, 6, 6), np.float32, 14)
    x[0, 0, 1, 1] = np.nan                                       # window (0, 0) of 2x2/s2
    x[0, 1, 4, 4] = x[0, 1, 5, 5] = np.nan                       # two NaN: last one wins
    torch = None
    try:
        import torch
    except ImportError:
        pass
    for f in _impls("maxpool2d_forward"):
        for k, s, p in [(2, 2, 0), (3, 1, 1)]:
            out, arg = f(x, k, s, p)
            r_out, r_arg = ref("maxpool2d_forward")(x, k, s, p)
            assert_close(f"out {f.name}", out, r_out, atol=0, rtol=0)
            assert np.array_equal(arg, r_arg), f.name
            if torch is not None:
                t_out, t_arg = torch.nn.functional.max_pool2d(
                    torch.from_numpy(x), k, s, p, return_indices=True)
                assert_close("out vs torch", out, t_out.numpy(), atol=0, rtol=0)
                assert np.array_equal(arg, t_arg.numpy()), "argmax vs torch"
        out, arg = f(x, 2)
        assert np.isnan(out[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 7
        assert np.isnan(out[0, 1, 2, 2]) and arg[0, 1, 2, 2] == 35
        assert np.isfinite(out[0, 0, 1:, :]).all()
        dx = registry.get("maxpool2d_backward", f.backend, 1)(np.ones_like(out), arg, x.shape)
        assert dx[0, 0, 1, 1] == 1 and dx[0, 1, 5, 5] == 1 and dx[0, 1, 4, 4] == 0
    for op, args in [("avgpool2d_forward", (2,)), ("adaptive_avgpool2d_forward", (3,))]:
        for f in _impls(op):
            out = f(x, *args)
            assert np.isnan(out[0, 0, 0, 0]) and np.isnan(out[0, 1, 2, 2]), f.name
            assert np.isfinite(out[0, 0, 1:, :]).all(), f.name


def test_all_minus_inf_window_argmax_like_torch():
    x = np.full((1, 1, 4, 4), -np.inf, np.float32)
    for f in _impls("maxpool2d_forward"):
        out, arg = f(x, 3, 2, 1)
        assert np.all(out == -np.inf)
        np.testing.assert_array_equal(arg[0, 0], [[0, 1], [4, 5]])  # first in-bounds cell


def test_empty_batch():
    x = np.zeros((0, 3, 6, 6), np.float32)
    for f in _impls("maxpool2d_forward"):
        out, arg = f(x, 2)
        assert out.shape == arg.shape == (0, 3, 3, 3)
        for b in _impls("maxpool2d_backward"):
            assert b(out, arg, x.shape).shape == x.shape
    for f, b in zip(_impls("avgpool2d_forward"), _impls("avgpool2d_backward")):
        assert b(f(x, 2, ceil_mode=True), x.shape, 2, ceil_mode=True).shape == x.shape
    for f, b in zip(_impls("adaptive_avgpool2d_forward"), _impls("adaptive_avgpool2d_backward")):
        assert b(f(x, 4), x.shape).shape == x.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (2, 3, 5, 7), (2, 1, 9, 11), (1, 1, 2, 2)])
def test_maxpool_v4_pair_view_matches_reference(shape, dtype):
    """numba v4's 2x2/2 pair-view path: even and odd widths (rows at odd flat offsets read the
    pairs' other halves), a trailing row and column outside every window, ties (first maximum
    in scan order), NaN (the last NaN wins), -inf; it must take the pair path."""
    from kernels import pool2d
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(-2, 3, size=shape).astype(dtype)        # many ties
    x.reshape(-1)[::7] = np.nan
    x.reshape(-1)[3::11] = -np.inf
    N, C, H, W = shape
    P, Q = H // 2, W // 2
    assert pool2d._v4_pairs(x, 2, 2, 2, 2, 0, 0, 1, 1, P, Q, H, W) is not None
    got = registry.get("maxpool2d_forward", "numba", 4)(x, 2)
    ref = registry.get("maxpool2d_forward", "numpy")(x, 2)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_maxpool_v4_falls_back_where_the_pair_view_cannot_alias():
    """An odd-sized buffer, a view off the pair alignment, a non-contiguous input, 3x3 and
    padding run v3's paths; the results still equal the reference."""
    from kernels import pool2d
    rng = np.random.default_rng(0)
    base = rng.standard_normal(1 + 2 * 3 * 6 * 8).astype(np.float32)
    cases = [(rng.standard_normal((1, 1, 5, 5)).astype(np.float32), {}),      # odd size
             (base[1:].reshape(2, 3, 6, 8), {}),                               # off alignment
             (rng.standard_normal((2, 3, 6, 16)).astype(np.float32)[..., ::2], {}),
             (rng.standard_normal((2, 3, 7, 7)).astype(np.float32), dict(kernel_size=3)),
             (rng.standard_normal((2, 3, 6, 6)).astype(np.float32), dict(padding=1))]
    for x, kw in cases:
        kw = dict(dict(kernel_size=2, stride=2), **kw)
        got = registry.get("maxpool2d_forward", "numba", 4)(x, **kw)
        ref = registry.get("maxpool2d_forward", "numpy")(x, **kw)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
    H, W = 5, 5
    assert pool2d._v4_pairs(cases[0][0], 2, 2, 2, 2, 0, 0, 1, 1, 2, 2, H, W) is None
    assert pool2d._v4_pairs(cases[1][0], 2, 2, 2, 2, 0, 0, 1, 1, 3, 4, 6, 8) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (1, 2, 8, 10), (2, 1, 9, 6), (1, 1, 3, 3),
                                   (1, 3, 4, 5)])
def test_maxpool_v4_flat_3x3_matches_reference(shape, dtype, monkeypatch):
    """numba v4's 3x3/2 flat path: odd widths (copied to an even pitch), even widths, rows and
    columns outside every window, ties, NaN, -inf; it must run."""
    from kernels import pool2d
    ran = []
    real = pool2d._maxpool_fwd_v4_flat3
    monkeypatch.setattr(pool2d, "_maxpool_fwd_v4_flat3", lambda *a: ran.append(1) or real(*a))
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(-2, 3, size=shape).astype(dtype)        # many ties
    x.reshape(-1)[::5] = np.nan
    x.reshape(-1)[2::9] = -np.inf
    got = registry.get("maxpool2d_forward", "numba", 4)(x, 3, 2)
    ref = registry.get("maxpool2d_forward", "numpy")(x, 3, 2)
    assert ran
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("shape,k,s,p,d,cm", [
    ((3, 12, 13, 13), 3, 2, 0, 1, False),           # full groups of VW planes and a partial one
    ((2, 20, 9, 11), (3, 2), (2, 1), (1, 1), (1, 2), True),
    ((1, 35, 16, 16), 2, 2, 0, 1, False),
    ((2, 16, 7, 7), 3, 1, 1, 2, False),
    ((1, 5, 6, 6), 4, 3, 2, 1, True),               # fewer planes than lanes
    ((1, 17, 1, 64), (1, 3), (1, 2), (0, 1), 1, False),
])
def test_maxpool_v5_lanes_matches_reference(shape, k, s, p, d, cm, monkeypatch):
    """numba v5's planes-as-lanes path on full and partial groups of planes, padding, dilation,
    ceil_mode, ties, NaN and -inf: bit-identical out and argmax; it must run."""
    from kernels import pool2d
    ran = []
    real = pool2d._maxpool_fwd_v5_lanes
    monkeypatch.setattr(pool2d, "_maxpool_fwd_v5_lanes", lambda *a: ran.append(1) or real(*a))
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(-2, 3, size=shape).astype(np.float32)        # many ties
    x.reshape(-1)[::7] = np.nan
    x.reshape(-1)[3::11] = -np.inf
    got = registry.get("maxpool2d_forward", "numba", 5)(x, k, s, p, d, cm)
    want = ref("maxpool2d_forward")(x, k, s, p, d, cm)
    assert ran
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_maxpool_v5_falls_back_to_v4():
    """float64, planes past _LANES_MAX_HW and a dilated window holding no input element run
    v4 (the tap table is None for the last); the results still match the reference."""
    from kernels import pool2d
    assert pool2d._v5_taps(2, 8, 2, 2, 1, 1, 1, 0, 3, 1, 1, 7) is None   # rows -1 and 2 of 2
    assert pool2d._v5_taps(4, 4, 2, 2, 2, 2, 0, 0, 1, 1, 2, 2) is not None
    rng = np.random.default_rng(3)
    for x, args in [(rng.standard_normal((1, 2, 9, 9)), (3, 2)),
                    (rng.standard_normal((1, 1, 65, 64)).astype(np.float32), (2, 2)),
                    (rng.standard_normal((1, 3, 2, 8)).astype(np.float32), (2, 1, (1, 0), (3, 1)))]:
        got = registry.get("maxpool2d_forward", "numba", 5)(x, *args)
        want = ref("maxpool2d_forward")(x, *args)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("lanes", [8, 16])
def test_lane_window_max_intrinsic_at_both_widths(lanes):
    """v5's per-output intrinsic at AVX2's 8 and AVX-512's 16 lanes: lane-wise first maximum
    over the taps in order (ties keep the earlier tap, NaN wins, -inf only where all are)."""
    from numba import njit
    from kernels import pool2d
    kernel = pool2d._make_lane_window_max(lanes)

    @njit
    def run(T, taps, ptr, mo, ko):
        for o in range(ptr.size - 1):
            kernel(T, taps, ptr[o], ptr[o + 1], mo, ko, o * lanes)

    rng = np.random.default_rng(lanes)
    E = 12
    T = rng.integers(-2, 3, size=(E, lanes)).astype(np.float32)
    T[3, ::3] = np.nan
    T[:, 5] = -np.inf
    ptr = np.array([0, 1, 4, 9, 12], np.int64)
    taps = np.array([7, 0, 3, 2, 11, 4, 3, 9, 1, 5, 6, 10], np.int64)
    mo = np.zeros(4 * lanes, np.float32)
    ko = np.zeros(4 * lanes, np.float32)
    run(T.reshape(-1), taps, ptr, mo, ko)
    for o in range(4):
        for j in range(lanes):
            m, k = T[taps[ptr[o]], j], taps[ptr[o]]
            for t in taps[ptr[o] + 1:ptr[o + 1]]:
                if T[t, j] > m or np.isnan(T[t, j]):
                    m, k = T[t, j], t
            assert (mo[o * lanes + j] == m or (np.isnan(m) and np.isnan(mo[o * lanes + j])))
            assert ko[o * lanes + j] == k
