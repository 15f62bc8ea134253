"""Inverted dropout (``torch.nn.Dropout``)."""
from __future__ import annotations

import numpy as np

from kernels._checks import array_module, check_float_array
from .base import Module, make_rng, saved

__all__ = ["Dropout"]

_IDENTITY = "identity"     # saved by a forward that did not drop anything (eval or p == 0)


class Dropout(Module):
    """Zero each element with probability ``p`` in training and scale the kept ones by
    ``1 / (1 - p)`` (so the expected value is unchanged); the identity in eval mode.

    ``backward`` multiplies by the same scaled mask the last ``forward`` drew.

    Parameters
    ----------
    p : float
        drop probability in [0, 1).
    seed : int or numpy Generator, optional
        seeds the masks (reproducible runs); on CuPy arrays a CuPy generator is seeded from it.
    backend : str
        kept for a uniform API; dropout is elementwise array code (no registry kernel) and runs
        on whatever array module the input belongs to.

    Shapes
    ------
    x : any shape -> y : same shape
    """

    def __init__(self, p=0.5, seed=None, *, backend="numpy"):
        super().__init__(backend)
        try:
            p = float(p)
        except (TypeError, ValueError):
            raise TypeError(f"p: expected a number in [0, 1), got {p!r}") from None
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p: expected a drop probability in [0, 1), got {p!r}")
        self.p = p
        self._rng = make_rng(seed)
        self._device_rng = None
        self._mask = None

    def _random(self, xp, shape, dtype):
        if xp is np:
            return self._rng.random(shape, dtype=dtype)
        if self._device_rng is None:
            # one CuPy generator, seeded from the host generator so `seed` still decides
            self._device_rng = xp.random.default_rng(int(self._rng.integers(2 ** 63)))
        return self._device_rng.random(shape, dtype=dtype)

    def forward(self, x):
        xp = array_module(x)
        x = check_float_array("x", x, xp=xp)
        if not self.training or self.p == 0.0:
            self._mask = _IDENTITY
            return x
        mask = (self._random(xp, x.shape, x.dtype) >= self.p).astype(x.dtype)
        mask *= x.dtype.type(1.0 / (1.0 - self.p))
        self._mask = mask
        return x * mask

    def backward(self, dout):
        mask = saved(self, "_mask")
        xp = array_module(dout)
        dout = check_float_array("dout", dout, xp=xp)
        if isinstance(mask, str):
            return dout
        if dout.shape != mask.shape:
            raise ValueError(f"dout: expected shape {tuple(mask.shape)} (the last forward's "
                             f"input), got {tuple(dout.shape)}")
        return dout * mask

    def extra_repr(self):
        return f"p={self.p}"
