"""linear / activation / loss kernels: every version against the reference, the
reference against central differences, and bad input."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from kernels import registry
from util import assert_close, numerical_grad

DTYPES = [np.float32, np.float64]


def _versions(op):
    return [(b, v) for b in ("numba",) for v in registry.versions(op, b)]


@pytest.mark.parametrize("dtype", DTYPES)
@given(n=st.integers(1, 7), i=st.integers(1, 9), o=st.integers(1, 9), seed=st.integers(0, 99))
def test_linear_versions_match_reference(dtype, n, i, o, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((n, i)).astype(dtype), rng.standard_normal((o, i)).astype(dtype)
    b, dout = rng.standard_normal(o).astype(dtype), rng.standard_normal((n, o)).astype(dtype)
    ref_out = registry.get("linear_forward", "numpy")(x, w, b)
    ref_dx = registry.get("linear_backward_data", "numpy")(dout, w)
    ref_dw, ref_db = np.ones_like(w), np.ones_like(b)
    registry.get("linear_backward_weight", "numpy")(ref_dw, ref_db, dout, x)
    for backend, v in _versions("linear_forward"):
        assert_close(f"out[{backend}/v{v}]", registry.get("linear_forward", backend, v)(x, w, b), ref_out)
        assert_close(f"dx[{backend}/v{v}]",
                     registry.get("linear_backward_data", backend, v)(dout, w), ref_dx)
        dw, db = np.ones_like(w), np.ones_like(b)   # accumulation starts from ones
        registry.get("linear_backward_weight", backend, v)(dw, db, dout, x)
        assert_close(f"dweight[{backend}/v{v}]", dw, ref_dw)
        assert_close(f"dbias[{backend}/v{v}]", db, ref_db)


def test_linear_reference_gradients():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    g = rng.standard_normal((3, 5))
    f = lambda: float((registry.get("linear_forward")(x, w, b) * g).sum())
    dw, db = np.zeros_like(w), np.zeros_like(b)
    registry.get("linear_backward_weight")(dw, db, g, x)
    assert_close("dx", registry.get("linear_backward_data")(g, w), numerical_grad(f, x), 1e-7, 1e-6)
    assert_close("dweight", dw, numerical_grad(f, w), 1e-7, 1e-6)
    assert_close("dbias", db, numerical_grad(f, b), 1e-7, 1e-6)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_versions_and_gradient(act, dtype):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((3, 4, 5)) * 3).astype(dtype)
    x[0, 0, :2] = [60.0, -60.0]            # saturation must not overflow
    dy = rng.standard_normal(x.shape).astype(dtype)
    fwd, bwd = registry.get(f"{act}_forward"), registry.get(f"{act}_backward")
    y, dx = fwd(x), bwd(dy, fwd(x))
    for backend, v in _versions(f"{act}_forward"):
        yv = registry.get(f"{act}_forward", backend, v)(x)
        assert_close(f"y[{act} {backend}/v{v}]", yv, y)
        assert_close(f"dx[{act} {backend}/v{v}]", registry.get(f"{act}_backward", backend, v)(dy, yv), dx)
    if dtype == np.float64:
        x64 = rng.standard_normal((4, 3)) + 0.05     # keep away from relu's kink
        g = rng.standard_normal(x64.shape)
        f = lambda: float((fwd(x64) * g).sum())
        assert_close(f"d{act}", bwd(g, fwd(x64)), numerical_grad(f, x64), 1e-7, 1e-6)


def test_activation_nan_propagates():
    x = np.array([np.nan, 1.0, -1.0], np.float32)
    for act in ("relu", "sigmoid", "tanh"):
        for backend in ("numpy", "numba"):
            assert np.isnan(registry.get(f"{act}_forward", backend)(x)[0]), (act, backend)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_versions_and_gradient(dtype):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((6, 5)) * 4).astype(dtype)
    t = rng.integers(0, 5, 6)
    loss, probs = registry.get("softmax_cross_entropy_forward")(logits, t)
    d = registry.get("softmax_cross_entropy_backward")(probs, t, 2.0)
    for backend, v in _versions("softmax_cross_entropy_forward"):
        lv, pv = registry.get("softmax_cross_entropy_forward", backend, v)(logits, t)
        assert_close("loss", np.asarray(lv), np.asarray(loss))
        assert_close("probs", pv, probs)
        assert_close("dlogits", registry.get("softmax_cross_entropy_backward", backend, v)(pv, t, 2.0), d)
    if dtype == np.float64:
        f = lambda: 2.0 * float(registry.get("softmax_cross_entropy_forward")(logits, t)[0])
        assert_close("dlogits(num)", d, numerical_grad(f, logits), 1e-7, 1e-6)


def test_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    logits, t = rng.standard_normal((7, 4)), rng.integers(0, 4, 7)
    want = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(t)).item()
    for backend in ("numpy", "numba"):
        got, _ = registry.get("softmax_cross_entropy_forward", backend)(logits, t)
        assert abs(got - want) < 1e-12


def test_mse_versions_and_gradient():
    rng = np.random.default_rng(5)
    p, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    f = lambda: float(registry.get("mse_forward")(p, t))
    num = numerical_grad(f, p)
    for backend in ("numpy", "numba"):
        assert_close(f"mse[{backend}]", np.asarray(registry.get("mse_forward", backend)(p, t)), np.asarray(f()))
        assert_close(f"dmse[{backend}]", registry.get("mse_backward", backend)(p, t), num, 1e-7, 1e-6)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bad_input_names_argument(backend):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="x: expected 4 features"):
        registry.get("linear_forward", backend)(x, np.ones((5, 4), np.float32))
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got int64"):
        registry.get("linear_forward", backend)(np.ones((2, 3), np.int64), np.ones((5, 3), np.float32))
    with pytest.raises(TypeError, match="weight: expected dtype float32"):
        registry.get("linear_forward", backend)(x, np.ones((5, 3), np.float64))
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got float16"):
        registry.get("relu_forward", backend)(x.astype(np.float16))
    with pytest.raises(ValueError, match="targets: class indices"):
        registry.get("softmax_cross_entropy_forward", backend)(x, np.array([0, 3]))
    with pytest.raises(TypeError, match="targets: expected an integer"):
        registry.get("softmax_cross_entropy_forward", backend)(x, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="dy: expected shape"):
        registry.get("tanh_backward", backend)(np.ones((3, 2), np.float32), x)


def test_non_contiguous_input_is_accepted():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 6)).astype(np.float32)[:, ::2]
    w = rng.standard_normal((3, 3)).astype(np.float32)
    for backend in ("numpy", "numba"):
        assert_close("out", registry.get("linear_forward", backend)(x, w), np.ascontiguousarray(x) @ w.T)
