"""Convolution layers on the ``conv2d_*`` kernels (NCHW, weights KCRS like PyTorch)."""
from __future__ import annotations

import math

import numpy as np

from kernels._checks import check_float_array, pair
from .base import Module, Parameter, make_rng, saved, uniform_init


class Conv2d(Module):
    """2-D convolution (cross-correlation, like ``torch.nn.Conv2d`` with ``groups=1``).

    Parameters
    ----------
    in_channels, out_channels : int
        C and K.
    kernel_size, stride, padding, dilation : int or (int, int)
        per axis (height, width).
    bias : bool
        learn an additive bias of shape (K,).
    dtype : numpy dtype
        float32 (default) or float64.
    seed : int or numpy Generator, optional
        initialisation RNG; PyTorch's scheme ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
        for weight and bias, ``fan_in = C·R·S``.
    backend : str
        kernel backend, e.g. ``"numpy"`` or ``"numba"``.

    Shapes
    ------
    x : (N, C, H, W) -> out : (N, K, P, Q), with
    ``P = floor((H + 2·pad_h - dil_h·(R-1) - 1) / stride_h) + 1`` (same for Q).
    weight : (K, C, R, S); bias : (K,)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, bias=True, *, dtype=np.float32, seed=None, backend="numpy"):
        super().__init__(backend)
        self.in_channels = _positive("in_channels", in_channels)
        self.out_channels = _positive("out_channels", out_channels)
        self.kernel_size = pair("kernel_size", kernel_size, 1)
        self.stride = pair("stride", stride, 1)
        self.padding = pair("padding", padding, 0)
        self.dilation = pair("dilation", dilation, 1)
        rng = make_rng(seed)
        r, s = self.kernel_size
        bound = 1 / math.sqrt(in_channels * r * s)
        self.weight = Parameter(uniform_init(rng, (out_channels, in_channels, r, s), bound, dtype))
        self.bias = Parameter(uniform_init(rng, (out_channels,), bound, dtype)) if bias else None
        self._x = None

    def _geometry(self):
        return self.stride, self.padding, self.dilation

    def forward(self, x):
        x = check_float_array("x", x, ndim=4, xp=self.xp)
        self._x = x
        return self.kernel("conv2d_forward")(
            x, self.weight.data, None if self.bias is None else self.bias.data, *self._geometry())

    def backward(self, dout):
        x = saved(self, "_x")
        self.kernel("conv2d_backward_weight")(
            self.weight.grad, None if self.bias is None else self.bias.grad, dout, x,
            *self._geometry())
        return self.kernel("conv2d_backward_data")(dout, self.weight.data, x.shape,
                                                   *self._geometry())

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"bias={self.bias is not None}, backend={self.backend!r}")


class Conv1d(Conv2d):
    """1-D convolution over a sequence, e.g. a sliding window over text (``torch.nn.Conv1d``).

    Runs the 2-D kernels with height 1, so every conv2d version is a conv1d version.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation : int
        as in :class:`torch.nn.Conv1d` (``groups=1``).
    bias, dtype, seed, backend
        as in :class:`Conv2d`.

    Shapes
    ------
    x : (N, C, L) -> out : (N, K, L_out); weight : (K, C, kernel_size); bias : (K,)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, bias=True, *, dtype=np.float32, seed=None, backend="numpy"):
        for name, v in (("kernel_size", kernel_size), ("stride", stride),
                        ("padding", padding), ("dilation", dilation)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise TypeError(f"{name}: expected an int for Conv1d, got {v!r}")
        super().__init__(in_channels, out_channels, (1, kernel_size), (1, stride),
                         (0, padding), (1, dilation), bias, dtype=dtype, seed=seed,
                         backend=backend)
        # store the weight in torch's Conv1d layout (K, C, S); kernels see a (K, C, 1, S) view
        k, c, _, s = self.weight.data.shape
        self.weight = Parameter(np.ascontiguousarray(self.weight.data.reshape(k, c, s)))

    def _w4(self, a):
        k, c, s = a.shape
        return a.reshape(k, c, 1, s)   # a view: gradients accumulate into the parameter

    def forward(self, x):
        x = check_float_array("x", x, ndim=3, xp=self.xp)
        self._x = x[:, :, None, :]
        out = self.kernel("conv2d_forward")(
            self._x, self._w4(self.weight.data),
            None if self.bias is None else self.bias.data, *self._geometry())
        return out[:, :, 0, :]

    def backward(self, dout):
        x = saved(self, "_x")
        dout = check_float_array("dout", dout, ndim=3, xp=self.xp)[:, :, None, :]
        self.kernel("conv2d_backward_weight")(
            self._w4(self.weight.grad), None if self.bias is None else self.bias.grad, dout, x,
            *self._geometry())
        dx = self.kernel("conv2d_backward_data")(dout, self._w4(self.weight.data), x.shape,
                                                 *self._geometry())
        return dx[:, :, 0, :]


def _positive(name, v):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return int(v)
