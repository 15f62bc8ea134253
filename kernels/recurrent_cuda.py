"""Recurrent sequence kernels on the GPU backends ("cuda" with CuPy, "cuda-emu" on the CPU).

# T steps, N batch, I input, Hd hidden, G gates (rnn 1, lstm 4, gru 3)

The CUDA C is ``kernels/cuda/recurrent.cu``. Same ops, signatures, argument checks (the
``_check_forward`` / ``_check_backward`` helpers of :mod:`kernels.recurrent` with the backend's
array module), cache dict (keys, shapes, contents), ``lengths`` / ``reverse`` / ``bptt_steps``
semantics and accumulate-vs-overwrite rules as the CPU versions in :mod:`kernels.recurrent`, so
the layers run unchanged on device arrays (CuPy on "cuda", NumPy on "cuda-emu"). ``lengths``
is host data (a CuPy array is copied to the host once). As on the CPU, the input projection
``X @ W_ih^T + b_ih`` is ONE GEMM over all T*N rows before the time loop, and dW_ih, dW_hh,
db_ih, db_hh and dx are ONE GEMM (or reduction) each after the BPTT loop (``xp.matmul``: cuBLAS
on "cuda", NumPy's BLAS on "cuda-emu"); only the time recursion differs between versions.

Versions (``{cell}_sequence_forward`` / ``{cell}_sequence_backward``, cell in rnn_tanh,
rnn_relu, lstm, gru; the Jordan RNN has no CUDA version)
------------------------------------------------------------------------------------------
cuda v1  per step: the recurrent GEMM ``h_{t-1} @ W_hh^T`` (backward ``dg_t @ W_hh``) through
         ``xp.matmul`` (cuBLAS on "cuda"; NumPy on "cuda-emu", which does not emulate cuBLAS)
         plus ONE fused elementwise kernel (one thread per (sentence, unit): gates, state
         update, caches, masking). Backward: the kernel of step t first finishes step t+1's
         ``dh = direct + dg @ W_hh`` and then runs step t's elementwise backward, so a step is
         one GEMM + one launch (T+1 launches in all).
cuda v2  per step ONE kernel: a hand-tiled GEMM (32 units x 32 sentences per 256-thread
         block, 32-deep shared-memory stages; each thread accumulates all G gates of its
         unit for 4 sentences) whose epilogue is the cell's elementwise step, so ``hg`` never
         goes through global memory and there is no cuBLAS call. Backward: one kernel per step
         computes the tiled ``dh_prev = direct + dg_{t+1} @ W_hh`` for its units and, fused in
         the epilogue, step t's elementwise backward for the same units (the dependency
         crosses all units only through ``dg``, which the previous launch wrote).

Default: v1 on both backends, by measurement. On an H200 (float32, best of 5, CUDA events)
v2 was 1.4-4.5x SLOWER than v1 on every workload tried, e.g. forward / backward per call:

============================  ===================  ===================
workload                      v1 fwd / bwd (ms)    v2 fwd / bwd (ms)
============================  ===================  ===================
rnn_tanh T=50 N=1 Hd=1760     1.43 / 1.84          5.91 / 4.84
rnn_tanh T=50 N=128 Hd=1760   2.81 / 5.09          8.49 / 9.25
lstm T=25 N=16 Hd=512         0.99 / 1.21          2.19 / 3.39
lstm T=25 N=128 Hd=2048       5.45 / 9.59          15.3 / 23.5
gru T=50 N=32 Hd=1536         2.44 / 3.90          10.9 / 15.3
lstm T=100 N=16 Hd=256        3.20 / 3.45          4.35 / 6.15
============================  ===================  ===================

v2 saves a launch and the ``hg`` round trip per step, but its grid has only
ceil(Hd/32)*ceil(N/32) blocks (55 for Hd=1760, N <= 32, on 132 SMs), each streaming 32*G rows
of W_hh through shared memory with two barriers per 32-deep stage and no tensor cores, while
cuBLAS splits the reduction over many more blocks; the per-step GEMM is bandwidth-bound on
W_hh, so v2 leaves most of the GPU idle. It is kept as the fused sibling (a fast version
needs split-K or a persistent, W_hh-resident kernel).
"""
from __future__ import annotations

import numpy as np

from .cuda.common import THREADS as CUDA_THREADS
from .cuda.common import blocks_for, ctype, device_lengths, device_xp, register_cuda
from .cuda.loader import load_module
from .recurrent import (CELLS, GATES, _check_backward, _check_forward, _input_projection,
                        _param_grads)

_CU_FILE = "recurrent.cu"
_CU_TEMPLATES = tuple(
    [f"{k}<{t}>" for k in ("rnn_fwd_pointwise", "rnn_bwd_pointwise", "rnn_bwd_fused")
     for t in ("float", "double")]
    + [f"rnn_fwd_fused<{t}, {g}>" for t in ("float", "double") for g in (1, 3, 4)])
_CU_CODE = {"rnn_tanh": 0, "rnn_relu": 1, "lstm": 2, "gru": 3}   # RNN_* in recurrent.cu
_CU_BU = 32            # RNN_BU: hidden units per v2 block
_CU_BM = 32            # RNN_BM: sentences per v2 block
_CU_V2_BLOCK = (32, 8)
_CU_MAX_BLOCKS = 65535
_I32_MAX = 2**31 - 1


def _cu_kernel(backend, name, dtype, gates=None):
    mod = load_module(_CU_FILE, backend, name_expressions=_CU_TEMPLATES)
    g = "" if gates is None else f", {gates}"
    return mod.get_function(f"{name}<{ctype(dtype)}{g}>")


def _host_lengths(lengths):
    """``lengths`` as host data for the shared check (a CuPy array is copied once)."""
    if lengths is not None and type(lengths).__module__.startswith("cupy"):
        return lengths.get()
    return lengths


def _check_sizes(cell, T, N, G, Hd):
    """The kernels index (N, G*Hd) rows and step numbers with int."""
    big = max(T, N * G * Hd)
    if big > _I32_MAX:
        raise ValueError(f"{cell} (cuda): T or N*G*Hd is {big} > 2^31-1; the CUDA kernels "
                         "index steps and per-step arrays with int")


def _v2_grid(N, Hd):
    gx, gy = -(-Hd // _CU_BU), -(-N // _CU_BM)
    if gy > _CU_MAX_BLOCKS:
        raise ValueError(f"recurrent (cuda v2): N={N} needs {gy} blocks in grid y > 65535")
    return (gx, gy)


# ----------------------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------------------
def _forward(version, backend, cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse):
    xp = device_xp(backend)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, T, N, G, Hd = _check_forward(
        cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, _host_lengths(lengths), xp=xp)
    _check_sizes(cell, T, N, G, Hd)
    dt = x.dtype
    lstm = cell == "lstm"
    xg = _input_projection(x, w_ih, b_ih)                  # ONE GEMM for all T steps
    lens = device_lengths(xp, lengths, T, N, np.int64)
    h = xp.zeros((N, Hd), dt) if h0 is None else h0.copy()
    h_next = xp.empty_like(h)                               # ping-pong: kernels read h_{t-1}
    y = xp.empty((T, N, Hd), dt)
    cache = {"hprev": xp.empty((T, N, Hd), dt)}
    cache["gates"] = y if G == 1 else xp.empty((T, N, G * Hd), dt)
    if lstm:
        c = xp.zeros((N, Hd), dt) if c0 is None else c0.copy()
        cache["cprev"] = xp.empty((T, N, Hd), dt)
        cache["tanh_c"] = aux = xp.empty((T, N, Hd), dt)
        cprev = cache["cprev"]
    else:
        c = cprev = y                                       # never touched by rnn / gru
        aux = xp.empty((T, N, Hd), dt) if cell == "gru" else y
        if cell == "gru":
            cache["hn"] = aux
    has_b = np.int32(b_hh is not None)
    b = w_hh if b_hh is None else b_hh                      # never read without a bias
    code, i32 = np.int32(_CU_CODE[cell]), np.int32
    if version == 1:
        fn = _cu_kernel(backend, "rnn_fwd_pointwise", dt)
        hg = xp.empty((N, G * Hd), dt)
        w_hhT = w_hh.T
        grid = (min(blocks_for(N * Hd, CUDA_THREADS), _CU_MAX_BLOCKS),)
    else:
        fn = _cu_kernel(backend, "rnn_fwd_fused", dt, G)
        grid = _v2_grid(N, Hd)
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        out = (h_next, c, y, cache["hprev"], cache["gates"], cprev, aux, xg)
        tail = (has_b, h, lens, code, i32(t), i32(N), i32(Hd))
        if version == 1:
            xp.matmul(h, w_hhT, out=hg)                     # cuBLAS on "cuda"
            fn(grid, (CUDA_THREADS,), out + (hg, b) + tail)
        else:
            fn(grid, _CU_V2_BLOCK, out + (w_hh, b) + tail)
        h, h_next = h_next, h
    if lstm:
        return y, h, c, cache
    return y, h, cache


# ----------------------------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------------------------
def _backward(version, backend, cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh,
              cache, lengths, reverse, bptt_steps):
    xp = device_xp(backend)
    (x, w_ih, w_hh, cache, dy, dh_n, dc_n, lengths, k, T, N, G, Hd) = _check_backward(
        cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh, cache,
        _host_lengths(lengths), bptt_steps, xp=xp)
    _check_sizes(cell, T, N, G, Hd)
    dt = x.dtype
    lstm = cell == "lstm"
    lens = device_lengths(xp, lengths, T, N, np.int64)
    dh = xp.zeros((N, Hd), dt) if dh_n is None else dh_n.copy()
    dc = (xp.zeros((N, Hd), dt) if dc_n is None else dc_n.copy()) if lstm else dh
    direct = xp.zeros((N, Hd), dt)
    dgx = xp.empty((T, N, G * Hd), dt)
    dgh = xp.empty((T, N, G * Hd), dt) if cell == "gru" else dgx
    hprev, gates = cache["hprev"], cache["gates"]
    cprev = cache["cprev"] if lstm else hprev               # dummies are never read
    aux = cache["tanh_c"] if lstm else cache["hn"] if cell == "gru" else hprev
    dyv, has_dy = (dgx, np.int32(0)) if dy is None else (dy, np.int32(1))
    code, i32 = np.int32(_CU_CODE[cell]), np.int32
    tail = (lens, code)
    if version == 1:
        fn = _cu_kernel(backend, "rnn_bwd_pointwise", dt)
        mm = xp.empty((N, Hd), dt)
        grid, block = (min(blocks_for(N * Hd, CUDA_THREADS), _CU_MAX_BLOCKS),), (CUDA_THREADS,)
    else:
        fn = _cu_kernel(backend, "rnn_bwd_fused", dt)
        grid, block = _v2_grid(N, Hd), _CU_V2_BLOCK
    times = list(range(T)) if reverse else list(range(T - 1, -1, -1))
    prev = -1
    # launch s finishes step s-1 (dh through W_hh) and runs step s: T+1 launches
    for t in times + [-1]:
        if version == 1:
            if prev >= 0:
                xp.matmul(dgh[prev], w_hh, out=mm)          # cuBLAS on "cuda"
            args = (dh, dc, direct, dgx, dgh, mm)
        else:
            args = (dh, dc, direct, dgx, dgh, w_hh)
        fn(grid, block, args + (dyv, has_dy, hprev, gates, cprev, aux) + tail
           + (i32(prev), i32(t), i32(bool(reverse)), i32(k), i32(N), i32(Hd)))
        prev = t
    dx = _param_grads(dw_ih, dw_hh, db_ih, db_hh, dgx, dgh, x, hprev, w_ih)
    if lstm:
        return dx, dh, dc
    return dx, dh


# ----------------------------------------------------------------------------------------------
# registrations
# ----------------------------------------------------------------------------------------------
_DOC = {1: "per step: cuBLAS GEMM (numpy on cuda-emu) + one fused elementwise kernel; "
           "bwd: one fused launch per step after the dg @ W_hh GEMM",
        2: "per step ONE kernel: 32x32-tiled h @ W_hh^T GEMM fused with the gate epilogue "
           "(all G gates of a unit in one thread); bwd tiled dg @ W_hh fused with the next "
           "step's elementwise backward"}
_DEFAULT_VERSION = 1


def _make(cell, version):
    """Factories (forward, backward) of CUDA version ``version`` of ``cell`` for a backend."""
    lstm = cell == "lstm"

    def make_forward(backend):
        if lstm:
            def forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False):
                return _forward(version, backend, cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                lengths, reverse)
        else:
            def forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False):
                return _forward(version, backend, cell, x, h0, None, w_ih, w_hh, b_ih, b_hh,
                                lengths, reverse)
        forward.__doc__ = (f"{cell} sequence forward, CUDA v{version} ({backend}); see "
                           "kernels.recurrent for the arguments and the cache.")
        return forward

    def make_backward(backend):
        if lstm:
            def backward(dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh, cache,
                         lengths=None, reverse=False, bptt_steps=None):
                return _backward(version, backend, cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n,
                                 dc_n, x, w_ih, w_hh, cache, lengths, reverse, bptt_steps)
        else:
            def backward(dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, x, w_ih, w_hh, cache,
                         lengths=None, reverse=False, bptt_steps=None):
                return _backward(version, backend, cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n,
                                 None, x, w_ih, w_hh, cache, lengths, reverse, bptt_steps)
        backward.__doc__ = (f"{cell} BPTT, CUDA v{version} ({backend}): parameter gradients "
                            "accumulate, (dx, dh0[, dc0]) are returned.")
        return backward

    return make_forward, make_backward


for _cell in CELLS:
    assert GATES[_cell] in (1, 3, 4)
    for _v in (1, 2):
        _fwd, _bwd = _make(_cell, _v)
        register_cuda(f"{_cell}_sequence_forward", _v, default=_v == _DEFAULT_VERSION,
                      doc=_DOC[_v])(_fwd)
        register_cuda(f"{_cell}_sequence_backward", _v, default=_v == _DEFAULT_VERSION,
                      doc=_DOC[_v])(_bwd)
del _cell, _v, _fwd, _bwd
