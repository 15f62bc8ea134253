"""Gradient clipping like ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``.

Both accept a Parameter, a Module, or an iterable mixing them (a Module contributes all of its
parameters); a parameter reached twice is clipped once. Gradients are modified in place.
"""
from __future__ import annotations

import math

import numpy as np

from .base import Module, Parameter

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _collect(parameters_or_modules, name="parameters") -> list[Parameter]:
    if isinstance(parameters_or_modules, (Parameter, Module)):
        parameters_or_modules = [parameters_or_modules]
    out, seen = [], set()
    try:
        items = list(parameters_or_modules)
    except TypeError:
        raise TypeError(f"{name}: expected a Parameter, a Module or an iterable of them, got "
                        f"{type(parameters_or_modules).__name__}") from None
    for item in items:
        ps = item.parameters() if isinstance(item, Module) else [item]
        for p in ps:
            if not isinstance(p, Parameter):
                raise TypeError(f"{name}: expected Parameters or Modules, got "
                                f"{type(p).__name__}")
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def _host(a):
    return a.get() if type(a).__module__.startswith("cupy") else a


def clip_grad_norm_(parameters_or_modules, max_norm, norm_type=2.0,
                    error_if_nonfinite=False) -> float:
    """Scale all gradients together so that their joint ``norm_type``-norm is at most
    ``max_norm``; return the total norm before clipping (a float).

    As in PyTorch: ``total = ||[||g_1||, ||g_2||, ...]||`` (``norm_type=inf``: the max abs
    value), each gradient is multiplied by ``min(1, max_norm / (total + 1e-6))``.

    Raises
    ------
    RuntimeError
        the total norm is nan/inf and ``error_if_nonfinite`` is True.
    """
    params = _collect(parameters_or_modules)
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    if not params:
        return 0.0
    if math.isinf(norm_type):
        total = max(float(np.max(np.abs(_host(p.grad)))) if p.grad.size else 0.0
                    for p in params)
    else:
        norms = [float(np.linalg.norm(_host(p.grad).ravel().astype(np.float64), ord=norm_type))
                 for p in params]
        total = float(np.linalg.norm(np.asarray(norms), ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} is {total}; "
                           "set error_if_nonfinite=False to clip anyway")
    coef = min(1.0, max_norm / (total + 1e-6))
    if coef < 1.0:
        for p in params:
            p.grad *= p.grad.dtype.type(coef)
    return total


def clip_grad_value_(parameters_or_modules, clip_value) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place."""
    clip_value = float(clip_value)
    if clip_value < 0:
        raise ValueError(f"clip_value: expected a non-negative number, got {clip_value}")
    for p in _collect(parameters_or_modules):
        p.grad[...] = p.grad.clip(-clip_value, clip_value)
