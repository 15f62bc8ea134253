"""Pooling layers on the ``*pool2d_*`` kernels (NCHW, PyTorch semantics)."""
from __future__ import annotations

from kernels._checks import check_float_array
from .base import Module, saved


class MaxPool2d(Module):
    """Max pooling (``torch.nn.MaxPool2d``); the argmax is saved for backward.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        default ``kernel_size``.
    padding : int or (int, int)
        implicit ``-inf`` padding, at most half the window.
    dilation : int or (int, int)
    ceil_mode : bool
        ceil instead of floor for the output size.
    backend : str

    Shapes
    ------
    x : (N, C, H, W) -> out : (N, C, P, Q)
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *,
                 backend="numpy"):
        super().__init__(backend)
        self.args = dict(kernel_size=kernel_size, stride=stride, padding=padding,
                         dilation=dilation, ceil_mode=ceil_mode)
        self._argmax = self._x_shape = None

    def forward(self, x):
        x = check_float_array("x", x, ndim=4, xp=self.xp)
        out, self._argmax = self.kernel("maxpool2d_forward")(x, **self.args)
        self._x_shape = x.shape
        return out

    def backward(self, dout):
        argmax = saved(self, "_argmax")
        return self.kernel("maxpool2d_backward")(dout, argmax, self._x_shape)

    def extra_repr(self):
        return ", ".join(f"{k}={v}" for k, v in self.args.items()) + f", backend={self.backend!r}"


class AvgPool2d(Module):
    """Average pooling (``torch.nn.AvgPool2d``), incl. ``count_include_pad`` and ``ceil_mode``.

    Parameters
    ----------
    kernel_size, stride, padding : int or (int, int)
    ceil_mode, count_include_pad : bool
    divisor_override : int, optional
    backend : str

    Shapes
    ------
    x : (N, C, H, W) -> out : (N, C, P, Q)
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None, *, backend="numpy"):
        super().__init__(backend)
        self.args = dict(kernel_size=kernel_size, stride=stride, padding=padding,
                         ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                         divisor_override=divisor_override)
        self._x_shape = None

    def forward(self, x):
        x = check_float_array("x", x, ndim=4, xp=self.xp)
        self._x_shape = x.shape
        return self.kernel("avgpool2d_forward")(x, **self.args)

    def backward(self, dout):
        x_shape = saved(self, "_x_shape")
        return self.kernel("avgpool2d_backward")(dout, x_shape, **self.args)

    def extra_repr(self):
        return ", ".join(f"{k}={v}" for k, v in self.args.items()) + f", backend={self.backend!r}"


class AdaptiveAvgPool2d(Module):
    """Adaptive average pooling to a fixed output size (``torch.nn.AdaptiveAvgPool2d``).

    Shapes
    ------
    x : (N, C, H, W) -> out : (N, C, *output_size)
    """

    def __init__(self, output_size, *, backend="numpy"):
        super().__init__(backend)
        self.output_size = output_size
        self._x_shape = None

    def forward(self, x):
        x = check_float_array("x", x, ndim=4, xp=self.xp)
        self._x_shape = x.shape
        return self.kernel("adaptive_avgpool2d_forward")(x, self.output_size)

    def backward(self, dout):
        x_shape = saved(self, "_x_shape")
        return self.kernel("adaptive_avgpool2d_backward")(dout, x_shape)

    def extra_repr(self):
        return f"output_size={self.output_size}, backend={self.backend!r}"
