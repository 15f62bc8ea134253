"""Dropout (mask statistics, scaling, eval identity, backward with the saved mask) and
Embedding (kernels numpy vs numba vs array-op GPU versions, scatter-add with repeated ids,
padding_idx, range errors, gradient check, torch parity)."""
import numpy as np
import pytest

import layers as L
from kernels import registry
from util import assert_close, numerical_grad


# ----------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_train_statistics_and_backward(p, dtype):
    drop = L.Dropout(p, seed=0)
    x = np.random.default_rng(1).uniform(1, 2, (200, 300)).astype(dtype)
    y = drop.forward(x)
    assert y.dtype == dtype and y.shape == x.shape
    kept = y != 0
    assert abs(1 - kept.mean() - p) < 0.01                  # ~p of the elements dropped
    assert_close("kept elements scaled by 1/(1-p)", y[kept], (x[kept] / (1 - p)).astype(dtype),
                 1e-6, 1e-6)
    assert abs(y.mean() / x.mean() - 1) < 0.02              # expectation preserved
    g = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
    dx = drop.backward(g)
    assert_close("dx uses the same mask", dx, np.where(kept, g / (1 - p), 0).astype(dtype),
                 1e-6, 1e-6)


def test_dropout_gradient_matches_finite_differences():
    drop = L.Dropout(0.3, seed=3)
    x = np.random.default_rng(4).standard_normal((5, 6))
    drop.forward(x)
    mask = drop._mask.copy()
    g = np.random.default_rng(5).standard_normal(x.shape)
    f = lambda: float((x * mask * g).sum())      # the function with the drawn mask held fixed
    assert_close("dx", drop.backward(g), numerical_grad(f, x), 1e-8, 1e-6)


def test_dropout_eval_identity_seed_and_errors():
    x = np.random.default_rng(6).standard_normal((4, 5)).astype(np.float32)
    drop = L.Dropout(0.5, seed=7).eval()
    assert drop.forward(x) is x
    g = np.ones_like(x)
    assert drop.backward(g) is g
    assert L.Dropout(0.0).forward(x) is x
    a, b = L.Dropout(0.5, seed=11), L.Dropout(0.5, seed=11)
    assert np.array_equal(a.forward(x), b.forward(x))
    assert not np.array_equal(a.forward(x), a.forward(x))   # a fresh mask every call
    with pytest.raises(ValueError, match=r"p: expected a drop probability in \[0, 1\), got 1.0"):
        L.Dropout(1.0)
    with pytest.raises(ValueError, match="p: expected a drop probability"):
        L.Dropout(-0.1)
    with pytest.raises(RuntimeError, match="before forward"):
        L.Dropout().backward(x)
    d = L.Dropout(0.5)
    d.forward(x)
    with pytest.raises(ValueError, match=r"dout: expected shape \(4, 5\)"):
        d.backward(np.ones((5, 4), np.float32))
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64"):
        d.forward(np.ones((2, 2), np.int64))


def test_dropout_in_sequential_train_eval():
    model = L.Sequential(L.Linear(4, 8, seed=0), L.ReLU(), L.Dropout(0.5, seed=1),
                         L.Linear(8, 2, seed=2))
    x = np.random.default_rng(8).standard_normal((16, 4)).astype(np.float32)
    model.eval()
    y1, y2 = model.forward(x), model.forward(x)
    assert np.array_equal(y1, y2)
    model.train()
    assert not np.array_equal(model.forward(x), y1)
    assert model.backward(np.ones((16, 2), np.float32)).shape == x.shape
    assert list(model.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias"]


# ----------------------------------------------------------------------------
# Embedding kernels
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "cuda-emu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("V, D, ids_shape, padding_idx", [
    (7, 3, (5,), None), (10, 40, (4, 6), 2), (3, 65, (2, 3, 4), 0), (5, 1, (0,), None),
])
def test_embedding_kernels_match_reference(backend, dtype, V, D, ids_shape, padding_idx):
    ok, why = registry.backend_status()[backend]
    if not ok:
        pytest.skip(why)
    rng = np.random.default_rng(V * D)
    weight = rng.standard_normal((V, D)).astype(dtype)
    ids = rng.integers(0, V, ids_shape).astype(np.int32)     # many repeats: tests accumulation
    dout = rng.standard_normal(ids_shape + (D,)).astype(dtype)
    out_ref = registry.get("embedding_forward", "numpy")(weight, ids)
    out = registry.get("embedding_forward", backend)(weight, ids)
    assert out.shape == ids_shape + (D,) and out.dtype == dtype
    assert_close("out", out, out_ref, 0, 0)
    dw_ref = np.full((V, D), 0.5, dtype)
    dw = dw_ref.copy()
    registry.get("embedding_backward", "numpy")(dw_ref, dout, ids, padding_idx)
    registry.get("embedding_backward", backend)(dw, dout, ids, padding_idx)
    assert_close("dweight", dw, dw_ref)
    # independent check of the reference: loop over positions
    expect = np.full((V, D), 0.5)
    for i, r in enumerate(ids.reshape(-1)):
        if r != padding_idx:
            expect[r] += dout.reshape(-1, D)[i]
    assert_close("dweight vs loop", dw_ref, expect.astype(dtype))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_embedding_kernel_errors(backend):
    fwd = registry.get("embedding_forward", backend)
    bwd = registry.get("embedding_backward", backend)
    w = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"ids: expected values in \[0, 4\] \(num_embeddings=5\), "
                                         r"got min 0, max 5"):
        fwd(w, np.array([0, 5]))
    with pytest.raises(ValueError, match=r"ids: expected values in \[0, 4\].*min -1"):
        fwd(w, np.array([-1, 2]))
    with pytest.raises(TypeError, match="ids: expected an integer dtype, got float64"):
        fwd(w, np.array([1.0]))
    with pytest.raises(ValueError, match=r"dout: expected shape \(3, 2\)"):
        bwd(np.zeros((5, 2)), np.zeros((3, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="dweight: expected a contiguous array"):
        bwd(np.zeros((5, 4))[:, ::2], np.zeros((1, 2)), np.array([0]))
    with pytest.raises(ValueError, match=r"padding_idx: expected None or an int in \[0, 4\]"):
        bwd(np.zeros((5, 2)), np.zeros((1, 2)), np.array([0]), 5)


# ----------------------------------------------------------------------------
# Embedding layer
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_embedding_layer_forward_backward(backend):
    emb = L.Embedding(6, 4, padding_idx=1, seed=0, backend=backend, dtype=np.float64)
    assert not emb.weight.data[1].any() and emb.weight.data[0].any()     # padding row zeroed
    ids = np.array([[0, 1, 3], [3, 5, 1]])
    out = emb.forward(ids)
    assert out.shape == (2, 3, 4)
    assert_close("rows", out, emb.weight.data[ids], 0, 0)
    g = np.random.default_rng(1).standard_normal(out.shape)
    f = lambda: float((emb.forward(ids) * g).sum())
    emb.zero_grad()
    emb.forward(ids)
    assert emb.backward(g) is None
    num = numerical_grad(f, emb.weight.data)
    num[1] = 0                                   # padding_idx: no gradient by definition
    assert_close("weight.grad", emb.weight.grad, num, 1e-8, 1e-6)
    assert not emb.weight.grad[1].any() and not emb.weight.grad[2].any()
    assert_close("repeated id sums", emb.weight.grad[3], g[0, 2] + g[1, 0])
    # a python list of ids works too
    assert emb.forward([2, 2]).shape == (2, 4)


def test_embedding_layer_errors_and_init():
    emb = L.Embedding(1000, 50, seed=0)
    w = emb.weight.data
    assert w.dtype == np.float32 and abs(w.mean()) < 0.01 and abs(w.std() - 1) < 0.01  # N(0, 1)
    assert L.Embedding(5, 2, padding_idx=-1).padding_idx == 4
    with pytest.raises(ValueError, match=r"ids: expected values in \[0, 999\]"):
        emb.forward(np.array([[3, 1000]]))
    with pytest.raises(ValueError, match=r"padding_idx: expected None or an int in \[-5, 4\]"):
        L.Embedding(5, 2, padding_idx=5)
    with pytest.raises(ValueError, match="embedding_dim: expected a positive int"):
        L.Embedding(5, 0)
    with pytest.raises(RuntimeError, match="before forward"):
        L.Embedding(5, 2).backward(np.ones((1, 2), np.float32))
    assert list(emb.state_dict()) == ["weight"]


def test_embedding_torch_parity():
    torch = pytest.importorskip("torch")
    ours = L.Embedding(8, 3, padding_idx=2, seed=1, dtype=np.float64)
    ref = torch.nn.Embedding(8, 3, padding_idx=2).double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    ids = np.array([[2, 4, 4], [7, 0, 2]])
    g = np.random.default_rng(2).standard_normal((2, 3, 3))
    yt = ref(torch.from_numpy(ids))
    yt.backward(torch.from_numpy(g))
    assert_close("out", ours.forward(ids), yt.detach().numpy(), 0, 0)
    ours.backward(g)
    assert_close("weight.grad", ours.weight.grad, ref.weight.grad.numpy())


def test_cuda_embedding_and_dropout():
    ok, why = registry.backend_status()["cuda"]
    if not ok:
        pytest.skip(why)
    import cupy
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((9, 5))
    ids = rng.integers(0, 9, (4, 7))
    dout = rng.standard_normal((4, 7, 5))
    out = registry.get("embedding_forward", "cuda")(cupy.asarray(weight), cupy.asarray(ids))
    assert isinstance(out, cupy.ndarray)
    assert_close("cuda out", out.get(), weight[ids], 0, 0)
    for pad in (None, 3):
        dw_ref, dw = np.zeros_like(weight), cupy.zeros((9, 5))
        registry.get("embedding_backward", "numpy")(dw_ref, dout, ids, pad)
        registry.get("embedding_backward", "cuda")(dw, cupy.asarray(dout), cupy.asarray(ids), pad)
        assert_close(f"cuda dweight pad={pad}", dw.get(), dw_ref)
    with pytest.raises(ValueError, match=r"ids: expected values in \[0, 8\]"):
        registry.get("embedding_forward", "cuda")(cupy.asarray(weight), cupy.asarray([9]))
    emb = L.Embedding(9, 5, padding_idx=0, seed=1, dtype=np.float64).to("cuda")
    y = emb.forward(cupy.asarray(ids))
    emb.backward(cupy.asarray(dout))
    assert isinstance(y, cupy.ndarray) and isinstance(emb.weight.grad, cupy.ndarray)
    # Dropout on device arrays: stays on the device, same statistics and mask in backward
    drop = L.Dropout(0.4, seed=0)
    x = cupy.ones((300, 300), cupy.float32)
    y = drop.forward(x)
    assert isinstance(y, cupy.ndarray) and y.dtype == cupy.float32
    kept = (y != 0).get()
    assert abs(1 - kept.mean() - 0.4) < 0.01
    assert_close("cuda dropout dx", drop.backward(x).get(), y.get(), 0, 0)
