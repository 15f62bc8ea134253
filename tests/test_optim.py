"""Optimisers and LR schedules: hand-computed steps, torch.optim parity (when torch is
installed), argument errors, state round trips, and a small training loop with clipping."""
import math

import numpy as np
import pytest

import layers as L
from layers.base import Parameter
from layers.clip import clip_grad_norm_
from layers.optim import (SGD, Adam, AdamW, ConstantLR, ExponentialLR, MultiStepLR, StepLR)
from util import assert_close


def param(values, grad):
    p = Parameter(np.array(values, dtype=np.float64))
    p.grad[...] = grad
    return p


# ----------------------------------------------------------------------------
# hand-computed steps (scalar parameter, constant gradient unless reset)
# ----------------------------------------------------------------------------
def test_sgd_plain_and_weight_decay_by_hand():
    p = param([1.0, -2.0], [0.5, 0.5])
    opt = SGD([p], lr=0.1)
    opt.step()
    assert_close("plain", p.data, np.array([1.0 - 0.05, -2.0 - 0.05]))
    p = param([1.0], [0.5])
    opt = SGD([p], lr=0.1, weight_decay=0.2)
    opt.step()                   # g = 0.5 + 0.2*1 = 0.7 -> 0.93
    assert_close("wd step 1", p.data, np.array([0.93]))
    opt.step()                   # g = 0.5 + 0.2*0.93 = 0.686 -> 0.8614
    assert_close("wd step 2", p.data, np.array([0.8614]))
    assert_close("grad untouched by weight decay", p.grad, np.array([0.5]))


def test_sgd_momentum_dampening_nesterov_by_hand():
    # momentum 0.9, dampening 0.5, g = 1 each step
    p = param([0.0], [1.0])
    opt = SGD([p], lr=0.1, momentum=0.9, dampening=0.5)
    opt.step()                   # buf = 1 (undamped first step)     p = -0.1
    opt.step()                   # buf = 0.9 + 0.5 = 1.4             p = -0.24
    opt.step()                   # buf = 1.26 + 0.5 = 1.76           p = -0.416
    assert_close("momentum+dampening", p.data, np.array([-0.416]))
    assert_close("buffer", opt.state[0]["momentum_buffer"], np.array([1.76]))
    # Nesterov: d = g + m*buf
    p = param([0.0], [1.0])
    opt = SGD([p], lr=0.1, momentum=0.9, nesterov=True)
    opt.step()                   # buf = 1,   d = 1.9                  p = -0.19
    p.grad[...] = 2.0
    opt.step()                   # buf = 0.9+2 = 2.9, d = 2 + 2.61 = 4.61  p = -0.651
    assert_close("nesterov", p.data, np.array([-0.651]))


def test_adam_by_hand():
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.01
    p = param([1.0], [0.5])
    opt = Adam([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=0.1)
    m = v = 0.0
    x = 1.0
    for t, g in enumerate([0.5, -1.0, 2.0], start=1):
        p.grad[...] = g
        opt.step()
        g = g + 0.1 * x
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x -= lr / (1 - b1 ** t) * m / (math.sqrt(v) / math.sqrt(1 - b2 ** t) + eps)
        assert_close(f"adam step {t}", p.data, np.array([x]))
    # the first Adam step moves every coordinate by ~lr regardless of the gradient scale
    p = param([0.0, 0.0], [1e-3, 1e3])
    Adam([p], lr=0.01).step()
    assert_close("first step ~lr", p.data, np.array([-0.01, -0.01]), 1e-7, 1e-4)


def test_adamw_decouples_weight_decay():
    p, q = param([2.0], [0.0]), param([2.0], [0.0])
    AdamW([p], lr=0.1, weight_decay=0.5).step()
    Adam([q], lr=0.1, weight_decay=0.5).step()
    # zero gradient: AdamW only shrinks the weight by (1 - lr*wd); Adam's L2 gradient 1.0
    # makes a full ~lr step instead
    assert_close("adamw", p.data, np.array([2.0 * (1 - 0.05)]))
    assert_close("adam l2", q.data, np.array([2.0 - 0.1]), 1e-7, 1e-6)


def test_amsgrad_uses_running_max():
    p = param([0.0], [10.0])
    opt = Adam([p], lr=0.1, amsgrad=True)
    opt.step()
    p.grad[...] = 0.1
    opt.step()
    assert opt.state[0]["max_exp_avg_sq"][0] >= opt.state[0]["exp_avg_sq"][0]
    assert_close("vmax", opt.state[0]["max_exp_avg_sq"], np.array([0.001 * 100]))


def test_float32_stays_float32_and_updates_in_place():
    lin = L.Linear(3, 2, seed=0)
    w = lin.weight.data
    lin.weight.grad[...] = 1
    for opt in (SGD(lin.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3),
                Adam(lin.parameters(), weight_decay=1e-3)):
        opt.step()
        opt.step()
        assert lin.weight.data is w and w.dtype == np.float32
        assert lin.bias.data.dtype == np.float32
    opt.zero_grad()
    assert not lin.weight.grad.any()


def test_duplicate_parameters_are_updated_once():
    p = param([1.0], [1.0])
    SGD([p, p], lr=0.5).step()
    assert_close("once", p.data, np.array([0.5]))


# ----------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------
def test_optimizer_argument_errors():
    p = param([1.0], [0.0])
    with pytest.raises(ValueError, match="params: expected at least one Parameter"):
        SGD([], lr=0.1)
    model = L.Linear(2, 2)
    gen = model.parameters()
    list(gen)
    with pytest.raises(ValueError, match="params: expected at least one Parameter"):
        Adam(gen)
    with pytest.raises(TypeError, match=r"params\[1\]: expected a layers.Parameter"):
        SGD([p, np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="lr: expected a number >= 0"):
        SGD([p], lr=-0.1)
    with pytest.raises(ValueError, match="lr: expected a number >= 0"):
        Adam([p], lr=-1e-3)
    with pytest.raises(ValueError, match="momentum: expected a number >= 0"):
        SGD([p], lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="weight_decay: expected a number >= 0"):
        SGD([p], lr=0.1, weight_decay=-1)
    with pytest.raises(ValueError, match="nesterov: Nesterov momentum requires momentum > 0"):
        SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="nesterov: .*dampening == 0"):
        SGD([p], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"betas\[0\]: expected a number in \[0.0, 1.0\)"):
        Adam([p], betas=(1.0, 0.999))
    with pytest.raises(ValueError, match=r"betas\[1\]: expected a number in \[0.0, 1.0\)"):
        Adam([p], betas=(0.9, -0.1))
    with pytest.raises(ValueError, match="betas: expected a pair"):
        Adam([p], betas=0.9)
    with pytest.raises(ValueError, match="eps: expected a number >= 0"):
        Adam([p], eps=-1)
    with pytest.raises(TypeError, match="lr: expected a number"):
        SGD([p], lr="fast")


def test_scheduler_argument_errors():
    opt = SGD([param([1.0], [0.0])], lr=0.1)
    with pytest.raises(ValueError, match="step_size: expected an int >= 1"):
        StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="gamma: expected a number >= 0"):
        ExponentialLR(opt, gamma=-0.5)
    with pytest.raises(ValueError, match=r"factor: expected a number in \[0.0, 1.0\]"):
        ConstantLR(opt, factor=2.0)
    with pytest.raises(TypeError, match="optimizer: expected a layers.optim.Optimizer"):
        StepLR(object(), step_size=1)


# ----------------------------------------------------------------------------
# schedules
# ----------------------------------------------------------------------------
def run_schedule(make, epochs=7):
    opt = SGD([param([1.0], [0.0])], lr=0.8)
    sched = make(opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(sched.get_last_lr()[0])
        assert opt.lr == lrs[-1] == opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    return lrs


def test_schedules_by_hand():
    assert_close("StepLR", np.array(run_schedule(lambda o: StepLR(o, 3, 0.5))),
                 0.8 * np.array([1, 1, 1, .5, .5, .5, .25]))
    assert_close("ExponentialLR", np.array(run_schedule(lambda o: ExponentialLR(o, 0.9))),
                 0.8 * 0.9 ** np.arange(7))
    assert_close("MultiStepLR", np.array(run_schedule(lambda o: MultiStepLR(o, [4, 2], 0.1))),
                 0.8 * np.array([1, 1, .1, .1, .01, .01, .01]))
    assert_close("ConstantLR", np.array(run_schedule(lambda o: ConstantLR(o, 0.25, 3))),
                 0.8 * np.array([.25, .25, .25, 1, 1, 1, 1]))


@pytest.mark.parametrize("name, kwargs", [
    ("StepLR", dict(step_size=2, gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.8)),
    ("MultiStepLR", dict(milestones=[1, 4], gamma=0.5)),
    ("ConstantLR", dict(factor=0.5, total_iters=3)),
])
def test_schedules_match_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    tp = torch.nn.Parameter(torch.zeros(1))
    topt = torch.optim.SGD([tp], lr=0.8)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    ours = run_schedule(lambda o: getattr(L.optim, name)(o, **kwargs))
    theirs = []
    for _ in range(7):
        theirs.append(tsched.get_last_lr()[0])
        topt.step()
        tsched.step()
    assert_close(name, np.array(ours), np.array(theirs), 1e-12, 1e-12)


# ----------------------------------------------------------------------------
# torch.optim parity over several steps with changing gradients
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, kwargs", [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.02, amsgrad=True)),
    ("AdamW", dict(lr=0.02, weight_decay=0.1)),
])
def test_optimizers_match_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    init = [rng.standard_normal((3, 4)), rng.standard_normal(4)]
    ours = [Parameter(a.copy()) for a in init]
    theirs = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in init]
    opt = getattr(L.optim, name)(ours, **kwargs)
    topt = getattr(torch.optim, name)(theirs, **kwargs)
    for step in range(4):
        grads = [rng.standard_normal(a.shape) for a in init]
        for p, tp, g in zip(ours, theirs, grads):
            p.grad[...] = g
            tp.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for i, (p, tp) in enumerate(zip(ours, theirs)):
            assert_close(f"{name} step {step} param {i}", p.data, tp.detach().numpy(), 1e-12, 1e-10)


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    a, b = [Parameter(rng.standard_normal(3)) for _ in range(2)]
    for p in (a, b):
        p.grad[...] = 0.3
    opt_a, opt_b = Adam([a], lr=0.1), Adam([b], lr=0.1)
    opt_a.step()
    b.data[...] = a.data
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b.state[0]["step"] == 1
    opt_a.step()
    opt_b.step()
    assert_close("continued", b.data, a.data, 0, 0)
    with pytest.raises(ValueError, match="saved for 1 parameters"):
        Adam([a, b]).load_state_dict(opt_a.state_dict())


# ----------------------------------------------------------------------------
# a training loop: layers + loss + clip_grad_norm_ + optimiser + schedule
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("make_opt", [
    lambda ps: SGD(ps, lr=0.2, momentum=0.9, nesterov=True),
    lambda ps: Adam(ps, lr=0.05),
])
def test_training_loop_with_clipping_reduces_loss(make_opt):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    t = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0)
    model = L.Sequential(L.Linear(4, 16, seed=0), L.Tanh(), L.Linear(16, 4, seed=1))
    loss_fn = L.SoftmaxCrossEntropy()
    opt = make_opt(model.parameters())
    sched = StepLR(opt, step_size=20, gamma=0.5)
    losses, norms = [], []
    for epoch in range(60):
        opt.zero_grad()
        losses.append(float(loss_fn.forward(model.forward(x), t)))
        model.backward(loss_fn.backward())
        norms.append(clip_grad_norm_(model, max_norm=0.5))
        post = math.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in model.parameters()))
        assert post <= 0.5 + 1e-4
        opt.step()
        sched.step()
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert max(norms) > 0.5        # clipping actually engaged at some point
    assert opt.lr == pytest.approx(0.5 ** 3 * opt.param_groups[0]["initial_lr"])


@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda ps: Adam(ps, lr=0.01, weight_decay=0.01, amsgrad=True),
    lambda ps: AdamW(ps, lr=0.01),
])
def test_cuda_parameters_update_on_device(make):
    from kernels import registry
    ok, why = registry.backend_status()["cuda"]
    if not ok:
        pytest.skip(why)
    import cupy
    rng = np.random.default_rng(4)
    init = rng.standard_normal((3, 5))
    host, dev = Parameter(init.copy()), Parameter(cupy.asarray(init))
    opt_h, opt_d = make([host]), make([dev])
    data = dev.data
    for _ in range(3):
        g = rng.standard_normal(init.shape)
        host.grad[...] = g
        dev.grad[...] = cupy.asarray(g)
        opt_h.step()
        opt_d.step()
    assert dev.data is data and isinstance(dev.data, cupy.ndarray)
    assert_close("device vs host", dev.data.get(), host.data, 1e-12, 1e-10)
    opt_h.load_state_dict(opt_d.state_dict())     # device state saved as host arrays
