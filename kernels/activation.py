"""Elementwise activations: ReLU, sigmoid, tanh (forward and backward).

Backward takes the forward *output* ``y`` (not the input): all three
derivatives are cheap functions of ``y``, so layers save one array.

Versions
--------
numpy v1  reference, vectorised NumPy
numba v1  one fused parallel loop over the flattened array (no temporaries)
cuda v1   (kernels/cuda/activation.cu, on "cuda" and "cuda-emu") one thread per element,
          grid-stride loop
"""
# any shape; computed over the flattened contiguous array
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import registry
from ._checks import check_float_array, check_shape
from .cuda.common import THREADS as CUDA_THREADS
from .cuda.common import blocks_for, ctype, device_xp, register_cuda
from .cuda.loader import load_module


def _check_pair(dy, y, xp=None):
    y = check_float_array("y", y, xp=xp)
    dy = check_float_array("dy", dy, dtype=y.dtype, xp=xp)
    check_shape("dy", dy, y.shape)
    return dy, y


# ----------------------------------------------------------------------------
# NumPy reference
# ----------------------------------------------------------------------------
@registry.register("relu_forward", "numpy", 1, doc="reference: max(x, 0), NaN propagates")
def relu_forward_ref(x):
    x = check_float_array("x", x)
    return np.where(x < 0, 0, x).astype(x.dtype)   # NaN < 0 is False: NaN kept


@registry.register("relu_backward", "numpy", 1, doc="reference: dy * (y > 0)")
def relu_backward_ref(dy, y):
    dy, y = _check_pair(dy, y)
    return np.where(y > 0, dy, 0).astype(y.dtype)


@registry.register("sigmoid_forward", "numpy", 1, doc="reference: 1 / (1 + exp(-x)), stable")
def sigmoid_forward_ref(x):
    x = check_float_array("x", x)
    # exp of a non-positive number only: no overflow warnings for large |x|
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


@registry.register("sigmoid_backward", "numpy", 1, doc="reference: dy * y * (1 - y)")
def sigmoid_backward_ref(dy, y):
    dy, y = _check_pair(dy, y)
    return dy * y * (1 - y)


@registry.register("tanh_forward", "numpy", 1, doc="reference: np.tanh")
def tanh_forward_ref(x):
    x = check_float_array("x", x)
    return np.tanh(x)


@registry.register("tanh_backward", "numpy", 1, doc="reference: dy * (1 - y^2)")
def tanh_backward_ref(dy, y):
    dy, y = _check_pair(dy, y)
    return dy * (1 - y * y)


# ----------------------------------------------------------------------------
# Numba: one fused parallel pass each
# ----------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _relu_fwd(x, y):
    for i in prange(x.size):
        v = x[i]
        y[i] = 0 if v < 0 else v


@njit(parallel=True, cache=True)
def _relu_bwd(dy, y, dx):
    for i in prange(y.size):
        dx[i] = dy[i] if y[i] > 0 else 0


@njit(parallel=True, cache=True)
def _sigmoid_fwd(x, y):
    for i in prange(x.size):
        v = x[i]
        if v >= 0:
            y[i] = 1 / (1 + math.exp(-v))
        else:
            e = math.exp(v)
            y[i] = e / (1 + e)


@njit(parallel=True, cache=True)
def _sigmoid_bwd(dy, y, dx):
    for i in prange(y.size):
        dx[i] = dy[i] * y[i] * (1 - y[i])


@njit(parallel=True, cache=True)
def _tanh_fwd(x, y):
    for i in prange(x.size):
        y[i] = math.tanh(x[i])


@njit(parallel=True, cache=True)
def _tanh_bwd(dy, y, dx):
    for i in prange(y.size):
        dx[i] = dy[i] * (1 - y[i] * y[i])


def _unary(core):
    def run(x):
        x = check_float_array("x", x)
        y = np.empty_like(x)
        core(x.reshape(-1), y.reshape(-1))
        return y
    return run


def _binary(core):
    def run(dy, y):
        dy, y = _check_pair(dy, y)
        dx = np.empty_like(y)
        core(dy.reshape(-1), y.reshape(-1), dx.reshape(-1))
        return dx
    return run


for _name, _fwd, _bwd in (("relu", _relu_fwd, _relu_bwd),
                          ("sigmoid", _sigmoid_fwd, _sigmoid_bwd),
                          ("tanh", _tanh_fwd, _tanh_bwd)):
    registry.register(f"{_name}_forward", "numba", 1, default=True,
                      doc="fused parallel elementwise loop")(_unary(_fwd))
    registry.register(f"{_name}_backward", "numba", 1, default=True,
                      doc="fused parallel elementwise loop")(_binary(_bwd))


# ----------------------------------------------------------------------------
# CUDA launchers (kernels/cuda/activation.cu): "cuda" (CuPy arrays) and "cuda-emu"
# ----------------------------------------------------------------------------
_CU_NAMES = ("relu", "sigmoid", "tanh")
_CU_TEMPLATES = tuple(f"{n}_{d}<{t}>" for n in _CU_NAMES for d in ("fwd", "bwd")
                      for t in ("float", "double"))
_CU_MAX_BLOCKS = 65535   # grid-stride loops cover the rest


def _cu_launch(backend, name, dtype, n, args):
    mod = load_module("activation.cu", backend, name_expressions=_CU_TEMPLATES)
    fn = mod.get_function(f"{name}<{ctype(dtype)}>")
    fn((min(blocks_for(n, CUDA_THREADS), _CU_MAX_BLOCKS),), (CUDA_THREADS,), args + (np.int64(n),))


def _make_cuda_activation(name):
    def make_forward(backend):
        def forward(x):
            x = check_float_array("x", x, xp=device_xp(backend))
            y = device_xp(backend).empty_like(x)
            if x.size:
                _cu_launch(backend, f"{name}_fwd", x.dtype, x.size, (y, x))
            return y
        return forward

    def make_backward(backend):
        def backward(dy, y):
            dy, y = _check_pair(dy, y, xp=device_xp(backend))
            dx = device_xp(backend).empty_like(y)
            if y.size:
                _cu_launch(backend, f"{name}_bwd", y.dtype, y.size, (dx, dy, y))
            return dx
        return backward

    return make_forward, make_backward


for _name in _CU_NAMES:
    _mf, _mb = _make_cuda_activation(_name)
    register_cuda(f"{_name}_forward", 1, default=True, doc="one thread per element")(_mf)
    register_cuda(f"{_name}_backward", 1, default=True, doc="one thread per element")(_mb)
del _name, _mf, _mb
