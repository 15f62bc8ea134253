"""Linear and Flatten layers."""
from __future__ import annotations

import math

import numpy as np

from kernels._checks import check_float_array
from .base import Module, Parameter, make_rng, saved, uniform_init


class Linear(Module):
    """``y = x @ weight.T + bias`` over the last axis (``torch.nn.Linear``).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    dtype : numpy dtype
    seed : int or Generator, optional
        PyTorch's init: ``U(-1/sqrt(in_features), 1/sqrt(in_features))`` for both.
    backend : str

    Shapes
    ------
    x : (*, in_features) -> y : (*, out_features); weight : (out, in); bias : (out,)
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, seed=None,
                 backend="numpy"):
        super().__init__(backend)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        if self.in_features < 1 or self.out_features < 1:
            raise ValueError(f"in_features/out_features: expected positive ints, got "
                             f"{in_features!r}, {out_features!r}")
        rng = make_rng(seed)
        bound = 1 / math.sqrt(self.in_features)
        self.weight = Parameter(uniform_init(rng, (self.out_features, self.in_features), bound, dtype))
        self.bias = Parameter(uniform_init(rng, (self.out_features,), bound, dtype)) if bias else None
        self._x = None

    def forward(self, x):
        x = check_float_array("x", x, xp=self.xp)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected last dimension {self.in_features} (in_features), "
                             f"got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        self._x = x.reshape(-1, self.in_features)
        out = self.kernel("linear_forward")(self._x, self.weight.data,
                                            None if self.bias is None else self.bias.data)
        return out.reshape(*lead, self.out_features)

    def backward(self, dout):
        x = saved(self, "_x")
        dout = check_float_array("dout", dout, xp=self.xp)
        lead = dout.shape[:-1]
        d2 = dout.reshape(-1, self.out_features)
        self.kernel("linear_backward_weight")(
            self.weight.grad, None if self.bias is None else self.bias.grad, d2, x)
        return self.kernel("linear_backward_data")(d2, self.weight.data).reshape(
            *lead, self.in_features)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, backend={self.backend!r}")


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one (``torch.nn.Flatten``); a reshape, no copy."""

    def __init__(self, start_dim=1, end_dim=-1, *, backend="numpy"):
        super().__init__(backend)
        self.start_dim, self.end_dim = start_dim, end_dim
        self._shape = None

    def forward(self, x):
        self._shape = x.shape
        nd = x.ndim
        s = self.start_dim % nd
        e = self.end_dim % nd
        if s > e:
            raise ValueError(f"start_dim/end_dim: {self.start_dim}..{self.end_dim} is empty for a "
                             f"{nd}-d input")
        return x.reshape(*x.shape[:s], -1, *x.shape[e + 1:])

    def backward(self, dout):
        return dout.reshape(saved(self, "_shape"))
