"""Optimisers and learning-rate schedules with ``torch.optim``'s names and math.

Optimisers update ``Parameter.data`` in place from ``Parameter.grad`` using the array module of
the data (NumPy or CuPy), so a model moved to the GPU trains without host copies::

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = StepLR(opt, step_size=10, gamma=0.5)
    for epoch in range(epochs):
        for x, t in batches:
            model.zero_grad()                 # or opt.zero_grad()
            loss = loss_fn.forward(model.forward(x), t)
            model.backward(loss_fn.backward())
            clip_grad_norm_(model, 1.0)       # optional
            opt.step()
        sched.step()

One parameter group only (``param_groups`` has one dict, as in PyTorch, so
``opt.param_groups[0]["lr"]`` works; ``opt.lr`` is a shortcut for it). Hyper-parameters are read
from that dict at every ``step``, so a schedule (or the user) can change them between steps.
"""
from __future__ import annotations

import bisect
import math

import numpy as np

from kernels._checks import array_module
from .base import Module, Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW",
           "LRScheduler", "ConstantLR", "StepLR", "MultiStepLR", "ExponentialLR"]


def _number(name, value, lo=None, hi=None, hi_open=False):
    """``float(value)`` checked to lie in ``[lo, hi]`` (``[lo, hi)`` with ``hi_open``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number, got {value!r}") from None
    above = hi is not None and (v >= hi if hi_open else v > hi)
    if math.isnan(v) or (lo is not None and v < lo) or above:
        if lo is not None and hi is not None:
            want = f"a number in [{lo}, {hi}{')' if hi_open else ']'}"
        elif lo is not None:
            want = f"a number >= {lo}"
        else:
            want = f"a number <= {hi}"
        raise ValueError(f"{name}: expected {want}, got {value!r}")
    return v


def _host(a):
    return a.get() if type(a).__module__.startswith("cupy") else a


class Optimizer:
    """Base class: holds the parameters, one param group and per-parameter state.

    Parameters
    ----------
    params : iterable of Parameter, or a Module
        what to optimise (e.g. ``model.parameters()``); a parameter listed twice is updated once.
    defaults : dict
        the hyper-parameters, copied into ``param_groups[0]``.

    Raises
    ------
    ValueError
        ``params`` holds no Parameter.
    TypeError
        an item of ``params`` is not a Parameter.
    """

    def __init__(self, params, defaults: dict):
        if isinstance(params, Module):
            params = params.parameters()
        if isinstance(params, Parameter):
            params = [params]
        try:
            items = list(params)
        except TypeError:
            raise TypeError(f"params: expected an iterable of Parameter, got "
                            f"{type(params).__name__}") from None
        out, seen = [], set()
        for i, p in enumerate(items):
            if not isinstance(p, Parameter):
                raise TypeError(f"params[{i}]: expected a layers.Parameter, got {type(p).__name__}")
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        if not out:
            raise ValueError("params: expected at least one Parameter, got an empty iterable "
                             "(did the model's parameters() generator get consumed already?)")
        self.params: list[Parameter] = out
        self.param_groups: list[dict] = [dict(defaults, params=out)]
        self.defaults = dict(defaults)
        # state[i] belongs to params[i]; created lazily at the first step, like torch
        self.state: dict[int, dict] = {}

    @property
    def lr(self) -> float:
        """The learning rate of the (single) param group."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        self.param_groups[0]["lr"] = _number("lr", value, lo=0.0)

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (gradients accumulate in ``backward``)."""
        for p in self.params:
            p.zero_grad()

    def step(self) -> None:
        raise NotImplementedError

    # -- state ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"state": {index: {name: host array or number}}, "param_groups": [hyper-params]}``
        (torch's layout, with parameters referred to by their index)."""
        state = {i: {k: (_host(v).copy() if hasattr(v, "shape") else v) for k, v in s.items()}
                 for i, s in self.state.items()}
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        groups[0]["params"] = list(range(len(self.params)))
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyper-parameters and per-parameter state saved by :meth:`state_dict`.

        Raises
        ------
        ValueError
            the saved optimiser had a different number of parameters, or a state array's shape
            differs from its parameter's.
        """
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            n = sum(len(g["params"]) for g in groups)
            raise ValueError(f"state_dict: saved for {n} parameters in {len(groups)} group(s), "
                             f"this optimiser has {len(self.params)} parameters in 1 group")
        new_state = {}
        for i, s in state_dict["state"].items():
            i = int(i)
            p = self.params[i]
            xp = array_module(p.data)
            entry = {}
            for k, v in s.items():
                if hasattr(v, "shape") and np.ndim(v) > 0:
                    if tuple(v.shape) != tuple(p.data.shape):
                        raise ValueError(f"state_dict['state'][{i}][{k!r}]: expected shape "
                                         f"{tuple(p.data.shape)}, got {tuple(v.shape)}")
                    v = xp.asarray(np.asarray(_host(v)).astype(p.data.dtype))
                entry[k] = v
            new_state[i] = entry
        self.state = new_state
        hyper = {k: v for k, v in groups[0].items() if k != "params"}
        self.param_groups[0].update(hyper)

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.param_groups[0].items() if k != "params")
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay
    (``torch.optim.SGD``).

    For each parameter ``p`` with gradient ``g``::

        g = g + weight_decay * p
        buf = g                                  (first step)
        buf = momentum * buf + (1 - dampening) * g   (later steps)
        g = g + momentum * buf  if nesterov else  buf      (when momentum != 0)
        p -= lr * g

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
        learning rate, >= 0.
    momentum : float
        >= 0; 0 disables the momentum buffer.
    dampening : float
        applied to the gradient in the momentum update (not on the first step).
    nesterov : bool
        needs ``momentum > 0`` and ``dampening == 0``.
    weight_decay : float
        L2 penalty coefficient, >= 0.
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        lr = _number("lr", lr, lo=0.0)
        momentum = _number("momentum", momentum, lo=0.0)
        dampening = _number("dampening", dampening)
        weight_decay = _number("weight_decay", weight_decay, lo=0.0)
        nesterov = bool(nesterov)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov: Nesterov momentum requires momentum > 0 and "
                             f"dampening == 0, got momentum={momentum}, dampening={dampening}")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay))

    def step(self) -> None:
        """Apply one update to every parameter in place."""
        g_ = self.param_groups[0]
        lr, momentum, dampening = g_["lr"], g_["momentum"], g_["dampening"]
        nesterov, wd = g_["nesterov"], g_["weight_decay"]
        for i, p in enumerate(self.params):
            d_p = p.grad
            if wd != 0:
                d_p = d_p + wd * p.data          # a new array: p.grad itself is left untouched
            if momentum != 0:
                st = self.state.setdefault(i, {})
                buf = st.get("momentum_buffer")
                if buf is None:
                    # torch initialises the buffer to the first (decayed) gradient, undamped
                    buf = st["momentum_buffer"] = array_module(p.data).array(d_p, copy=True)
                else:
                    buf *= momentum
                    buf += (1 - dampening) * d_p
                d_p = d_p + momentum * buf if nesterov else buf
            p.data -= lr * d_p


class Adam(Optimizer):
    """Adam (``torch.optim.Adam``), with PyTorch's L2-style weight decay (added to the gradient;
    see :class:`AdamW` for decoupled decay) and optional AMSGrad.

    For step ``t = 1, 2, ...``::

        g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
        >= 0.
    betas : (float, float)
        each in [0, 1).
    eps : float
        >= 0, added to the denominator.
    weight_decay : float
        >= 0.
    amsgrad : bool
        use the running maximum of ``v`` in the denominator.
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        lr = _number("lr", lr, lo=0.0)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas: expected a pair of numbers in [0, 1), got "
                             f"{betas!r}") from None
        b1 = _number("betas[0]", b1, lo=0.0, hi=1.0, hi_open=True)
        b2 = _number("betas[1]", b2, lo=0.0, hi=1.0, hi_open=True)
        eps = _number("eps", eps, lo=0.0)
        weight_decay = _number("weight_decay", weight_decay, lo=0.0)
        super().__init__(params, dict(lr=lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay,
                                      amsgrad=bool(amsgrad)))

    def step(self) -> None:
        """Apply one update to every parameter in place."""
        g_ = self.param_groups[0]
        lr, (b1, b2), eps, wd, amsgrad = (g_["lr"], g_["betas"], g_["eps"], g_["weight_decay"],
                                          g_["amsgrad"])
        for i, p in enumerate(self.params):
            xp = array_module(p.data)
            st = self.state.get(i)
            if st is None:
                st = self.state[i] = {"step": 0, "exp_avg": xp.zeros_like(p.data),
                                      "exp_avg_sq": xp.zeros_like(p.data)}
                if amsgrad:
                    st["max_exp_avg_sq"] = xp.zeros_like(p.data)
            grad = p.grad
            if wd != 0:
                if self._decoupled:
                    p.data *= 1 - lr * wd         # AdamW: decay the weights, not the gradient
                else:
                    grad = grad + wd * p.data
            st["step"] += 1
            t = st["step"]
            m, v = st["exp_avg"], st["exp_avg_sq"]
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            if amsgrad:
                vmax = st.setdefault("max_exp_avg_sq", xp.zeros_like(p.data))
                xp.maximum(vmax, v, out=vmax)
                v = vmax
            bc1 = 1 - b1 ** t
            bc2_sqrt = math.sqrt(1 - b2 ** t)
            denom = xp.sqrt(v) / bc2_sqrt + eps
            p.data -= (lr / bc1) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``): each step first multiplies the
    weights by ``1 - lr * weight_decay``, then applies the Adam update to the raw gradient.

    Parameters are those of :class:`Adam`; ``weight_decay`` defaults to 1e-2 as in PyTorch.
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


# ----------------------------------------------------------------------------
# learning-rate schedules (call .step() once per epoch, after the optimiser's steps)
# ----------------------------------------------------------------------------
class LRScheduler:
    """Base class: sets ``optimizer.lr`` from ``base_lr`` and the epoch counter.

    As in PyTorch, constructing a schedule applies epoch 0's rate, ``step()`` advances the epoch
    and ``get_last_lr()`` returns a one-element list (one param group).

    Parameters
    ----------
    optimizer : Optimizer
    last_epoch : int
        -1 to start fresh (``base_lr`` is the optimiser's current lr).
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a layers.optim.Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        group = optimizer.param_groups[0]
        if last_epoch == -1:
            group.setdefault("initial_lr", group["lr"])
        elif "initial_lr" not in group:
            raise KeyError("optimizer: param_groups[0] has no 'initial_lr'; resuming a schedule "
                           "(last_epoch != -1) needs an optimiser that was scheduled before")
        self.base_lr = group["initial_lr"]
        self.last_epoch = int(last_epoch)
        self.step()

    def lr_at(self, epoch: int) -> float:
        """The learning rate for ``epoch`` (closed form)."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch and set the optimiser's learning rate."""
        self.last_epoch += 1
        self.optimizer.param_groups[0]["lr"] = self.lr_at(self.last_epoch)
        self._last_lr = [self.optimizer.param_groups[0]["lr"]]

    def get_last_lr(self) -> list[float]:
        """``[lr]`` set by the last :meth:`step` (a list, like PyTorch's)."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


class ConstantLR(LRScheduler):
    """``lr = base_lr * factor`` for the first ``total_iters`` epochs, then ``base_lr``
    (``torch.optim.lr_scheduler.ConstantLR``).

    Parameters
    ----------
    optimizer : Optimizer
    factor : float
        in [0, 1].
    total_iters : int
        >= 0.
    """

    def __init__(self, optimizer, factor=1.0 / 3, total_iters=5, last_epoch=-1):
        self.factor = _number("factor", factor, lo=0.0, hi=1.0)
        if isinstance(total_iters, bool) or not isinstance(total_iters, (int, np.integer)) \
                or total_iters < 0:
            raise ValueError(f"total_iters: expected an int >= 0, got {total_iters!r}")
        self.total_iters = int(total_iters)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch):
        return self.base_lr * (self.factor if epoch < self.total_iters else 1.0)


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)`` (``torch.optim.lr_scheduler.StepLR``).

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        epochs between decays, >= 1.
    gamma : float
        multiplicative factor, >= 0.
    """

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if isinstance(step_size, bool) or not isinstance(step_size, (int, np.integer)) \
                or step_size < 1:
            raise ValueError(f"step_size: expected an int >= 1, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = _number("gamma", gamma, lo=0.0)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class MultiStepLR(LRScheduler):
    """``lr = base_lr * gamma ** (number of milestones <= epoch)``
    (``torch.optim.lr_scheduler.MultiStepLR``).

    Parameters
    ----------
    optimizer : Optimizer
    milestones : sequence of int
        epochs at which the rate is multiplied by ``gamma`` (sorted here).
    gamma : float
        >= 0.
    """

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        try:
            self.milestones = sorted(int(m) for m in milestones)
        except (TypeError, ValueError):
            raise TypeError(f"milestones: expected a sequence of ints, got "
                            f"{milestones!r}") from None
        self.gamma = _number("gamma", gamma, lo=0.0)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, epoch)


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** epoch`` (``torch.optim.lr_scheduler.ExponentialLR``).

    Parameters
    ----------
    optimizer : Optimizer
    gamma : float
        >= 0.
    """

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = _number("gamma", gamma, lo=0.0)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** epoch
