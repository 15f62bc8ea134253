"""Layers on the GPU backends: ``Module.to`` moves parameters, gradients and buffers and
switches kernels; the dense CUDA kernels (activation.cu, loss.cu, linear via cuBLAS) match the
NumPy reference on "cuda-emu" (and on "cuda" when a GPU exists); CUDA out-of-memory and a
missing GPU give clear errors."""
import numpy as np
import pytest

from kernels import registry
from layers import (Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, Sigmoid,
                    SoftmaxCrossEntropy, Tanh, MSELoss)
from util import assert_close

GPU_BACKENDS = ["cuda-emu", "cuda"]


@pytest.fixture(params=GPU_BACKENDS)
def backend(request):
    ok, why = registry.backend_status()[request.param]
    if not ok:
        pytest.skip(why)
    return request.param


def dev(backend, a):
    if backend == "cuda":
        import cupy
        return cupy.asarray(a)
    return a


def host(a):
    return a.get() if type(a).__module__.startswith("cupy") else np.asarray(a)


def small_cnn(seed=0):
    return Sequential(Conv2d(2, 4, 3, padding=1, seed=seed, backend="numba"), ReLU(backend="numba"),
                      MaxPool2d(2, backend="numba"), Flatten(backend="numba"),
                      Linear(4 * 3 * 3, 5, seed=seed + 1, backend="numba"), Tanh(backend="numba"),
                      Linear(5, 3, seed=seed + 2, backend="numba"))


def train_step(model, x, t):
    loss_fn = SoftmaxCrossEntropy(backend=model.backend)
    model.zero_grad()
    out = model(x)
    loss = loss_fn(out, t)
    dx = model.backward(loss_fn.backward())
    return float(loss), host(out), host(dx), {k: host(p.grad) for k, p in model.named_parameters()}


@pytest.mark.parametrize("op", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_cuda_matches_reference(backend, op, dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 5, 7)) * 4).astype(dtype)
    x[0, 0, 0] = np.nan
    dy = rng.standard_normal(x.shape).astype(dtype)
    y_ref = registry.get(f"{op}_forward", "numpy")(x)
    y = host(registry.get(f"{op}_forward", backend)(dev(backend, x)))
    assert_close(f"{op} y", y, y_ref)
    dx = host(registry.get(f"{op}_backward", backend)(dev(backend, dy), dev(backend, y_ref)))
    assert_close(f"{op} dx", dx, registry.get(f"{op}_backward", "numpy")(dy, y_ref))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_cuda_match_reference(backend, dtype):
    rng = np.random.default_rng(2)
    logits = (rng.standard_normal((9, 6)) * 3).astype(dtype)
    t = rng.integers(0, 6, 9)
    l_ref, p_ref = registry.get("softmax_cross_entropy_forward", "numpy")(logits, t)
    loss, probs = registry.get("softmax_cross_entropy_forward", backend)(dev(backend, logits),
                                                                         dev(backend, t))
    assert_close("ce loss", np.array(loss), np.array(l_ref))
    assert_close("ce probs", host(probs), p_ref)
    d = registry.get("softmax_cross_entropy_backward", backend)(probs, dev(backend, t), 0.5)
    assert_close("ce dlogits", host(d),
                 registry.get("softmax_cross_entropy_backward", "numpy")(p_ref, t, 0.5))
    target = rng.standard_normal(logits.shape).astype(dtype)
    assert_close("mse", np.array(registry.get("mse_forward", backend)(
        dev(backend, logits), dev(backend, target))),
        np.array(registry.get("mse_forward", "numpy")(logits, target)))
    assert_close("mse grad", host(registry.get("mse_backward", backend)(
        dev(backend, logits), dev(backend, target), 2.0)),
        registry.get("mse_backward", "numpy")(logits, target, 2.0))


def test_loss_cuda_rejects_bad_targets(backend):
    logits = dev(backend, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"targets: class indices must lie in \[0, 4\)"):
        registry.get("softmax_cross_entropy_forward", backend)(logits, dev(backend,
                                                                          np.array([0, 4, 1])))
    with pytest.raises(TypeError, match="targets: expected an integer"):
        registry.get("softmax_cross_entropy_forward", backend)(logits, np.zeros(3, np.float32))


def test_cnn_to_gpu_backend_matches_cpu(backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 2, 6, 6)).astype(np.float32)
    t = rng.integers(0, 3, 4)
    cpu = small_cnn()
    ref = train_step(cpu, x, t)
    gpu = small_cnn().to(backend)
    assert gpu.backends == {backend} and gpu.device == ("cuda" if backend == "cuda" else "cpu")
    for _, p in gpu.named_parameters():
        assert type(p.data) is type(dev(backend, x)) and type(p.grad) is type(p.data)
    got = train_step(gpu, dev(backend, x), dev(backend, t))
    assert abs(got[0] - ref[0]) < 1e-5
    assert_close("out", got[1], ref[1])
    assert_close("dx", got[2], ref[2])
    for k in ref[3]:
        assert_close(f"grad {k}", got[3][k], ref[3][k])
    # back to the CPU: NumPy arrays and the CPU backend the model had before
    gpu.to("cpu")
    assert all(isinstance(p.data, np.ndarray) for p in gpu.parameters())
    assert gpu.backends == ({"numba"} if backend == "cuda" else {backend})
    assert_close("state", gpu.state_dict()["0.weight"], cpu.state_dict()["0.weight"])


def test_mse_layer_on_gpu_backend(backend):
    rng = np.random.default_rng(4)
    lin = Sequential(Linear(3, 2, seed=0, backend="numba"), Sigmoid(backend="numba")).to(backend)
    x, y = rng.standard_normal((5, 3)).astype(np.float32), rng.random((5, 2)).astype(np.float32)
    loss = MSELoss(backend=backend)
    val = loss(lin(dev(backend, x)), dev(backend, y))
    lin.backward(loss.backward())
    ref = Sequential(Linear(3, 2, seed=0), Sigmoid())
    ref_loss = MSELoss()
    assert abs(float(val) - float(ref_loss(ref(x), y))) < 1e-6
    ref.backward(ref_loss.backward())
    assert_close("dW", host(lin[0].weight.grad), ref[0].weight.grad)


def test_to_rejects_unknown_device():
    with pytest.raises(ValueError, match="device: expected 'cpu', 'cuda'"):
        small_cnn().to("gpu")


@pytest.mark.skipif(registry.backend_status()["cuda"][0], reason="a GPU is available here")
def test_to_cuda_without_gpu_says_how_to_install():
    model = small_cnn()
    with pytest.raises(registry.BackendUnavailableError, match=r'pip install -e "\.\[gpu\]"'):
        model.to("cuda")
    assert model.backends == {"numba"}          # nothing moved
    assert all(isinstance(p.data, np.ndarray) for p in model.parameters())


@pytest.mark.skipif(not registry.backend_status()["cuda"][0], reason="needs a CUDA GPU")
def test_cuda_layer_rejects_host_input():
    model = small_cnn().to("cuda")
    with pytest.raises(TypeError, match="x: expected a cupy array .GPU memory., got a NumPy"):
        model(np.zeros((1, 2, 6, 6), np.float32))


def test_cuda_out_of_memory_becomes_a_clear_error():
    # CuPy's OutOfMemoryError, imitated (module and message as CuPy raises it) so the
    # translation is tested without a GPU
    oom_type = type("OutOfMemoryError", (MemoryError,), {"__module__": "cupy.cuda.memory"})

    def alloc(*_):
        raise oom_type("Out of memory allocating 8,589,934,592 bytes "
                       "(allocated so far: 1,024 bytes).")

    kernel = registry.Kernel("conv2d_forward", "cuda", 9, alloc, "test")
    with pytest.raises(registry.DeviceOutOfMemoryError,
                       match=r"conv2d_forward\[cuda/v9\]: CUDA out of memory requesting "
                             r"8,589,934,592 bytes \(8192\.0 MiB\)") as info:
        kernel()
    assert info.value.requested_bytes == 8 * 2**30
    assert isinstance(info.value, MemoryError)
    # other errors pass through unchanged
    bad = registry.Kernel("conv2d_forward", "cuda", 9, lambda: 1 / 0, "test")
    with pytest.raises(ZeroDivisionError):
        bad()


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_recurrent_layer_to_gpu_backend_matches_cpu(backend, cls):
    import layers as L
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    dy = rng.standard_normal((4, 3, 2 * 6)).astype(np.float32)
    lengths = np.array([4, 2, 3])

    def run(layer, xs, dys):
        layer.zero_grad()
        out, _ = layer(xs, lengths=lengths)
        dx = layer.backward(dys)
        return host(out), host(dx), {k: host(p.grad) for k, p in layer.named_parameters()}

    def make():
        return getattr(L, cls)(5, 6, num_layers=2, bidirectional=True, seed=0, backend="numba")

    ref = run(make(), x, dy)
    got = run(make().to(backend), dev(backend, x), dev(backend, dy))
    assert_close("out", got[0], ref[0])
    assert_close("dx", got[1], ref[1])
    for k in ref[2]:
        assert_close(f"grad {k}", got[2][k], ref[2][k])
