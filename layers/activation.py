"""Elementwise activation layers (backward uses the saved forward output)."""
from __future__ import annotations

from .base import Module, saved


class _Activation(Module):
    op = ""

    def __init__(self, *, backend="numpy"):
        super().__init__(backend)
        self._y = None

    def forward(self, x):
        self._y = self.kernel(f"{self.op}_forward")(x)
        return self._y

    def backward(self, dout):
        return self.kernel(f"{self.op}_backward")(dout, saved(self, "_y"))

    def extra_repr(self):
        return f"backend={self.backend!r}"


class ReLU(_Activation):
    """``max(x, 0)``; any shape in, same shape out."""
    op = "relu"


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))``; any shape in, same shape out."""
    op = "sigmoid"


class Tanh(_Activation):
    """``tanh(x)``; any shape in, same shape out."""
    op = "tanh"
