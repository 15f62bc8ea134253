"""FLOP and byte counts for the benchmarked ops: pure functions of the shapes.

# N batch, C in-ch, K out-ch, H W in, P Q out, R S filter, T steps, I input, Hd hidden

Conventions (after DeepBench, with one documented difference)
--------------------------------------------------------------
* A multiply-add is **2 FLOPs**. Bias additions and activation functions are not
  counted (they are O(output), negligible next to the O(output x reduction) GEMM).
* conv2d forward: ``2 N K P Q C R S``. The backward-data pass (dx) and the
  backward-weight pass (dw) are GEMMs of the same size, so each costs the same as
  the forward; one training step is ``3 x`` the forward (:func:`training_flops`).
  DeepBench counts bwd-data even for a first layer, which needs no dx; so do we.
* recurrent forward: ``2 N T Hd (I + Hd) G`` with ``G`` gates: 1 for the vanilla
  cells (``rnn_tanh``, ``rnn_relu``), 4 for ``lstm`` (i, f, g, o), 3 for ``gru``
  (r, z, n). **This counts the input projection** ``x_t W_ih^T`` (the ``I`` term).
  DeepBench runs cuDNN with ``CUDNN_SKIP_INPUT`` and counts only ``2 N T Hd Hd G``
  (its inputs already have ``Hd`` features); ours is larger by ``(I + Hd) / Hd``
  (2x for DeepBench's shapes, where ``I = Hd``).
* pooling: one operation per window element, ``N C P Q kh kw`` (max: compares,
  avg: adds plus the final divide), for roofline placement only; pooling is
  memory-bound and its GFLOP/s are not comparable with a GEMM's.
* bytes: *minimal compulsory traffic*: every input and weight read once, every
  output written once, at ``itemsize`` bytes per element (4 for float32). Real
  kernels move more; ``flops / bytes`` is therefore an upper bound on the
  arithmetic intensity, which is what a roofline needs.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "RNN_GATES", "gates", "pair",
    "conv2d_output_size", "conv2d_flops", "conv2d_bytes",
    "pool2d_output_size", "pool2d_flops", "pool2d_bytes",
    "rnn_flops", "rnn_bytes", "training_flops", "arithmetic_intensity",
]

#: gates per recurrent cell: rows of ``W_ih`` are ``G * Hd``.
RNN_GATES: dict[str, int] = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}

POOL_OPS = ("maxpool2d", "avgpool2d")


def pair(value) -> tuple[int, int]:
    """``int`` or 2-sequence -> ``(h, w)`` tuple of ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value), int(value))
    h, w = value
    return (int(h), int(w))


def gates(cell: str) -> int:
    """Number of gates ``G`` of a recurrent cell (``rnn_tanh``/``rnn_relu`` 1, ``lstm`` 4, ``gru`` 3)."""
    try:
        return RNN_GATES[cell]
    except KeyError:
        raise ValueError(f"cell: unknown recurrent cell {cell!r}; expected one of "
                         f"{sorted(RNN_GATES)}") from None


def _out_len(n: int, k: int, stride: int, pad: int, dil: int) -> int:
    # PyTorch's floor formula; may be <= 0 for an invalid shape (callers check)
    return (n + 2 * pad - dil * (k - 1) - 1) // stride + 1


def conv2d_output_size(H: int, W: int, R: int, S: int, stride=1, padding=0,
                       dilation=1) -> tuple[int, int]:
    """Output height and width ``(P, Q)`` of a 2-D convolution.

    ``P = floor((H + 2 pad_h - dil_h (R - 1) - 1) / stride_h) + 1``, likewise ``Q``
    (``torch.nn.Conv2d``'s formula).

    Raises
    ------
    ValueError
        if ``P < 1`` or ``Q < 1`` (the filter does not fit the padded input).
    """
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    dh, dw = pair(dilation)
    if min(sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"stride/dilation must be >= 1 and padding >= 0, got stride={stride!r}, "
                         f"padding={padding!r}, dilation={dilation!r}")
    P, Q = _out_len(H, R, sh, ph, dh), _out_len(W, S, sw, pw, dw)
    if P < 1 or Q < 1:
        raise ValueError(f"conv2d: output size ({P}, {Q}) < 1 for input {H}x{W}, filter {R}x{S}, "
                         f"stride {stride!r}, padding {padding!r}, dilation {dilation!r}")
    return P, Q


def conv2d_flops(N: int, C: int, H: int, W: int, K: int, R: int, S: int, stride=1,
                 padding=0, dilation=1) -> int:
    """FLOPs of one conv2d pass (forward, or bwd-data, or bwd-weight).

    ``2 * N * K * P * Q * C * R * S``: each of the ``N K P Q`` outputs is a dot
    product of length ``C R S``, one multiply-add (2 FLOPs) per term. Bias not counted.
    """
    P, Q = conv2d_output_size(H, W, R, S, stride, padding, dilation)
    return 2 * N * K * P * Q * C * R * S


def conv2d_bytes(N: int, C: int, H: int, W: int, K: int, R: int, S: int, stride=1,
                 padding=0, dilation=1, itemsize: int = 4, bias: bool = True) -> int:
    """Minimal compulsory bytes of a conv2d forward.

    ``itemsize * (N C H W + K C R S + K + N K P Q)``: read x, weight, bias once,
    write y once (the ``K`` bias term only when ``bias``).
    """
    P, Q = conv2d_output_size(H, W, R, S, stride, padding, dilation)
    return itemsize * (N * C * H * W + K * C * R * S + (K if bias else 0) + N * K * P * Q)


def pool2d_output_size(H: int, W: int, kernel, stride=None, padding=0) -> tuple[int, int]:
    """Output ``(P, Q)`` of 2-D pooling: ``floor((H + 2 pad - k) / stride) + 1``.

    ``stride`` defaults to ``kernel`` (PyTorch's default). Padding must be at most
    half the window (PyTorch's rule: every window overlaps the input).

    Raises
    ------
    ValueError
        for ``P < 1``/``Q < 1`` or padding larger than half the window.
    """
    kh, kw = pair(kernel)
    sh, sw = pair(kernel if stride is None else stride)
    ph, pw = pair(padding)
    if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"pool2d: kernel/stride must be >= 1 and padding >= 0, got "
                         f"kernel={kernel!r}, stride={stride!r}, padding={padding!r}")
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"pool2d: padding {padding!r} must be at most half the window {kernel!r}")
    P, Q = _out_len(H, kh, sh, ph, 1), _out_len(W, kw, sw, pw, 1)
    if P < 1 or Q < 1:
        raise ValueError(f"pool2d: output size ({P}, {Q}) < 1 for input {H}x{W}, window "
                         f"{kernel!r}, stride {stride!r}, padding {padding!r}")
    return P, Q


def pool2d_flops(N: int, C: int, H: int, W: int, kernel, stride=None, padding=0) -> int:
    """Nominal operations of a pooling forward: ``N * C * P * Q * kh * kw``.

    One compare (max) or add (avg) per window element; a convention for roofline
    placement, not a GEMM-comparable FLOP count.
    """
    kh, kw = pair(kernel)
    P, Q = pool2d_output_size(H, W, kernel, stride, padding)
    return N * C * P * Q * kh * kw


def pool2d_bytes(N: int, C: int, H: int, W: int, kernel, stride=None, padding=0,
                 itemsize: int = 4) -> int:
    """Minimal compulsory bytes of a pooling forward: ``itemsize * (N C H W + N C P Q)``.

    Read x once, write y once. (Max-pool training also stores argmax indices; not
    counted here.)
    """
    P, Q = pool2d_output_size(H, W, kernel, stride, padding)
    return itemsize * (N * C * H * W + N * C * P * Q)


def rnn_flops(cell: str, T: int, N: int, I: int, Hd: int) -> int:
    """FLOPs of a recurrent forward over ``T`` steps: ``2 * N * T * Hd * (I + Hd) * G``.

    Per step and sentence the cell computes ``G * Hd`` pre-activations, each a dot
    product of length ``I`` (input projection) plus ``Hd`` (recurrence). ``G`` is
    :func:`gates` (1 vanilla, 4 LSTM, 3 GRU). Unlike DeepBench (which skips the
    input projection: ``2 N T Hd^2 G``) the ``I`` term is counted. Element-wise
    gate math and biases are not counted.
    """
    G = gates(cell)
    return 2 * N * T * Hd * (I + Hd) * G


def rnn_bytes(cell: str, T: int, N: int, I: int, Hd: int, itemsize: int = 4) -> int:
    """Minimal compulsory bytes of a recurrent forward.

    ``itemsize * (T N I + N Hd [+ N Hd] + G Hd (I + Hd) + 2 G Hd + T N Hd [+ N Hd])``:
    read the inputs ``x`` and ``h0`` (and ``c0`` for LSTM), the weights
    ``W_ih``/``W_hh`` and both biases once; write the outputs ``y`` (``T N Hd``, its
    last step is ``h_T``) and, for LSTM, ``c_T``.
    """
    G = gates(cell)
    state = 2 if cell == "lstm" else 1  # LSTM carries c besides h
    reads = T * N * I + state * N * Hd + G * Hd * (I + Hd) + 2 * G * Hd
    writes = T * N * Hd + (state - 1) * N * Hd
    return itemsize * (reads + writes)


def training_flops(forward_flops: int, op: str | None = None) -> int:
    """FLOPs of a training step (forward + backward) given the forward count.

    For GEMM-shaped ops (conv2d, the recurrent cells) the backward is two GEMMs
    of the forward's size: backward-data (``dx``, ``dh``) and backward-weight
    (``dW``, accumulated over all ``T N`` rows), so training = **3 x forward**.
    For pooling (``op`` in ``maxpool2d``/``avgpool2d``) the backward scatters one
    value per window element, so training = 2 x forward.
    """
    return (2 if op in POOL_OPS else 3) * int(forward_flops)


def arithmetic_intensity(flops: float, nbytes: float) -> float:
    """FLOPs per byte, ``flops / bytes`` (inf for zero bytes)."""
    return float(flops) / nbytes if nbytes else float("inf")
