"""BatchNorm: kernels (numpy reference vs an independent formula, numba and the array-op GPU
versions vs the reference), layer gradients vs central differences in train and eval mode,
buffers in state_dict, errors, and parity with torch.nn.BatchNorm1d/2d."""
import numpy as np
import pytest

import layers as L
from kernels import registry
from kernels.batchnorm import BatchNormCache
from util import assert_close, numerical_grad

DTYPES = [np.float32, np.float64]
SHAPES = [(5, 3), (4, 2, 7), (3, 4, 5, 6), (2, 3, 1, 1), (1, 2, 3, 3)]


def bn_formula(x, w, b, mean=None, var=None, eps=1e-5):
    """Independent reference: explicit per-channel loop with np.mean / np.var."""
    y = np.empty_like(x, dtype=np.float64)
    for c in range(x.shape[1]):
        xc = x[:, c].astype(np.float64)
        m = xc.mean() if mean is None else mean[c]
        v = xc.var() if var is None else var[c]
        y[:, c] = (xc - m) / np.sqrt(v + eps) * (1.0 if w is None else w[c]) + \
            (0.0 if b is None else b[c])
    return y


def rand_inputs(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    w = rng.standard_normal(C).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    rm = rng.standard_normal(C).astype(dtype)
    rv = rng.uniform(0.5, 2, C).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, w, b, rm, rv, dy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_reference_forward_matches_formula(shape, dtype):
    x, w, b, rm, rv, _ = rand_inputs(shape, dtype)
    fwd = registry.get("batchnorm_forward", "numpy")
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == np.float32 else {}
    rm0, rv0 = rm.copy(), rv.copy()
    y, cache = fwd(x, w, b, rm, rv, True, 0.1, 1e-5)
    assert y.dtype == dtype and y.shape == x.shape and isinstance(cache, BatchNormCache)
    assert_close("y train", y, bn_formula(x, w, b).astype(dtype), **tol)
    # running stats: EMA with the unbiased batch variance
    axes = (0,) + tuple(range(2, x.ndim))
    xm = x.astype(np.float64)
    assert_close("running_mean", rm, (0.9 * rm0 + 0.1 * xm.mean(axis=axes)).astype(dtype), **tol)
    assert_close("running_var", rv, (0.9 * rv0 + 0.1 * xm.var(axis=axes, ddof=1)).astype(dtype),
                 **tol)
    y, _ = fwd(x, w, b, rm0, rv0, False, 0.1, 1e-5)
    assert_close("y eval", y, bn_formula(x, w, b, rm0, rv0).astype(dtype), **tol)
    y, _ = fwd(x, None, None, None, None, True, 0.1, 1e-5)
    assert_close("y no affine, no running stats", y, bn_formula(x, None, None).astype(dtype), **tol)


@pytest.mark.parametrize("backend", ["numba", "cuda-emu"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training, affine, track", [(True, True, True), (False, True, True),
                                                     (True, False, False), (False, False, True)])
def test_backends_match_reference(backend, shape, dtype, training, affine, track):
    ok, why = registry.backend_status()[backend]
    if not ok:
        pytest.skip(why)
    x, w, b, rm, rv, dy = rand_inputs(shape, dtype, seed=sum(shape))
    if not affine:
        w = b = None
    if not track:
        rm = rv = None
    outs = {}
    for name in ("numpy", backend):
        fwd = registry.get("batchnorm_forward", name)
        bwd = registry.get("batchnorm_backward", name)
        run_m = None if rm is None else rm.copy()
        run_v = None if rv is None else rv.copy()
        y, cache = fwd(x, w, b, run_m, run_v, training, 0.3, 1e-3)
        dw = None if w is None else np.full_like(w, 0.5)     # checks accumulation (+=)
        db = None if b is None else np.full_like(b, -0.25)
        dx = bwd(dw, db, dy, cache)
        outs[name] = dict(y=y, dx=dx, dw=dw, db=db, rm=run_m, rv=run_v)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == np.float32 else dict(atol=1e-10, rtol=1e-9)
    for key, ref in outs["numpy"].items():
        got = outs[backend][key]
        if ref is None:
            assert got is None, key
            continue
        assert got.dtype == ref.dtype, key
        assert_close(f"{backend} {key}", got, ref, **tol)


def test_backward_mixes_backends_through_the_common_cache():
    x, w, b, rm, rv, dy = rand_inputs((4, 3, 5), np.float64)
    _, cache = registry.get("batchnorm_forward", "numba")(x, w, b, rm, rv, True, 0.1, 1e-5)
    dw1, db1, dw2, db2 = (np.zeros(3) for _ in range(4))
    dx1 = registry.get("batchnorm_backward", "numpy")(dw1, db1, dy, cache)
    dx2 = registry.get("batchnorm_backward", "numba")(dw2, db2, dy, cache)
    assert_close("dx", dx2, dx1)
    assert_close("dweight", dw2, dw1)


def test_kernel_argument_errors():
    fwd = registry.get("batchnorm_forward", "numpy")
    bwd = registry.get("batchnorm_backward", "numba")
    x = np.ones((2, 3, 4))
    with pytest.raises(ValueError, match=r"weight: expected shape \(3\)"):
        fwd(x, np.ones(4), None, None, None, True, 0.1, 1e-5)
    with pytest.raises(TypeError, match="bias: expected dtype float64"):
        fwd(x, None, np.ones(3, np.float32), None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="running_mean: required when training=False"):
        fwd(x, None, None, None, None, False, 0.1, 1e-5)
    with pytest.raises(ValueError, match="momentum: expected a number in"):
        fwd(x, None, None, np.zeros(3), np.ones(3), True, 1.5, 1e-5)
    with pytest.raises(ValueError, match="x: expected more than 1 value per channel"):
        fwd(np.ones((1, 3)), None, None, None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="running_var: expected a contiguous array"):
        fwd(x, None, None, np.zeros(3), np.ones(6)[::2], True, 0.1, 1e-5)
    _, cache = fwd(x, None, None, None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 3, 4\)"):
        bwd(None, None, np.ones((2, 3, 5)), cache)
    with pytest.raises(TypeError, match="cache: expected the BatchNormCache"):
        bwd(None, None, x, (x,))


# ----------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------
def gradcheck(layer, x, seed=0, atol=1e-6, rtol=1e-5):
    g = np.random.default_rng(seed).standard_normal(x.shape)
    f = lambda: float((layer.forward(x) * g).sum())
    layer.zero_grad()
    layer.forward(x)
    dx = layer.backward(g)
    assert_close("dx", dx, numerical_grad(f, x), atol, rtol)
    for name, p in layer.named_parameters():
        assert_close(f"{name}.grad", p.grad, numerical_grad(f, p.data), atol, rtol)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("make, shape", [
    (lambda b: L.BatchNorm1d(3, backend=b, dtype=np.float64), (4, 3)),
    (lambda b: L.BatchNorm1d(2, momentum=None, backend=b, dtype=np.float64), (3, 2, 5)),
    (lambda b: L.BatchNorm2d(3, eps=1e-3, backend=b, dtype=np.float64), (2, 3, 3, 4)),
    (lambda b: L.BatchNorm2d(2, affine=False, backend=b, dtype=np.float64), (3, 2, 2, 2)),
    (lambda b: L.BatchNorm2d(2, track_running_stats=False, backend=b, dtype=np.float64),
     (2, 2, 3, 3)),
])
def test_layer_gradients(backend, mode, make, shape):
    rng = np.random.default_rng(3)
    layer = make(backend)
    if layer.affine:
        layer.weight.data[...] = rng.uniform(0.5, 2, layer.num_features)
        layer.bias.data[...] = rng.standard_normal(layer.num_features)
    if layer.track_running_stats:
        layer.running_mean[...] = rng.standard_normal(layer.num_features)
        layer.running_var[...] = rng.uniform(0.5, 2, layer.num_features)
    layer.train(mode == "train")
    gradcheck(layer, rng.standard_normal(shape) * 1.5 + 0.3)


def test_train_vs_eval_semantics_and_running_stats():
    rng = np.random.default_rng(4)
    bn = L.BatchNorm2d(3, momentum=None, dtype=np.float64)
    batches = [rng.standard_normal((4, 3, 2, 2)) * (i + 1) + i for i in range(3)]
    for x in batches:
        y = bn.forward(x)
        # training output is normalised per channel regardless of the running stats
        assert_close("batch mean 0", y.mean(axis=(0, 2, 3)), np.zeros(3), 1e-12, 0)
    assert int(bn.num_batches_tracked) == 3 and bn.num_batches_tracked.dtype == np.int64
    # momentum=None: cumulative average of the batch means / unbiased variances
    assert_close("cumulative mean", bn.running_mean,
                 np.mean([b.mean(axis=(0, 2, 3)) for b in batches], axis=0))
    assert_close("cumulative var", bn.running_var,
                 np.mean([b.var(axis=(0, 2, 3), ddof=1) for b in batches], axis=0))
    bn.eval()
    x = batches[0]
    before = bn.running_mean.copy()
    assert_close("eval uses running stats", bn.forward(x),
                 bn_formula(x, bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var))
    assert_close("eval leaves stats", bn.running_mean, before, 0, 0)
    assert int(bn.num_batches_tracked) == 3


def test_state_dict_buffers_and_round_trip():
    bn = L.BatchNorm1d(4)
    bn.forward(np.random.default_rng(5).standard_normal((6, 4)).astype(np.float32))
    sd = bn.state_dict()
    assert list(sd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert sd["num_batches_tracked"].dtype == np.int64 and sd["num_batches_tracked"].shape == ()
    other = L.BatchNorm1d(4, backend="numba")
    other.load_state_dict(sd)
    for k in sd:
        assert_close(k, other.state_dict()[k], sd[k], 0, 0)
    other.eval()
    bn.eval()
    x = np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32)
    assert_close("same eval output", other.forward(x), bn.forward(x))
    bad = dict(sd, running_var=np.ones(5, np.float32))
    with pytest.raises(ValueError, match=r"running_var.*expected shape \(4,\), got \(5,\)"):
        other.load_state_dict(bad)
    assert list(L.BatchNorm2d(2, affine=False).state_dict()) == [
        "running_mean", "running_var", "num_batches_tracked"]
    assert list(L.BatchNorm2d(2, track_running_stats=False).state_dict()) == ["weight", "bias"]
    nested = L.Sequential(L.Conv2d(1, 2, 3), L.BatchNorm2d(2))
    assert "1.running_mean" in nested.state_dict()
    with pytest.raises(KeyError, match=r"missing keys \['1.num_batches_tracked'\]"):
        sd2 = nested.state_dict()
        del sd2["1.num_batches_tracked"]
        nested.load_state_dict(sd2)


def test_move_buffers_hook_and_emulated_backend():
    bn = L.BatchNorm2d(2)
    old = bn.running_mean
    bn._move_buffers(lambda a: a.copy())
    assert bn.running_mean is not old and bn.running_mean.shape == (2,)
    ok, why = registry.backend_status()["cuda-emu"]
    if not ok:
        pytest.skip(why)
    model = L.Sequential(L.Conv2d(1, 2, 3, padding=1, seed=0), L.BatchNorm2d(2))
    x = np.random.default_rng(7).standard_normal((2, 1, 4, 4)).astype(np.float32)
    ref = L.Sequential(L.Conv2d(1, 2, 3, padding=1, seed=0), L.BatchNorm2d(2))
    model.to("cuda-emu")
    assert model[1].backend == "cuda-emu"
    assert_close("cuda-emu output", model.forward(x), ref.forward(x))
    assert_close("cuda-emu running_mean", model[1].running_mean, ref[1].running_mean)
    assert model[1].num_batches_tracked.shape == () and int(model[1].num_batches_tracked) == 1
    assert model.state_dict()["1.num_batches_tracked"].shape == ()


def test_layer_errors():
    with pytest.raises(ValueError, match="num_features: expected a positive int"):
        L.BatchNorm2d(0)
    with pytest.raises(ValueError, match="momentum: expected None or a number in"):
        L.BatchNorm1d(3, momentum=2)
    with pytest.raises(ValueError, match=r"x: expected a 4-d array \(N, C, H, W\)"):
        L.BatchNorm2d(3).forward(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"x: expected a 2-d or 3-d array"):
        L.BatchNorm1d(3).forward(np.ones((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="x: expected 3 channels"):
        L.BatchNorm1d(3).forward(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        L.BatchNorm1d(3).forward(np.ones((1, 3), np.float32))
    with pytest.raises(TypeError, match="weight: expected dtype float64"):
        L.BatchNorm1d(3).forward(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="before forward"):
        L.BatchNorm1d(3).backward(np.ones((2, 3), np.float32))
    # a single sample is fine in eval mode
    assert L.BatchNorm1d(3).eval().forward(np.ones((1, 3), np.float32)).shape == (1, 3)


# ----------------------------------------------------------------------------
# torch parity
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("kind, shape, kwargs", [
    ("BatchNorm1d", (6, 3), {}),
    ("BatchNorm1d", (4, 3, 5), dict(momentum=0.3, eps=1e-3)),
    ("BatchNorm2d", (3, 4, 5, 5), {}),
    ("BatchNorm2d", (2, 2, 3, 3), dict(momentum=None)),
    ("BatchNorm2d", (2, 2, 3, 3), dict(affine=False)),
    ("BatchNorm2d", (2, 2, 3, 3), dict(track_running_stats=False)),
])
def test_torch_parity(backend, kind, shape, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    C = shape[1]
    ours = getattr(L, kind)(C, backend=backend, dtype=np.float64, **kwargs)
    ref = getattr(torch.nn, kind)(C, **kwargs).double()
    if ours.affine:
        ours.weight.data[...] = rng.uniform(0.5, 2, C)
        ours.bias.data[...] = rng.standard_normal(C)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for step, mode in enumerate(["train", "train", "train", "eval"]):
        ours.train(mode == "train")
        ref.train(mode == "train")
        x = rng.standard_normal(shape) * (step + 1) + step
        g = rng.standard_normal(shape)
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        ref.zero_grad()
        yt = ref(xt)
        yt.backward(torch.from_numpy(g))
        ours.zero_grad()
        y = ours.forward(x)
        dx = ours.backward(g)
        assert_close(f"{mode}{step} y", y, yt.detach().numpy(), 1e-10, 1e-9)
        assert_close(f"{mode}{step} dx", dx, xt.grad.numpy(), 1e-10, 1e-9)
        for name, p in ours.named_parameters():
            assert_close(f"{mode}{step} {name}.grad", p.grad,
                         dict(ref.named_parameters())[name].grad.numpy(), 1e-10, 1e-9)
        tsd = ref.state_dict()
        sd = ours.state_dict()
        assert list(sd) == list(tsd)
        for k in sd:
            assert_close(f"{mode}{step} {k}", sd[k], tsd[k].numpy(), 1e-12, 1e-10)


# ----------------------------------------------------------------------------
# GPU (CuPy array ops); skipped without CuPy and a device
# ----------------------------------------------------------------------------
def test_cuda_kernels_and_layer_match_numpy():
    ok, why = registry.backend_status()["cuda"]
    if not ok:
        pytest.skip(why)
    import cupy
    for dtype in DTYPES:
        for training in (True, False):
            x, w, b, rm, rv, dy = rand_inputs((3, 4, 5, 6), dtype, seed=9)
            d = {k: cupy.asarray(v) for k, v in dict(x=x, w=w, b=b, rm=rm, rv=rv, dy=dy).items()}
            y, cache = registry.get("batchnorm_forward", "numpy")(x, w, b, rm, rv, training, 0.1, 1e-5)
            dw, db = np.zeros_like(w), np.zeros_like(b)
            dx = registry.get("batchnorm_backward", "numpy")(dw, db, dy, cache)
            yg, cg = registry.get("batchnorm_forward", "cuda")(d["x"], d["w"], d["b"], d["rm"],
                                                              d["rv"], training, 0.1, 1e-5)
            dwg, dbg = cupy.zeros_like(d["w"]), cupy.zeros_like(d["b"])
            dxg = registry.get("batchnorm_backward", "cuda")(dwg, dbg, d["dy"], cg)
            assert isinstance(yg, cupy.ndarray) and isinstance(dxg, cupy.ndarray)
            for name, got, ref in [("y", yg, y), ("dx", dxg, dx), ("dweight", dwg, dw),
                                   ("dbias", dbg, db), ("running_mean", d["rm"], rm),
                                   ("running_var", d["rv"], rv)]:
                assert_close(f"cuda {dtype.__name__} train={training} {name}", got.get(), ref)
    with pytest.raises(TypeError, match="x: expected a cupy array"):
        registry.get("batchnorm_forward", "cuda")(np.ones((2, 3)), None, None, None, None, True,
                                                  0.1, 1e-5)
    # a layer moved with Module.to("cuda"): buffers follow, state_dict comes back to the host
    host = L.BatchNorm2d(4, dtype=np.float64, backend="numba")
    dev = L.BatchNorm2d(4, dtype=np.float64).to("cuda")
    assert isinstance(dev.running_mean, cupy.ndarray) and dev.num_batches_tracked.shape == ()
    x, *_ , dy = rand_inputs((3, 4, 5, 6), np.float64, seed=10)
    for layer, xx, gg in ((host, x, dy), (dev, cupy.asarray(x), cupy.asarray(dy))):
        layer.forward(xx)
        layer.backward(gg)
    sd_h, sd_d = host.state_dict(), dev.state_dict()
    for k in sd_h:
        assert isinstance(sd_d[k], np.ndarray)
        assert_close(f"to(cuda) {k}", sd_d[k], sd_h[k])
    assert_close("to(cuda) weight.grad", dev.weight.grad.get(), host.weight.grad)
    dev.eval()
    host.eval()
    assert_close("to(cuda) eval", dev.forward(cupy.asarray(x)).get(), host.forward(x))
    dev.to("cpu")
    assert isinstance(dev.running_var, np.ndarray) and dev.num_batches_tracked.shape == ()
