"""Batch normalisation layers: :class:`BatchNorm1d` and :class:`BatchNorm2d` (``torch.nn`` names,
parameters, buffers and semantics).

Training mode normalises with the batch's statistics and updates the running statistics
(exponential moving average with the *unbiased* batch variance, or a cumulative average when
``momentum=None``); eval mode normalises with the running statistics. With
``track_running_stats=False`` there are no buffers and batch statistics are used in both modes.
All math lives in :mod:`kernels.batchnorm`.
"""
from __future__ import annotations

import numpy as np

from kernels._checks import array_module
from .base import Module, Parameter, saved

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    """Common machinery; subclasses set ``_ndims`` (allowed input ranks) and ``_layout``."""

    _ndims: tuple[int, ...] = ()
    _layout = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, *, dtype=np.float32, backend="numpy"):
        super().__init__(backend)
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                or num_features < 1:
            raise ValueError(f"num_features: expected a positive int, got {num_features!r}")
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
        eps = float(eps)
        if not eps >= 0:
            raise ValueError(f"eps: expected a number >= 0, got {eps!r}")
        if momentum is not None:
            momentum = float(momentum)
            if not 0.0 <= momentum <= 1.0:
                raise ValueError(f"momentum: expected None or a number in [0, 1], got {momentum!r}")
        C = self.num_features = int(num_features)
        self.eps, self.momentum = eps, momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        self.dtype = dtype
        # torch's init: weight 1, bias 0; running mean 0, var 1
        self.weight = Parameter(np.ones(C, dtype)) if self.affine else None
        self.bias = Parameter(np.zeros(C, dtype)) if self.affine else None
        if self.track_running_stats:
            self.running_mean = np.zeros(C, dtype)
            self.running_var = np.ones(C, dtype)
            self.num_batches_tracked = np.zeros((), np.int64)
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self._cache = None

    # -- buffers ------------------------------------------------------------------
    def _buffers(self) -> dict:
        if not self.track_running_stats:
            return {}
        return {"running_mean": self.running_mean, "running_var": self.running_var,
                "num_batches_tracked": self.num_batches_tracked}

    def _load_buffer(self, name, value) -> None:
        if name not in self._buffers():
            super()._load_buffer(name, value)
        own = getattr(self, name)
        value = np.asarray(value)
        if tuple(value.shape) != tuple(own.shape):
            raise ValueError(f"state_dict[{name!r}] ({type(self).__name__}): expected shape "
                             f"{tuple(own.shape)}, got {tuple(value.shape)}")
        # in place, on whatever device the buffer lives
        own[...] = array_module(own).asarray(value.astype(own.dtype, copy=False))

    def _move_buffers(self, move) -> None:
        if self.track_running_stats:
            self.running_mean = move(self.running_mean)
            self.running_var = move(self.running_var)
            self.num_batches_tracked = move(self.num_batches_tracked)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, ``num_batches_tracked`` 0."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    # -- compute ------------------------------------------------------------------
    def forward(self, x):
        """Normalise ``x``; see the class docstring for shapes.

        Raises
        ------
        ValueError
            wrong rank, ``x.shape[1] != num_features``, or a single value per channel in
            training mode.
        """
        if getattr(x, "ndim", None) not in self._ndims:
            want = " or ".join(f"{n}-d" for n in self._ndims)
            got = f"shape {tuple(x.shape)}" if hasattr(x, "shape") else type(x).__name__
            raise ValueError(f"x: expected a {want} array {self._layout}, got {got}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"x: expected {self.num_features} channels (num_features) in dim 1, "
                             f"got shape {tuple(x.shape)}")
        use_batch = self.training or not self.track_running_stats
        momentum = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            # momentum=None: cumulative average, the k-th batch gets weight 1/k (like torch)
            momentum = (1.0 / int(self.num_batches_tracked) if self.momentum is None
                        else self.momentum)
        y, self._cache = self.kernel("batchnorm_forward")(
            x, None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
            self.running_mean, self.running_var, use_batch, momentum, self.eps)
        return y

    def backward(self, dout):
        """Return ``dx`` (same shape as ``x``); accumulate ``weight.grad`` and ``bias.grad``."""
        cache = saved(self, "_cache")
        return self.kernel("batchnorm_backward")(
            None if self.weight is None else self.weight.grad,
            None if self.bias is None else self.bias.grad, dout, cache)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}, "
                f"backend={self.backend!r}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over ``(N, C)`` or ``(N, C, L)`` inputs (``torch.nn.BatchNorm1d``).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel ``C``, with statistics over
    ``N`` (and ``L``).

    Parameters
    ----------
    num_features : int
        C, the number of channels.
    eps : float
        added to the variance.
    momentum : float or None
        weight of the new batch in the running statistics; None: cumulative average.
    affine : bool
        learn ``weight`` (init 1) and ``bias`` (init 0), shape (C,).
    track_running_stats : bool
        keep the buffers ``running_mean`` (C,), ``running_var`` (C,) and
        ``num_batches_tracked`` (int64 scalar), used in eval mode; False: batch statistics always.
    dtype : numpy dtype
        of the parameters and buffers (float32 or float64); inputs must match.
    backend : str

    Shapes
    ------
    x : (N, C) or (N, C, L) -> y : same shape
    """

    _ndims = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over ``(N, C, H, W)`` inputs (``torch.nn.BatchNorm2d``).

    Statistics per channel over ``N``, ``H`` and ``W``; otherwise as :class:`BatchNorm1d`.

    Parameters
    ----------
    num_features : int
        C.
    eps, momentum, affine, track_running_stats, dtype, backend
        see :class:`BatchNorm1d`.

    Shapes
    ------
    x : (N, C, H, W) -> y : (N, C, H, W)
    """

    _ndims = (4,)
    _layout = "(N, C, H, W)"
