"""Layer-level checks: every layer's gradients against central differences
(float64), an end-to-end CNN gradient check, state_dict names/round trips,
and parity with torch.nn where torch is installed."""
import numpy as np
import pytest

import layers as L
from layers.base import Module
from util import assert_close, numerical_grad

BACKENDS = ["numpy", "numba"]
F64 = dict(dtype=np.float64)


def gradcheck_layer(layer: Module, x: np.ndarray, seed=0, atol=1e-6, rtol=1e-5):
    """Compare backward() with central differences of sum(forward(x) * g)."""
    g = np.random.default_rng(seed).standard_normal(layer.forward(x).shape)
    f = lambda: float((layer.forward(x) * g).sum())
    layer.zero_grad()
    layer.forward(x)
    dx = layer.backward(g)
    assert_close(f"{type(layer).__name__}.dx", dx, numerical_grad(f, x), atol, rtol)
    for name, p in layer.named_parameters():
        assert_close(f"{type(layer).__name__}.{name}.grad", p.grad, numerical_grad(f, p.data), atol, rtol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make, shape", [
    (lambda b: L.Conv2d(2, 3, 3, stride=2, padding=1, dilation=1, seed=0, backend=b, **F64), (2, 2, 6, 5)),
    (lambda b: L.Conv2d(3, 2, (2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1), seed=1, backend=b, **F64), (1, 3, 5, 7)),
    (lambda b: L.Conv2d(2, 2, 1, bias=False, seed=2, backend=b, **F64), (2, 2, 3, 3)),
    (lambda b: L.Conv1d(3, 4, 3, padding=1, seed=3, backend=b, **F64), (2, 3, 7)),
    (lambda b: L.MaxPool2d(2, backend=b), (2, 2, 4, 6)),
    (lambda b: L.MaxPool2d(3, stride=2, padding=1, ceil_mode=True, backend=b), (1, 2, 7, 6)),
    (lambda b: L.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True, backend=b), (2, 1, 7, 5)),
    (lambda b: L.AdaptiveAvgPool2d((2, 3), backend=b), (1, 2, 5, 7)),
    (lambda b: L.Linear(5, 3, seed=4, backend=b, **F64), (4, 5)),
    (lambda b: L.Linear(5, 3, seed=4, backend=b, **F64), (2, 3, 5)),
    (lambda b: L.ReLU(backend=b), (3, 4)),
    (lambda b: L.Sigmoid(backend=b), (3, 4)),
    (lambda b: L.Tanh(backend=b), (3, 4)),
    (lambda b: L.Flatten(backend=b), (2, 3, 2, 2)),
])
def test_layer_gradients(backend, make, shape):
    x = np.random.default_rng(7).standard_normal(shape)
    x += np.sign(x) * 0.05        # keep ReLU away from its kink
    gradcheck_layer(make(backend), x)


def small_cnn(backend, dtype=np.float64):
    return L.Sequential(
        L.Conv2d(1, 3, 3, padding=1, seed=0, backend=backend, dtype=dtype),
        L.ReLU(backend=backend),
        L.MaxPool2d(2, backend=backend),
        L.Flatten(backend=backend),
        L.Linear(3 * 3 * 3, 4, seed=1, backend=backend, dtype=dtype),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_end_to_end_cnn_cross_entropy_gradient(backend):
    rng = np.random.default_rng(8)
    model, loss_fn = small_cnn(backend), L.SoftmaxCrossEntropy(backend=backend)
    x, t = rng.standard_normal((3, 1, 6, 6)), np.array([0, 3, 1])
    f = lambda: float(loss_fn.forward(model.forward(x), t))
    model.zero_grad()
    f()
    dx = model.backward(loss_fn.backward())
    assert_close("dx", dx, numerical_grad(f, x), 1e-7, 1e-5)
    for name, p in model.named_parameters():
        assert_close(f"{name}.grad", p.grad, numerical_grad(f, p.data), 1e-7, 1e-5)


def test_mse_loss_layer_gradient():
    rng = np.random.default_rng(9)
    p, t = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    for backend in BACKENDS:
        loss = L.MSELoss(backend=backend)
        f = lambda: float(loss.forward(p, t))
        f()
        assert_close("dpred", loss.backward(), numerical_grad(f, p), 1e-8, 1e-6)


def test_parameter_gradients_accumulate_and_zero_grad():
    lin = L.Linear(3, 2, seed=0, **F64)
    x, g = np.ones((4, 3)), np.ones((4, 2))
    lin.forward(x)
    lin.backward(g)
    once = lin.weight.grad.copy()
    lin.backward(g)
    assert_close("accumulated", lin.weight.grad, 2 * once)
    lin.zero_grad()
    assert not lin.weight.grad.any() and not lin.bias.grad.any()


def test_names_state_dict_and_train_eval():
    model = small_cnn("numpy", np.float32)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "4.weight", "4.bias"]
    sd = model.state_dict()
    assert list(sd) == names
    other = small_cnn("numba", np.float32)
    other[0].weight.data[...] = 0
    other.load_state_dict(sd)
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    assert_close("same output", other.forward(x), model.forward(x), 1e-5, 1e-5)
    model.eval()
    assert not any(m.training for _, m in model.named_modules())
    model.train()
    assert all(m.training for _, m in model.named_modules())


def test_load_state_dict_errors_name_the_key():
    model = small_cnn("numpy")
    sd = model.state_dict()
    bad = dict(sd)
    bad["4.weight"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"state_dict\['4.weight'\]: expected shape \(4, 27\), got \(2, 2\)"):
        model.load_state_dict(bad)
    missing = dict(sd)
    del missing["0.bias"]
    with pytest.raises(KeyError, match="missing keys \\['0.bias'\\]"):
        model.load_state_dict(missing)
    extra = dict(sd, **{"9.weight": np.zeros(1)})
    with pytest.raises(KeyError, match="unexpected keys \\['9.weight'\\]"):
        model.load_state_dict(extra)


def test_backward_before_forward_is_a_clear_error():
    for layer in (L.Conv2d(1, 1, 1), L.Linear(2, 2), L.MaxPool2d(2), L.ReLU(), L.SoftmaxCrossEntropy()):
        with pytest.raises(RuntimeError, match="before forward"):
            layer.backward(np.ones((1, 1, 1, 1), np.float32))


def test_layer_bad_input():
    with pytest.raises(ValueError, match="x: expected a 4-d array"):
        L.Conv2d(3, 2, 3).forward(np.ones((3, 5, 5), np.float32))
    with pytest.raises(ValueError, match="x: expected a 3-d array"):
        L.Conv1d(3, 2, 3).forward(np.ones((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match="x: expected last dimension 4"):
        L.Linear(4, 2).forward(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got int64"):
        L.Conv2d(1, 1, 1).forward(np.ones((1, 1, 2, 2), np.int64))
    with pytest.raises(ValueError, match="in_channels: expected a positive int"):
        L.Conv2d(0, 1, 1)


def test_torch_parity_conv_pool_linear():
    torch = pytest.importorskip("torch")
    tn = torch.nn
    ours = small_cnn("numba")
    ref = tn.Sequential(tn.Conv2d(1, 3, 3, padding=1), tn.ReLU(), tn.MaxPool2d(2), tn.Flatten(),
                        tn.Linear(27, 4)).double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = ref(xt)
    g = np.random.default_rng(1).standard_normal(out_t.shape)
    out_t.backward(torch.from_numpy(g))
    assert_close("out", ours.forward(x), out_t.detach().numpy())
    ours.zero_grad()
    assert_close("dx", ours.backward(g), xt.grad.numpy())
    for (name, p), (tname, tp) in zip(ours.named_parameters(), ref.named_parameters()):
        assert name == tname
        assert_close(f"{name}.grad", p.grad, tp.grad.numpy())
    # PyTorch-like initialisation bounds: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    conv = L.Conv2d(16, 8, 3, seed=0)
    assert np.abs(conv.weight.data).max() <= 1 / np.sqrt(16 * 9)
    assert np.abs(conv.weight.data).max() > 0.9 / np.sqrt(16 * 9)
