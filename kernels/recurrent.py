"""Recurrent kernels batched across sentences: RNN (tanh / relu), LSTM, GRU, and a Jordan RNN.

# T steps, N batch, I input, Hd hidden, G gates (rnn 1, lstm 4, gru 3), O output (Jordan)

A recurrent step is a vector x matrix product per sentence; stacking the N sentences of a batch at
the same time step turns it into a matrix x matrix product (``h (N, Hd) @ W_hh^T (Hd, G*Hd)``).
Every sequence kernel below therefore works on a whole time-major batch ``x (T, N, I)``:

* forward: the input projection ``X @ W_ih^T + b_ih`` for all T steps is ONE GEMM over T*N rows
  before the time loop; the loop then only does ``h_{t-1} @ W_hh^T`` (GEMM, GEMV at N=1) and the
  fused gate nonlinearities, saving the post-activation gates (backward recomputes nothing);
* backward (BPTT): the sequential part is only the recursion for dh (and dc); the pre-activation
  gradients of all steps are kept, and dW_ih, dW_hh, db_ih, db_hh and dx are ONE GEMM (or one
  reduction) each over all T*N rows after the loop.

Cells and equations (PyTorch's gate order and equations, so a ``state_dict`` moves unchanged):

* ``rnn_tanh`` / ``rnn_relu``: ``h_t = f(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``
* ``lstm`` (gates i,f,g,o): ``i,f,o = sigmoid(.)``, ``g = tanh(.)``, ``c_t = f*c_{t-1} + i*g``,
  ``h_t = o * tanh(c_t)``
* ``gru`` (gates r,z,n): ``r,z = sigmoid(.)``, ``n = tanh(W_in x + b_in + r*(W_hn h + b_hn))``,
  ``h_t = (1-z)*n + z*h_{t-1}``
* ``jordan``: the previous step's OUTPUT feeds the hidden layer:
  ``h_t = tanh(x_t W_ih^T + y_{t-1} W_hy^T + b_h)``, ``y_t = h_t W_ho^T + b_o`` (``y_{-1} = y0``).

Versions (per op; every op exists on both backends unless noted)
-----------------------------------------------------------------
numpy v1  reference: plain NumPy, float32/float64; one GEMM input projection, per-step GEMM and
          vectorised gates, one-GEMM weight gradients; also the ``*_step_*`` ops (numpy only).
numba v1  per-step Python loop: NumPy's BLAS GEMM for ``h @ W_hh^T`` / ``dg @ W_hh`` plus
          one fused ``prange`` elementwise kernel per step (gates + state update + masking).
          Fastest measured here: NumPy's OpenBLAS beats the BLAS numba's ``np.dot`` reaches
          (SciPy's) by ~1.5x on these shapes, and the Python overhead is ~10 us per step.
numba v2  the whole time loop inside ONE compiled ``@njit`` call (no per-step Python): ``np.dot``
          (BLAS) per step inside njit plus the same fused ``prange`` elementwise kernels.
numba v3  as v2, but for N <= ``SMALL_N`` (8) each step is ONE parallel region: a
          hand-written GEMV/skinny GEMM over blocks of hidden units (``W_hh^T`` stored (Hd, G*Hd)
          so the inner loop is contiguous and vectorises without fastmath) fused with that
          block's gates; backward uses an axpy-form GEMV over column blocks of ``W_hh``.
          For N > SMALL_N it runs the v2 path. (Measured slower than BLAS GEMV on AVX2; kept.)
numba v4  batch split: sentences are independent, so for 2 <= N <= SPLIT_SMALL_MAX (4)
          and N >= SPLIT_MIN_N (32) the batch is cut into one slice per thread
          (``numba.get_num_threads()``) and every worker thread runs the WHOLE forward / BPTT
          time loop of its slice: single-threaded NumPy BLAS (one GEMV per sentence for slices
          of <= GEMV_ROWS sentences, else one GEMM) and GIL-free serial elementwise kernels.
          No per-step barrier, and the elementwise work is parallel without a second thread
          pool. Other N (1, 5..31) run v1's loop, except that at N=1 the backward GEMV is the
          dot form ``W_hh^T dg`` over a contiguous W_hh^T (0.20 ms vs 0.46 ms per step for
          OpenBLAS's ``dg @ W_hh``, LSTM, 2 threads), as are the split workers' per-sentence
          GEMVs; v4 transposes W_hh with a tiled numba kernel (8 ms vs NumPy's 22-24 ms for
          4000 x 1000). The weight-gradient GEMMs after the loop use all BLAS threads.
          Measured (speech shape T=100 I=160 Hd=1000, float32 fwd+bwd, 2-core AVX2 EPYC,
          quiet-ish machine, load 1.0-1.7; medians of interleaved rounds, v1 -> v4 ms, torch
          2.13 CPU same run): LSTM N=1 124 -> 93 (torch 173), N=2 470 -> 290, N=4 518 -> 416
          (447), N=64 2576 -> 2275 (2194); GRU N=4 359 -> 274, N=64 2112 -> 1734; RNN N=2
          88 -> 58, N=4 93 -> 92, N=64 606 -> 560. Under load (another
          process on one core, load ~3) v1's per-step 2-thread barriers collapse (LSTM N=16
          9.7 s, N=64 15.6 s) while a split loop keeps going (1.5 s, 4.0 s; torch 4.5 s, 5.8 s).
          N=5..31 is not split because there a split lost on the quiet machine: at N=8 each
          worker's 4-row single-threaded OpenBLAS GEMM runs 2.9 ms vs 1.5 ms for v1's 2-thread
          one (split LSTM N=8 845 vs 601 ms; N=16 1110 vs 1035 ms). The one-thread BLAS limit
          (threadpoolctl) is process-wide while the split loop runs: BLAS calls that other
          threads of the process make meanwhile run single-threaded too.
numba v5  v4 with the elementwise step kernels rewritten for float32 as short loops
          that LLVM vectorises (AVX2): exp / sigmoid / tanh from ``kernels/_vecmath.py``
          (polynomial exp, ~1 ulp; libm's scalar exp does not vectorise), numba's
          ``error_model="numpy"`` (the default zero-division test on every float division
          keeps a loop scalar), and one sentence row per loop nest with at most a few arrays per
          loop (LLVM gives up vectorising beyond ~8 runtime overlap checks: one fused LSTM loop
          stayed scalar). Per unit and step, 64 sentences, Hd=1000, 1 thread: LSTM forward
          42 -> 7.5 ns, backward 5.8 -> 1.1 ns; GRU 23 -> 10 / 3.1 -> 1.1 ns; tanh RNN 13 ->
          1.7 ns. float64 runs exactly as v4 (libm, float64 accuracy for the gradchecks).
          End to end (speech shape, fwd+bwd, medians of 5-9 interleaved rounds, v4 -> v5 ms):
          LSTM N=1 88 -> 79, N=4 270 -> 251, N=16 705 -> 572, N=64 2149 -> 2034; GRU N=16
          516 -> 448; tanh RNN N=16 179 -> 130. The gain is largest at N=5..31, where v1's
          loop runs the elementwise step on the calling thread between 2-thread GEMMs; in the
          split (N >= 32) it is ~5%, inside the machine's noise. Where the backward runs
          per-sentence GEMVs over a contiguous W_hh^T (N=1, split slices of <= 2 sentences),
          v5's forward leaves its W_hh^T in the cache and the backward reuses it when given
          the very same w_hh, unchanged (a fingerprint of 4096 values; 20 us): one 8-12 ms
          transpose per LSTM training step instead of two.
numba v6  float32 with N >= PACKED_MIN_N (2): no BLAS call inside the time loop.
          W_hh is packed ONCE per call into NR-column panels (``kernels/_packed_gemm.py``),
          and each step is ONE numba parallel region in which every thread owns a range of
          hidden units: it runs a 4xNR register-tiled micro-kernel (LLVM IR, 12 vector FMA
          accumulators) over its units' gate columns of ``h_(t-1) @ W_hh^T``, then those
          units' gates / state update while they are in cache, and writes its part of h_t
          straight into the packed A operand of the next step. The BPTT loop is the same with
          ``dg_t @ W_hh`` (k blocked by gate), dh's combine, and the next step's elementwise
          backward fused. Why: OpenBLAS re-packs the 16 MB W_hh on every per-step call, and
          its thread pool and numba's spin against each other when they alternate every step;
          here one pool does everything and each thread streams only its own panels. The
          micro-kernel reaches 75-80 GFLOP/s on one core and ~155 on two (64 x 1000 x 4000;
          OpenBLAS: 139-143 on two). Where numba targets AVX-512F the tile is 4 x 48 of
          16-lane vectors (same code, NR = 48): on the Zen 4 EPYC, fwd+bwd, interleaved,
          4 x 24 -> 4 x 48: speech LSTM N=64 1379 -> 1149 ms, N=16 313 -> 279, N=4 92 -> 89,
          GRU N=64 948 -> 813, LSTM T=6 N=32 Hd=512 21.4 -> 19.1, GRU T=25 N=3 Hd=128 1.03 ->
          0.87, char-LM LSTM Hd=64 (two panels, a third padding) 1.99 -> 1.93. float64 and
          N < 2 (GEMV-bound: v5's per-sentence GEMVs stream W_hh faster than a mostly padded
          4-row tile) run exactly as v5.
          The GEMMs outside the loop (input projection; dW_ih, dW_hh, dx after BPTT) run on
          numba's threads too, one single-threaded BLAS call each (``kernels/_pool_blas.py``):
          on OpenBLAS's own threads they waited for the OpenMP threads' spin after the loop
          (or after PyTorch's ops). Fwd+bwd vs the OpenBLAS-threaded GEMMs, interleaved, 2
          cores: LSTM T=6 N=32 Hd=512 37.8 -> 30.7 ms (PyTorch 26.7), ReLU RNN T=12 N=32
          Hd=440 12.9 -> 10.4 (12.2), GRU T=47 N=32 Hd=256 52.0 -> 44.5 (68.6), speech LSTM
          N=64 1846 -> 1766 (1570). dW_ih / dW_hh split dW's rows over the threads, each one
          strided sgemm accumulating in place (beta = 1) rather than per-thread partials
          summed afterwards: LSTM T=6 N=8 Hd=512 14.1 -> 7.4 ms, which moved the threshold
          ``POOL_GEMM_MIN_MACS`` from 2^27 down to 2^20.
numba v7  v6, and at N <= GEMV_MAX_N (1) in float32 the GEMV twins of v6's loops
          (``kernels/_stream_gemv.py``): one parallel region per step in which each thread
          owns a range of hidden units, dots its units' G gate rows of W_hh (as stored: no
          transpose, no packing) with h_(t-1), runs their gates, and writes their h_t into a
          double buffer; the BPTT loop computes its units' columns of dg_t @ W_hh (axpy over
          W_hh's rows into an L1 accumulator), then the combine and the next elementwise step.
          At N=1, v5/v6 transposed W_hh (4.9 ms for the speech LSTM's 16 MB) and ran an
          OpenBLAS sgemv per step from Python (0.14 ms each plus ~0.1 ms of Python, pointwise
          kernel and pool hand-over). Speech shape, N=1, fwd+bwd, 2-core AVX-512 EPYC, v6 ->
          v7: LSTM 61 -> 42 ms (forward 30 -> 16), GRU 44 -> 35, tanh RNN 20 -> 10. The loop
          is bound by W_hh streaming from L3 (forward GEMV 0.14 ms per step = 114 GB/s; a bare
          sum over W reaches 150-167 GB/s); the backward's axpy form runs 0.17-0.19 ms per
          step, the dot form over a transposed copy 0.12-0.13 ms, which does not pay for the
          transpose. From N=2 the packed micro-kernel wins (4x48 tile; packed vs the GEMV loops,
          LSTM N=2 61 vs 69 ms, N=3 72 vs 107; GRU N=2 44 vs 47, N=3 59 vs 80).
numba v8  (default) v7 with v6's packed loops split by sentences instead of hidden units where
          that pays (``_row_split``: W_hh's packed panels within about a core's L2, or up to
          8 MB with 2+ tiles of MR sentences per thread; the tiles evenly shared): each
          thread owns whole MR-sentence tiles, runs the micro-kernel over ALL of W_hh's
          panels for them, and since a sentence's recurrence needs no other sentence, runs
          all T steps in ONE parallel region: no barrier per step, no imbalance from a last
          panel that is mostly padding (Hd = 64: 48 + 16 units), and gate loops over whole
          rows. Fwd+bwd, 2-core AVX-512 EPYC, interleaved, v7 -> v8: LSTM T=38 N=16 Hd=64
          1.97 -> 1.47 ms, T=6 N=32 Hd=128 1.56 -> 1.32, T=25 N=8 Hd=128 1.73 -> 1.44, T=6
          N=32 Hd=256 8.1 -> 6.8; ReLU RNN T=12 N=32 Hd=440 8.6 -> 7.9. The speech shape's
          16 MB W_hh stays on the unit split (a tie there: each thread would stream all of it).
Jordan: ``jordan_sequence_forward`` / ``jordan_sequence_backward`` on numpy v1 and numba v1 (one
njit call for the loop, BLAS inside).

Numba implementation notes (measured on a 2-core AVX2 EPYC, see the issue's benchmark):
* the elementwise kernels dispatch ``cell`` to a literal constant so every inlined copy is
  specialised (a runtime cell test inside the unit loop cost 4x); tanh is computed with one exp
  (libm's scalar tanh is 4x slower) plus a Taylor branch near 0 (float64-accurate);
* each elementwise kernel has a serial twin, used below ``PARALLEL_MIN_UNITS`` N*G*Hd values:
  numba's OpenMP pool and OpenBLAS's pool both spin after a parallel region and fight for the
  cores when they alternate every step (3-10x slowdowns measured), so the GEMMs get the threads;
* numba's ``np.dot`` goes to SciPy's OpenBLAS, measured ~1.5x slower than NumPy's on the skinny
  per-step GEMMs, and hand-written GEMV loops reached ~1/3 of OpenBLAS's bandwidth: that is why
  v1 (NumPy's BLAS, ~10 us Python overhead per step) was the default before v4, which keeps
  v1's loop where it does not split the batch;
* a skinny GEMM hand-written in numba (axpy over 512-column blocks of W, the accumulator rows
  in L1) measured 2-5x slower than single-threaded OpenBLAS without fastmath, so v4 stays on
  NumPy's BLAS; OpenBLAS's small-M sgemm (M = 2..8 rows, K x N = 1000 x 4000) runs at only
  7-15 GFLOP/s single-threaded, while one sgemv per row streams W_hh at ~32 GB/s from L3.

Op names and signatures (``cell`` in rnn_tanh, rnn_relu, gru; lstm adds c0 / dc_n / c_n / dc0)
------------------------------------------------------------------------------------------
``{cell}_sequence_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False)``
    -> ``(y, h_n, cache)``
``lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False)``
    -> ``(y, h_n, c_n, cache)``
``{cell}_sequence_backward(dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, x, w_ih, w_hh, cache,
                           lengths=None, reverse=False, bptt_steps=None)`` -> ``(dx, dh0)``
``lstm_sequence_backward(dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh, cache,
                         lengths=None, reverse=False, bptt_steps=None)`` -> ``(dx, dh0, dc0)``

``{cell}_step_forward(x, h_prev, w_ih, w_hh, b_ih, b_hh)`` -> ``(h, saved)``
``lstm_step_forward(x, h_prev, c_prev, w_ih, w_hh, b_ih, b_hh)`` -> ``(h, c, saved)``
``{cell}_step_backward(dw_ih, dw_hh, db_ih, db_hh, dh, x, h_prev, w_ih, w_hh, saved)``
    -> ``(dx, dh_prev, dgx, dgh)``
``lstm_step_backward(dw_ih, dw_hh, db_ih, db_hh, dh, dc, x, h_prev, c_prev, w_ih, w_hh, saved)``
    -> ``(dx, dh_prev, dc_prev, dgx, dgh)``

``jordan_sequence_forward(x, y0, w_ih, w_hy, b_h, w_ho, b_o, lengths=None)`` -> ``(y, y_n, cache)``
``jordan_sequence_backward(dw_ih, dw_hy, db_h, dw_ho, db_o, dy, dy_n, x, w_ih, w_hy, w_ho, cache,
                           lengths=None, bptt_steps=None)`` -> ``(dx, dy0)``

Arguments
---------
x (T, N, I); h0, c0 (N, Hd) or None (zeros); w_ih (G*Hd, I); w_hh (G*Hd, Hd); b_ih, b_hh (G*Hd,)
or None (no bias).  y (T, N, Hd) is the output at every step (zero at padded steps); h_n / c_n the
state after each sentence's own last step.  ``cache`` is a dict of the saved activations:
``hprev`` (T, N, Hd) the state entering each step, ``gates`` (T, N, G*Hd) post-activation gates
(for rnn it is the post-activation h, the same array as y), lstm adds ``cprev`` and ``tanh_c``
(T, N, Hd), gru adds ``hn`` = W_hn h + b_hn (T, N, Hd): O(T*N*(G+3)*Hd) numbers in all.
dy (T, N, Hd), dh_n, dc_n (N, Hd) may be None (zero).  The step ops' ``saved`` dict holds the
per-step ``gates`` (and ``tanh_c`` / ``hn``); ``dgx``/``dgh`` are the pre-activation gradients
w.r.t. the input and the hidden projection (they differ only in GRU's n-gate slice, where
``dgh_n = dgx_n * r``).  numba v5's cache may also hold ``w_hhT`` (the forward's W_hh^T) and
v6's ``w_hh_col_panels`` (W_hh packed for the backward), each with ``<key>_source`` (the w_hh it
came from and a fingerprint; any other w_hh is packed afresh); every other version ignores them.

Parameter gradients (dw_*, db_*) ACCUMULATE (``+=``) into caller-owned arrays (None skips them);
activation gradients (dx, dh0, dc0) are returned, freshly written.

``lengths`` (N,) ints in [1, T] or None (all T): sentence n has valid steps ``t < lengths[n]``.
Padded steps do not change the state (h, c carried through), their outputs are zero, their dy is
ignored and no parameter gradient comes from them.  ``reverse=True`` runs the time loop from
t = T-1 down to 0 (the reverse direction of a bidirectional layer); with lengths each sentence
thus starts at its own last step, as PyTorch's packed sequences do.

``bptt_steps=k`` (None or 0: full BPTT) truncates backpropagation through time in chunks of k
steps counted per sentence in processing order (s = t forward, s = lengths[n]-1-t reverse): the
state entering step s is treated as a constant for s = k, 2k, 3k, ... (its gradient is dropped), so
the gradient arriving at step s (from dy[s], or dh_n at the last step) flows back through steps s,
s-1, ..., k*floor(s/k) only; the first chunk (s < k) reaches h0 / c0.  This is exactly
running the sequence in chunks of k steps and detaching the state between chunks.  dx and the
parameter gradients of every step are still computed (only the time recursion is cut).
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import registry
from ._checks import check_float_array, check_shape

try:  # numba is a hard dependency, but keep `import kernels.recurrent` alive without it
    import numba
    from numba import njit, prange
    from ._vecmath import ONE32, VEC_JIT, ZERO32, sigmoid32, tanh32
    from ._packed_gemm import (MR, NR, mk_tile, mk_tile_acc, mk_tile_acc_prefetch,
                               mk_tile_prefetch, pack_col_panels, pack_row_panels)
    from ._pool_blas import SingleThreadedBLAS, pool_matmul, pool_matmul_tn_accumulate
    from ._stream_gemv import axpy_cols, dot_rows
    _HAVE_NUMBA = True
except Exception:  # pragma: no cover
    _HAVE_NUMBA = False

UNIT_BLOCK = 256     # hidden units per parallel work item of the elementwise kernels
CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
_CODE = {"rnn_tanh": 0, "rnn_relu": 1, "lstm": 2, "gru": 3}
SMALL_N = 8          # numba v3 uses its hand-written fused GEMV path for N <= SMALL_N


# =============================================================================================
# argument checks
# =============================================================================================
def _check_lengths(lengths, T, N):
    """None -> None; else an int64 (N,) array with 1 <= lengths <= T (errors name `lengths`)."""
    if lengths is None:
        return None
    if type(lengths).__module__.startswith("cupy"):
        lengths = lengths.get()          # a host copy: lengths steer host-side loops
    arr = np.asarray(lengths)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or (np.issubdtype(arr.dtype, np.floating)
                                     and np.all(arr == np.round(arr)))):
        raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"lengths: expected a 1-d sequence of N={N} ints, got shape {arr.shape}")
    if arr.shape[0] != N:
        raise ValueError(f"lengths: expected {N} lengths (one per sentence, N={N}), "
                         f"got {arr.shape[0]}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 1 or arr.max() > T):
        raise ValueError(f"lengths: expected every length in [1, T={T}], got min {arr.min()}, "
                         f"max {arr.max()}")
    return np.ascontiguousarray(arr)


def _check_bptt(bptt_steps):
    if bptt_steps is None:
        return 0
    if isinstance(bptt_steps, bool) or not isinstance(bptt_steps, (int, np.integer)):
        raise TypeError(f"bptt_steps: expected None or a positive int, got {bptt_steps!r}")
    if bptt_steps < 0:
        raise ValueError(f"bptt_steps: expected None, 0 or a positive int, got {bptt_steps}")
    return int(bptt_steps)


def _opt_array(name, a, shape, dtype, xp=None):
    if a is None:
        return None
    a = check_float_array(name, a, len(shape), dtype=dtype, xp=xp)
    check_shape(name, a, shape)
    return a


def _check_weights(cell, x, w_ih, w_hh, b_ih, b_hh, xp=None):
    G = GATES[cell]
    w_hh = check_float_array("w_hh", w_hh, 2, dtype=x.dtype, xp=xp)
    GHd, Hd = w_hh.shape
    if Hd < 1 or GHd != G * Hd:
        raise ValueError(f"w_hh: expected shape ({G}*Hd, Hd) for cell {cell!r} "
                         f"(gates stacked on axis 0), got {tuple(w_hh.shape)}")
    w_ih = check_float_array("w_ih", w_ih, 2, dtype=x.dtype, xp=xp)
    check_shape("w_ih", w_ih, (G * Hd, x.shape[-1]))
    b_ih = _opt_array("b_ih", b_ih, (G * Hd,), x.dtype, xp)
    b_hh = _opt_array("b_hh", b_hh, (G * Hd,), x.dtype, xp)
    return w_ih, w_hh, b_ih, b_hh, G, Hd


def _check_x(x, xp=None):
    x = check_float_array("x", x, 3, xp=xp)
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x: expected shape (T, N, I) with T >= 1 and N >= 1, got {x.shape}")
    return x


def _check_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, xp=None):
    """Validate a sequence forward's arguments; ``xp`` (default NumPy) is the array module the
    arrays must belong to (CuPy for the "cuda" launchers). ``lengths`` is always host data."""
    x = _check_x(x, xp)
    T, N, _ = x.shape
    w_ih, w_hh, b_ih, b_hh, G, Hd = _check_weights(cell, x, w_ih, w_hh, b_ih, b_hh, xp)
    h0 = _opt_array("h0", h0, (N, Hd), x.dtype, xp)
    c0 = _opt_array("c0", c0, (N, Hd), x.dtype, xp)
    lengths = _check_lengths(lengths, T, N)
    return x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, T, N, G, Hd


_CACHE_KEYS = {"rnn_tanh": ("hprev", "gates"), "rnn_relu": ("hprev", "gates"),
               "lstm": ("hprev", "gates", "cprev", "tanh_c"), "gru": ("hprev", "gates", "hn")}


def _check_backward(cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh, cache,
                    lengths, bptt_steps, xp=None):
    """Validate a sequence backward's arguments; ``xp`` as in :func:`_check_forward`."""
    x = _check_x(x, xp)
    T, N, _ = x.shape
    w_ih, w_hh, _, _, G, Hd = _check_weights(cell, x, w_ih, w_hh, None, None, xp)
    if not isinstance(cache, dict) or any(k not in cache for k in _CACHE_KEYS[cell]):
        raise ValueError(f"cache: expected the dict returned by {cell}_sequence_forward with keys "
                         f"{_CACHE_KEYS[cell]}")
    cshape = {"hprev": (T, N, Hd), "gates": (T, N, (G if cell in ("lstm", "gru") else 1) * Hd),
              "cprev": (T, N, Hd), "tanh_c": (T, N, Hd), "hn": (T, N, Hd)}
    cache = {k: _opt_array(f"cache[{k!r}]", cache[k], cshape[k], x.dtype, xp)
             for k in _CACHE_KEYS[cell]}
    dy = _opt_array("dy", dy, (T, N, Hd), x.dtype, xp)
    dh_n = _opt_array("dh_n", dh_n, (N, Hd), x.dtype, xp)
    dc_n = _opt_array("dc_n", dc_n, (N, Hd), x.dtype, xp)
    xpm = np if xp is None else xp
    for name, g, shape in (("dw_ih", dw_ih, w_ih.shape), ("dw_hh", dw_hh, w_hh.shape),
                           ("db_ih", db_ih, (G * Hd,)), ("db_hh", db_hh, (G * Hd,))):
        if g is not None:
            if xp is not None and not isinstance(g, xpm.ndarray):
                check_float_array(name, g, xp=xp)     # names a host/device mix-up
            if not isinstance(g, xpm.ndarray) or not g.flags.c_contiguous:
                kind = "NumPy" if xpm is np else xpm.__name__
                raise TypeError(f"{name}: expected a C-contiguous {kind} array (accumulated in "
                                "place) or None")
            check_float_array(name, g, len(shape), dtype=x.dtype, xp=xp)
            check_shape(name, g, shape)
    lengths = _check_lengths(lengths, T, N)
    return (x, w_ih, w_hh, cache, dy, dh_n, dc_n, lengths, _check_bptt(bptt_steps), T, N, G, Hd)


def _param_grads(dw_ih, dw_hh, db_ih, db_hh, dgx, dgh, x, hprev, w_ih):
    """The parallel part of BPTT: ONE GEMM each over all T*N rows; returns dx (T, N, I)."""
    T, N, I = x.shape
    GHd = dgx.shape[-1]
    Hd = hprev.shape[-1]
    DGX = dgx.reshape(T * N, GHd)
    DGH = dgh.reshape(T * N, GHd)
    if dw_ih is not None:
        dw_ih += DGX.T @ x.reshape(T * N, I)
    if dw_hh is not None:
        dw_hh += DGH.T @ hprev.reshape(T * N, Hd)
    if db_ih is not None:
        db_ih += DGX.sum(axis=0)
    if db_hh is not None:
        db_hh += DGH.sum(axis=0)
    return (DGX @ w_ih).reshape(T, N, I)


def _param_grads_pool(dw_ih, dw_hh, db_ih, db_hh, dgx, dgh, x, hprev, w_ih):
    """:func:`_param_grads` with its GEMMs on numba's threads (:mod:`kernels._pool_blas`:
    OpenBLAS's own threads would wait for the spinning OpenMP threads of the BPTT loop that
    just ended); NumPy arrays only."""
    T, N, I = x.shape
    GHd = dgx.shape[-1]
    Hd = hprev.shape[-1]
    DGX = dgx.reshape(T * N, GHd)
    DGH = dgh.reshape(T * N, GHd)
    with SingleThreadedBLAS():                    # one BLAS limit for the three GEMMs
        if dw_ih is not None:
            pool_matmul_tn_accumulate(dw_ih, DGX, x.reshape(T * N, I))
        if dw_hh is not None:
            pool_matmul_tn_accumulate(dw_hh, DGH, hprev.reshape(T * N, Hd))
        dx = pool_matmul(DGX, w_ih).reshape(T, N, I)
    if db_ih is not None:
        db_ih += DGX.sum(axis=0)
    if db_hh is not None:
        db_hh += DGH.sum(axis=0)
    return dx


def _input_projection_pool(x, w_ih, b_ih):
    """:func:`_input_projection` as one GEMM split over numba's threads (see
    :func:`_param_grads_pool`); NumPy arrays only."""
    T, N, I = x.shape
    xg = pool_matmul(x.reshape(T * N, I), w_ih.T).reshape(T, N, w_ih.shape[0])
    if b_ih is not None:
        xg += b_ih
    return xg


def _input_projection(x, w_ih, b_ih):
    """ONE GEMM over all T*N rows: (T, N, I) @ (I, G*Hd) (+ b_ih)."""
    T, N, I = x.shape
    xg = (x.reshape(T * N, I) @ w_ih.T).reshape(T, N, w_ih.shape[0])
    if b_ih is not None:
        xg += b_ih
    return xg


# =============================================================================================
# NumPy reference
# =============================================================================================
def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _ref_cell_forward(cell, xg, hg, h_prev, c_prev):
    """Pointwise part of one step. xg = x W_ih^T + b_ih, hg = h_prev W_hh^T + b_hh (N, G*Hd).
    Returns (h, c, saved)."""
    Hd = h_prev.shape[1]
    if cell == "rnn_tanh":
        h = np.tanh(xg + hg)
        return h, None, {"gates": h}
    if cell == "rnn_relu":
        h = np.maximum(xg + hg, 0)
        return h, None, {"gates": h}
    if cell == "lstm":
        a = xg + hg
        i = _sigmoid(a[:, :Hd])
        f = _sigmoid(a[:, Hd:2 * Hd])
        g = np.tanh(a[:, 2 * Hd:3 * Hd])
        o = _sigmoid(a[:, 3 * Hd:])
        c = f * c_prev + i * g
        tc = np.tanh(c)
        return o * tc, c, {"gates": np.concatenate([i, f, g, o], axis=1), "tanh_c": tc}
    # gru
    r = _sigmoid(xg[:, :Hd] + hg[:, :Hd])
    z = _sigmoid(xg[:, Hd:2 * Hd] + hg[:, Hd:2 * Hd])
    hn = hg[:, 2 * Hd:]
    n = np.tanh(xg[:, 2 * Hd:] + r * hn)
    h = (1 - z) * n + z * h_prev
    return h, None, {"gates": np.concatenate([r, z, n], axis=1), "hn": hn}


def _ref_cell_backward(cell, dh, dc, h_prev, c_prev, saved):
    """Pointwise backward of one step: from dh_t (and dc_t) to the pre-activation gradients.
    Returns (dgx, dgh, dh_direct, dc_prev); dh_prev = dh_direct + dgh @ W_hh."""
    Hd = h_prev.shape[1]
    gates = saved["gates"]
    if cell == "rnn_tanh":
        da = dh * (1 - gates * gates)
        return da, da, 0, None
    if cell == "rnn_relu":
        da = dh * (gates > 0)
        return da, da, 0, None
    if cell == "lstm":
        i, f, g, o = (gates[:, q * Hd:(q + 1) * Hd] for q in range(4))
        tc = saved["tanh_c"]
        dct = dc + dh * o * (1 - tc * tc)
        da = np.concatenate([dct * g * i * (1 - i), dct * c_prev * f * (1 - f),
                             dct * i * (1 - g * g), dh * tc * o * (1 - o)], axis=1)
        return da, da, 0, dct * f
    # gru
    r, z, n = (gates[:, q * Hd:(q + 1) * Hd] for q in range(3))
    dn = dh * (1 - z)
    dz = dh * (h_prev - n)
    dan = dn * (1 - n * n)
    dar = dan * saved["hn"] * r * (1 - r)
    daz = dz * z * (1 - z)
    dgx = np.concatenate([dar, daz, dan], axis=1)
    dgh = np.concatenate([dar, daz, dan * r], axis=1)
    return dgx, dgh, dh * z, None


def _ref_step_forward(cell, x, h_prev, c_prev, w_ih, w_hh, b_ih, b_hh):
    x = check_float_array("x", x, 2)
    w_ih, w_hh, b_ih, b_hh, G, Hd = _check_weights(cell, x, w_ih, w_hh, b_ih, b_hh)
    N = x.shape[0]
    h_prev = _opt_array("h_prev", h_prev, (N, Hd), x.dtype)
    if h_prev is None:
        raise TypeError("h_prev: expected an (N, Hd) array, got None")
    if cell == "lstm":
        c_prev = _opt_array("c_prev", c_prev, (N, Hd), x.dtype)
        if c_prev is None:
            raise TypeError("c_prev: expected an (N, Hd) array, got None")
    xg = x @ w_ih.T
    if b_ih is not None:
        xg = xg + b_ih
    hg = h_prev @ w_hh.T
    if b_hh is not None:
        hg = hg + b_hh
    return _ref_cell_forward(cell, xg, hg, h_prev, c_prev)


def _ref_step_backward(cell, dw_ih, dw_hh, db_ih, db_hh, dh, dc, x, h_prev, c_prev, w_ih, w_hh,
                       saved):
    x = check_float_array("x", x, 2)
    w_ih, w_hh, _, _, G, Hd = _check_weights(cell, x, w_ih, w_hh, None, None)
    N = x.shape[0]
    dh = _opt_array("dh", dh, (N, Hd), x.dtype)
    h_prev = _opt_array("h_prev", h_prev, (N, Hd), x.dtype)
    if cell == "lstm":
        dc = np.zeros_like(dh) if dc is None else _opt_array("dc", dc, (N, Hd), x.dtype)
    dgx, dgh, dh_direct, dc_prev = _ref_cell_backward(cell, dh, dc, h_prev, c_prev, saved)
    if dw_ih is not None:          # per-step outer products (the sequence kernels do ONE GEMM)
        dw_ih += dgx.T @ x
    if dw_hh is not None:
        dw_hh += dgh.T @ h_prev
    if db_ih is not None:
        db_ih += dgx.sum(axis=0)
    if db_hh is not None:
        db_hh += dgh.sum(axis=0)
    dx = dgx @ w_ih
    dh_prev = dh_direct + dgh @ w_hh
    if cell == "lstm":
        return dx, dh_prev, dc_prev, dgx, dgh
    return dx, dh_prev, dgx, dgh


def _alloc_cache(cell, T, N, Hd, dtype):
    G = GATES[cell]
    cache = {"hprev": np.zeros((T, N, Hd), dtype),
             "gates": np.zeros((T, N, G * Hd), dtype)}
    if cell == "lstm":
        cache["cprev"] = np.zeros((T, N, Hd), dtype)
        cache["tanh_c"] = np.zeros((T, N, Hd), dtype)
    elif cell == "gru":
        cache["hn"] = np.zeros((T, N, Hd), dtype)
    return cache


def _ref_sequence_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, T, N, G, Hd = _check_forward(
        cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths)
    dt = x.dtype
    xg = _input_projection(x, w_ih, b_ih)                 # ONE GEMM for all T steps
    h = np.zeros((N, Hd), dt) if h0 is None else h0.copy()
    c = (np.zeros((N, Hd), dt) if c0 is None else c0.copy()) if cell == "lstm" else None
    cache = _alloc_cache(cell, T, N, Hd, dt)
    y = np.zeros((T, N, Hd), dt)
    if cell in ("rnn_tanh", "rnn_relu"):
        cache["gates"] = y                                # post-activation h is the output
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        valid = None if lengths is None else (t < lengths)[:, None]
        cache["hprev"][t] = h
        hg = h @ w_hh.T
        if b_hh is not None:
            hg += b_hh
        if cell == "lstm":
            cache["cprev"][t] = c
        h_new, c_new, saved = _ref_cell_forward(cell, xg[t], hg, h, c)
        if valid is not None:                             # padded steps carry the state
            h_new = np.where(valid, h_new, 0)
            saved = {k: np.where(valid, v, 0) for k, v in saved.items()}
        y[t] = h_new
        if cell != "rnn_tanh" and cell != "rnn_relu":
            cache["gates"][t] = saved["gates"]
        for k in ("tanh_c", "hn"):
            if k in saved:
                cache[k][t] = saved[k]
        h = h_new if valid is None else np.where(valid, h_new, h)
        if cell == "lstm":
            c = c_new if valid is None else np.where(valid, c_new, c)
    if cell == "lstm":
        return y, h, c, cache
    return y, h, cache


def _ref_sequence_backward(cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh,
                           cache, lengths, reverse, bptt_steps):
    (x, w_ih, w_hh, cache, dy, dh_n, dc_n, lengths, k, T, N, G, Hd) = _check_backward(
        cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh, cache, lengths,
        bptt_steps)
    dt = x.dtype
    dh = np.zeros((N, Hd), dt) if dh_n is None else dh_n.copy()
    dc = (np.zeros((N, Hd), dt) if dc_n is None else dc_n.copy()) if cell == "lstm" else None
    dgx = np.zeros((T, N, G * Hd), dt)
    dgh = np.zeros((T, N, G * Hd), dt) if cell == "gru" else dgx
    lens = np.full(N, T, np.int64) if lengths is None else lengths
    for t in (range(T) if reverse else range(T - 1, -1, -1)):   # the sequential dh recursion
        valid = (t < lens)[:, None]
        dht = dh if dy is None else dh + np.where(valid, dy[t], 0)
        saved = {kk: cache[kk][t] for kk in ("gates", "tanh_c", "hn") if kk in cache}
        cprev = cache["cprev"][t] if cell == "lstm" else None
        gx, gh, direct, dc_prev = _ref_cell_backward(cell, dht, dc, cache["hprev"][t], cprev,
                                                     saved)
        gx = np.where(valid, gx, 0)                       # no gradient from padded steps
        dgx[t] = gx
        if cell == "gru":
            dgh[t] = np.where(valid, gh, 0)
        dh_prev = direct + dgh[t] @ w_hh
        dh = np.where(valid, dh_prev, dh)                 # padded steps pass dh through
        if cell == "lstm":
            dc = np.where(valid, dc_prev, dc)
        if k:                                             # truncated BPTT: detach every k steps
            s = (lens - 1 - t) if reverse else np.full(N, t)
            cut = (valid[:, 0] & (s > 0) & (s % k == 0))[:, None]
            dh = np.where(cut, 0, dh)
            if cell == "lstm":
                dc = np.where(cut, 0, dc)
    dx = _param_grads(dw_ih, dw_hh, db_ih, db_hh, dgx, dgh, x, cache["hprev"], w_ih)
    if cell == "lstm":
        return dx, dh.astype(dt, copy=False), dc.astype(dt, copy=False)
    return dx, dh.astype(dt, copy=False)


# =============================================================================================
# Numba kernels (generic over the cell: code 0 tanh, 1 relu, 2 lstm, 3 gru)
# =============================================================================================
if _HAVE_NUMBA:
    _jit = dict(cache=True, fastmath=False)

    @njit(inline="always", **_jit)
    def _sig(a):
        return 1.0 / (1.0 + np.exp(-a))

    @njit(inline="always", **_jit)
    def _tanh(a):
        """tanh through one exp (libm's scalar tanh is ~4x slower than exp here); an odd
        Taylor polynomial near 0 keeps full float64 relative accuracy (~1e-15)."""
        ax = abs(a)
        if ax < 0.0625:
            x2 = a * a
            return a * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (
                -17.0 / 315.0 + x2 * (62.0 / 2835.0)))))
        e = np.exp(-2.0 * ax)
        r = (1.0 - e) / (1.0 + e)
        return r if a >= 0 else -r

    @njit(inline="always", **_jit)
    def _fwd_unit(cell, t, n, u, Hd, xg, p0, p1, p2, p3, hin, hout, c, y, gates, aux1, aux2):
        """Gates + state update of hidden unit u of sentence n at step t. p0..p3 are the hidden
        pre-activations (h W_hh^T + b_hh) of the unit's gates."""
        if cell == 0 or cell == 1:
            a = xg[t, n, u] + p0
            if cell == 0:
                hv = _tanh(a)
            else:
                hv = a if a > 0 else a * 0
            gates[t, n, u] = hv
        elif cell == 2:
            i = _sig(xg[t, n, u] + p0)
            f = _sig(xg[t, n, Hd + u] + p1)
            g = _tanh(xg[t, n, 2 * Hd + u] + p2)
            o = _sig(xg[t, n, 3 * Hd + u] + p3)
            cn = f * c[n, u] + i * g
            tc = _tanh(cn)
            hv = o * tc
            gates[t, n, u] = i
            gates[t, n, Hd + u] = f
            gates[t, n, 2 * Hd + u] = g
            gates[t, n, 3 * Hd + u] = o
            aux2[t, n, u] = tc
            c[n, u] = cn
        else:
            r = _sig(xg[t, n, u] + p0)
            z = _sig(xg[t, n, Hd + u] + p1)
            nn = _tanh(xg[t, n, 2 * Hd + u] + r * p2)
            hv = (1.0 - z) * nn + z * hin[n, u]
            gates[t, n, u] = r
            gates[t, n, Hd + u] = z
            gates[t, n, 2 * Hd + u] = nn
            aux1[t, n, u] = p2
        hout[n, u] = hv
        y[t, n, u] = hv

    @njit(inline="always", **_jit)
    def _fwd_range(cell, n, u0, u1, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths):
        """Gates + state update of units u0..u1-1 of sentence n at step t (hg = h W_hh^T)."""
        Hd = hin.shape[1]
        if t < lengths[n]:
            for u in range(u0, u1):
                p1 = p2 = p3 = hg[n, u] * 0
                p0 = hg[n, u] + b_hh[u]
                if cell >= 2:
                    p1 = hg[n, Hd + u] + b_hh[Hd + u]
                    p2 = hg[n, 2 * Hd + u] + b_hh[2 * Hd + u]
                if cell == 2:
                    p3 = hg[n, 3 * Hd + u] + b_hh[3 * Hd + u]
                _fwd_unit(cell, t, n, u, Hd, xg, p0, p1, p2, p3, hin, hout, c, y, gates,
                          aux1, aux2)
        else:
            for u in range(u0, u1):
                hout[n, u] = hin[n, u]

    @njit(inline="always", **_jit)
    def _fwd_par_body(cell, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths):
        N, Hd = hin.shape
        nb = (Hd + UNIT_BLOCK - 1) // UNIT_BLOCK
        for blk in prange(N * nb):
            n = blk // nb
            u0 = (blk - n * nb) * UNIT_BLOCK
            _fwd_range(cell, n, u0, min(u0 + UNIT_BLOCK, Hd), t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths)

    @njit(inline="always", **_jit)
    def _fwd_ser_body(cell, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths):
        N, Hd = hin.shape
        for n in range(N):
            _fwd_range(cell, n, 0, Hd, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths)

    # `cell` is dispatched to a literal constant so that each inlined copy is specialised
    # (a runtime cell inside the unit loop made the loop ~4x slower)
    @njit(parallel=True, **_jit)
    def _fwd_pointwise(cell, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths):
        """Fused elementwise part of one forward step, parallel over (sentence, unit block)."""
        if cell == 0:
            _fwd_par_body(0, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths)
        elif cell == 1:
            _fwd_par_body(1, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths)
        elif cell == 2:
            _fwd_par_body(2, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths)
        else:
            _fwd_par_body(3, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths)

    @njit(nogil=True, **_jit)   # nogil: v4 runs it on worker threads
    def _fwd_pointwise_serial(cell, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths):
        """Serial twin of _fwd_pointwise (small steps: no thread wake-up per step)."""
        if cell == 0:
            _fwd_ser_body(0, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths)
        elif cell == 1:
            _fwd_ser_body(1, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths)
        elif cell == 2:
            _fwd_ser_body(2, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths)
        else:
            _fwd_ser_body(3, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths)

    @njit(parallel=True, **_jit)
    def _fwd_fused_small(cell, t, xg, wT, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths,
                         B):
        """One forward step as ONE parallel region for small N: each block of B hidden units
        computes its G gate columns of h @ W_hh^T (axpy form over wT (Hd, G*Hd): contiguous,
        vectorisable inner loop), then that block's gates and state update."""
        N, Hd = hin.shape
        G = wT.shape[1] // Hd
        nblk = (Hd + B - 1) // B
        for blk in prange(nblk):
            u0 = blk * B
            w = min(B, Hd - u0)
            acc = np.zeros((N, G, B), dtype=hin.dtype)
            for q in range(G):
                for n in range(N):
                    for uu in range(w):
                        acc[n, q, uu] = b_hh[q * Hd + u0 + uu]
            for k in range(Hd):
                for n in range(N):
                    hk = hin[n, k]
                    if t < lengths[n]:
                        for q in range(G):
                            base = q * Hd + u0
                            for uu in range(w):
                                acc[n, q, uu] += hk * wT[k, base + uu]
            for n in range(N):
                if t < lengths[n]:
                    for uu in range(w):
                        p1 = p2 = p3 = acc[n, 0, uu] * 0
                        if G > 1:
                            p1 = acc[n, 1, uu]
                            p2 = acc[n, 2, uu]
                        if G > 3:
                            p3 = acc[n, 3, uu]
                        _fwd_unit(cell, t, n, u0 + uu, Hd, xg, acc[n, 0, uu], p1, p2, p3, hin,
                                  hout, c, y, gates, aux1, aux2)
                else:
                    for uu in range(w):
                        hout[n, u0 + uu] = hin[n, u0 + uu]

    @njit(**_jit)
    def _seq_fwd_v2(cell, xg, wT, b_hh, h, c, lengths, reverse, y, hprev, gates, aux1, aux2,
                    par):
        """The whole forward time loop in one compiled call; BLAS GEMM per step."""
        T, N, GHd = xg.shape
        hg = np.empty((N, GHd), dtype=h.dtype)
        for s in range(T):
            t = T - 1 - s if reverse else s
            hprev[t] = h
            if cell == 2:
                aux1[t] = c
            np.dot(h, wT, hg)
            if par:
                _fwd_pointwise(cell, t, xg, hg, b_hh, h, h, c, y, gates, aux1, aux2, lengths)
            else:
                _fwd_pointwise_serial(cell, t, xg, hg, b_hh, h, h, c, y, gates, aux1, aux2,
                                      lengths)
        return h, c

    @njit(**_jit)
    def _seq_fwd_v3(cell, xg, wT, b_hh, h, c, lengths, reverse, y, hprev, gates, aux1, aux2, B):
        """The whole forward time loop in one compiled call; one fused region per step."""
        T, N, GHd = xg.shape
        h2 = np.empty_like(h)
        for s in range(T):
            t = T - 1 - s if reverse else s
            hprev[t] = h
            if cell == 2:
                aux1[t] = c
            _fwd_fused_small(cell, t, xg, wT, b_hh, h, h2, c, y, gates, aux1, aux2, lengths, B)
            h, h2 = h2, h
        return h, c

    # ---- numba v5: the forward elementwise step in vectorised float32 (kernels/_vecmath.py) --
    # Rows of one sentence go through short loops of a few arrays each: LLVM vectorises a loop
    # only after runtime checks that its arrays do not overlap, and gives up beyond ~8 checks
    # (one fused loop over all LSTM arrays stayed scalar for N > 1).
    # The row helpers take a unit range [u0, u1) and read the hidden projection hr with gate
    # stride hs: gate g of unit u is hr[g*hs + u - u0]. v5 passes a whole (G*Hd,) row of
    # h @ W_hh^T (u0=0, hs=Hd); v6 passes one thread's panel of it (hs = units per panel).
    # Every loop runs k from 0 over slices: numba wraps negative indices, and with a runtime
    # offset (u0 + k) LLVM cannot rule that out, so the select it adds kept the loop scalar
    # (26-58 ns per LSTM unit instead of 7-8).
    @njit(inline="always", **VEC_JIT)
    def _sigmoid_seg32(x, h, b, out):
        """out = sigmoid(x + h + b), equal-length slices."""
        for k in range(out.shape[0]):
            out[k] = sigmoid32(x[k] + h[k] + b[k])

    @njit(inline="always", **VEC_JIT)
    def _tanh_seg32(x, h, b, out):
        for k in range(out.shape[0]):
            out[k] = tanh32(x[k] + h[k] + b[k])

    @njit(inline="always", **VEC_JIT)
    def _gate32(fn, g, Hd, u0, u1, xr, hr, hs, b, out):
        """Gate g of units [u0, u1): out[g*Hd + u] = fn(x + h @ W_hh^T + b_hh) (fn 0: sigmoid,
        1: tanh)."""
        j0, j1 = g * Hd + u0, g * Hd + u1
        h = hr[g * hs:g * hs + u1 - u0]
        if fn == 0:
            _sigmoid_seg32(xr[j0:j1], h, b[j0:j1], out[j0:j1])
        else:
            _tanh_seg32(xr[j0:j1], h, b[j0:j1], out[j0:j1])

    @njit(inline="always", **VEC_JIT)
    def _rnn_row32(relu, Hd, u0, u1, xr, hr, b, yr):
        if relu:
            x, h, bb, y = xr[u0:u1], hr[:u1 - u0], b[u0:u1], yr[u0:u1]
            for k in range(y.shape[0]):
                a = x[k] + h[k] + bb[k]
                y[k] = a if a > 0 else ZERO32 * a
        else:
            _gate32(1, 0, Hd, u0, u1, xr, hr, Hd, b, yr)

    @njit(inline="always", **VEC_JIT)
    def _lstm_row32(Hd, u0, u1, xr, hr, hs, b, gr, cr, tcr, yr):
        _gate32(0, 0, Hd, u0, u1, xr, hr, hs, b, gr)          # i
        _gate32(0, 1, Hd, u0, u1, xr, hr, hs, b, gr)          # f
        _gate32(1, 2, Hd, u0, u1, xr, hr, hs, b, gr)          # g
        _gate32(0, 3, Hd, u0, u1, xr, hr, hs, b, gr)          # o
        gi, gf = gr[u0:u1], gr[Hd + u0:Hd + u1]
        gg, go = gr[2 * Hd + u0:2 * Hd + u1], gr[3 * Hd + u0:3 * Hd + u1]
        cs, tcs, ys = cr[u0:u1], tcr[u0:u1], yr[u0:u1]
        for k in range(cs.shape[0]):
            cn = gf[k] * cs[k] + gi[k] * gg[k]
            tc = tanh32(cn)
            cs[k] = cn
            tcs[k] = tc
            ys[k] = go[k] * tc

    @njit(inline="always", **VEC_JIT)
    def _gru_row32(Hd, u0, u1, xr, hr, hs, b, hin, gr, hnr, yr):
        _gate32(0, 0, Hd, u0, u1, xr, hr, hs, b, gr)          # r
        _gate32(0, 1, Hd, u0, u1, xr, hr, hs, b, gr)          # z
        n = u1 - u0
        hn, hh, bn = hnr[u0:u1], hr[2 * hs:2 * hs + n], b[2 * Hd + u0:2 * Hd + u1]
        for k in range(n):
            hn[k] = hh[k] + bn[k]                             # W_hn h + b_hn, saved
        gn, gr_, xn = gr[2 * Hd + u0:2 * Hd + u1], gr[u0:u1], xr[2 * Hd + u0:2 * Hd + u1]
        for k in range(n):                                    # n
            gn[k] = tanh32(xn[k] + gr_[k] * hn[k])
        gz, hi, ys = gr[Hd + u0:Hd + u1], hin[u0:u1], yr[u0:u1]
        for k in range(n):
            z = gz[k]
            ys[k] = (ONE32 - z) * gn[k] + z * hi[k]

    @njit(inline="always", **VEC_JIT)
    def _cell_row32(cell, t, n, u0, u1, xg, hr, hs, b_hh, h, c, y, gates, aux1, aux2):
        """The float32 gates and state update of sentence n, units [u0, u1), valid step t:
        writes y[t, n], the saved gates / tanh(c) / W_hn h + b_hn, and c (not h)."""
        Hd = h.shape[1]
        yr = y[t, n]
        if cell <= 1:
            _rnn_row32(cell == 1, Hd, u0, u1, xg[t, n], hr, b_hh, yr)
        elif cell == 2:
            _lstm_row32(Hd, u0, u1, xg[t, n], hr, hs, b_hh, gates[t, n], c[n], aux2[t, n], yr)
        else:
            _gru_row32(Hd, u0, u1, xg[t, n], hr, hs, b_hh, h[n], gates[t, n], aux1[t, n], yr)

    @njit(nogil=True, **VEC_JIT)   # nogil: v5 runs it on worker threads
    def _fwd_pointwise32(cell, t, xg, hg, b_hh, hin, hout, c, y, gates, aux1, aux2, lengths):
        """float32 twin of _fwd_pointwise_serial (numba v5), one sentence row at a time:
        writes y[t], the saved gates / tanh(c) / W_hn h + b_hn, and the new h (and c)."""
        N, Hd = hin.shape
        for n in range(N):
            if t < lengths[n]:
                _cell_row32(cell, t, n, 0, Hd, xg, hg[n], Hd, b_hh, hin, c, y, gates, aux1,
                            aux2)
                yr = y[t, n]
                for u in range(Hd):
                    hout[n, u] = yr[u]
            else:
                for u in range(Hd):
                    hout[n, u] = hin[n, u]

    # ---- numba v6: packed-W_hh micro-kernel GEMM fused with the gates (kernels/_packed_gemm.py)
    @njit(inline="always", **VEC_JIT)
    def _fwd_step_v6(cell, t, a_cur, a_nxt, pg2, bp, pa, pb, qa, qb, chunk, xg, b_hh, h, c,
                     lengths, y, hprev, gates, aux1, aux2):
        """One thread's share of forward step t: the hidden-unit panels [pa, pb) (NR units
        each) of the sentence tiles [qa, qb) (MR sentences each), ``chunk`` panels at a time:
        the chunk's G gate panels of h_(t-1) @ W_hh^T with the micro-kernel (A = h_(t-1)
        packed in MR-row panels, B = ``bp`` from ``pack_row_panels``), then those units'
        gates and state update while they are in cache, and the new h of those units into
        the other A buffer. (The gates run over chunk*NR units at once: LLVM's vector loop
        needs >= 32 iterations, a 24-unit loop ran scalar at ~70 ns per unit.)"""
        N, Hd = h.shape
        G = xg.shape[2] // Hd
        P = (Hd + NR - 1) // NR
        hs = chunk * NR                                   # gate stride in the panel buffer
        ldc = G * hs
        pg = pg2.reshape(-1)
        for pc in range(pa, pb, chunk):
            for p in range(pc, min(pc + chunk, pb)):
                for g in range(G):
                    b0 = (g * P + p) * Hd * NR
                    c0 = g * hs + (p - pc) * NR
                    mk_tile_prefetch(a_cur, qa * Hd * MR, bp, b0, pg, qa * MR * ldc + c0, ldc,
                                     Hd)
                    for q in range(qa + 1, qb):
                        mk_tile(a_cur, q * Hd * MR, bp, b0, pg, q * MR * ldc + c0, ldc, Hd)
            u0 = pc * NR
            u1 = min(min(pc + chunk, pb) * NR, Hd)
            for n in range(qa * MR, min(qb * MR, N)):
                for u in range(u0, u1):
                    hprev[t, n, u] = h[n, u]
                if cell == 2:
                    for u in range(u0, u1):
                        aux1[t, n, u] = c[n, u]
                if t < lengths[n]:
                    _cell_row32(cell, t, n, u0, u1, xg, pg2[n], hs,
                                b_hh, h, c, y, gates, aux1, aux2)
                    for u in range(u0, u1):
                        h[n, u] = y[t, n, u]
                q, r = divmod(n, MR)
                for u in range(u0, u1):
                    a_nxt[(q * Hd + u) * MR + r] = h[n, u]

    @njit(parallel=True, **VEC_JIT)
    def _seq_fwd_v6(cell, xg, bp, b_hh, h, c, lengths, reverse, y, hprev, gates, aux1, aux2,
                    nth, chunk, rows):
        """The whole float32 forward time loop (:func:`_fwd_step_v6` per thread and step).
        ``rows`` False (v6, v7): one parallel region per step, thread ``th`` owns a range of
        hidden-unit panels for every sentence (W_hh split between the threads' caches).
        ``rows`` True (v8): thread ``th`` owns a range of MR-sentence tiles for every unit
        and runs all T steps of its sentences in ONE parallel region, no barrier per step
        (each thread reads all of W_hh at every step: where that pays, see _row_split)."""
        T, N, GHd = xg.shape
        Hd = h.shape[1]
        P = (Hd + NR - 1) // NR
        Q = (N + MR - 1) // MR
        apack = np.zeros((2, Q * Hd * MR), np.float32)    # rows >= N stay 0
        panel = np.empty((nth, Q * MR, GHd // Hd * chunk * NR), np.float32)
        for n in range(N):
            q, r = divmod(n, MR)
            for k in range(Hd):
                apack[0, (q * Hd + k) * MR + r] = h[n, k]
        if rows:
            for th in prange(nth):
                qa, qb = th * Q // nth, (th + 1) * Q // nth
                for s in range(T):
                    t = T - 1 - s if reverse else s
                    cur = s % 2
                    if qb > qa:
                        _fwd_step_v6(cell, t, apack[cur], apack[1 - cur], panel[th], bp, 0, P,
                                     qa, qb, chunk, xg, b_hh, h, c, lengths, y, hprev, gates,
                                     aux1, aux2)
        else:
            for s in range(T):
                t = T - 1 - s if reverse else s
                cur = s % 2
                for th in prange(nth):
                    _fwd_step_v6(cell, t, apack[cur], apack[1 - cur], panel[th], bp,
                                 th * P // nth, (th + 1) * P // nth, 0, Q, chunk, xg, b_hh, h,
                                 c, lengths, y, hprev, gates, aux1, aux2)
        return h, c

    @njit(inline="always", **VEC_JIT)
    def _pack_dg_row(dgh, t, n, u0, u1, Hd, G, a, MRr):
        """A-panel entries of row n for the units [u0, u1) of every gate: a[(q*G*Hd + j)*MR + r]
        = dgh[t, n, j] (n = q*MR + r)."""
        q, r = divmod(n, MRr)
        GHd = G * Hd
        src = dgh[t, n]
        for g in range(G):
            for u in range(g * Hd + u0, g * Hd + u1):
                a[(q * GHd + u) * MRr + r] = src[u]

    @njit(inline="always", **VEC_JIT)
    def _bwd_first_v6(cell, t0, pa, pb, qa, qb, chunk, a0buf, sb, dy, has_dy, dh, dc, dtmp,
                      hprev, gates, aux1, aux2, dgx, dgh, lengths):
        """The elementwise backward of the first step processed (t0) for one thread's panels
        [pa, pb) and sentence tiles [qa, qb), its dg_t0 packed into the A buffer ``a0buf``."""
        N, Hd = dh.shape
        G = dgx.shape[2] // Hd
        for pc in range(pa, pb, chunk):
            u0, u1 = pc * NR, min(min(pc + chunk, pb) * NR, Hd)
            for n in range(qa * MR, min(qb * MR, N)):
                _bwd_row32(cell, t0, n, u0, u1, dy, has_dy, dh, dc, dtmp, hprev, gates,
                           aux1, aux2, dgx, dgh, lengths, sb)
                _pack_dg_row(dgh, t0, n, u0, u1, Hd, G, a0buf, MR)

    @njit(inline="always", **VEC_JIT)
    def _bwd_step_v6(cell, s, t, tn, pa, pb, qa, qb, chunk, a_cur, a_nxt, mm, sb, bq, dy,
                     has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths,
                     reverse, k):
        """One thread's share of BPTT step t (the s-th processed) for the hidden-unit panels
        [pa, pb) and sentence tiles [qa, qb), ``chunk`` panels at a time: its block of
        dg_t @ W_hh with the micro-kernel (A = dg_t of all units, packed; B = ``bq`` from
        ``pack_col_panels(w_hh)``), dh_(t-1) finished for those units (pass-through,
        truncation), then the elementwise step tn = t-1 for them right away, their dg_tn
        packed into the other A buffer."""
        T, N, GHd = dgx.shape
        Hd = dh.shape[1]
        G = GHd // Hd
        W = chunk * NR
        mf = mm.reshape(-1)
        for pc in range(pa, pb, chunk):
            pe = min(pc + chunk, pb)
            u0, u1 = pc * NR, min(pe * NR, Hd)
            # k blocked by gate (Hd rows of W_hh), the gate loop outermost: one gate's
            # A block (N x Hd, 256 KB at N=64) stays in L2 over the chunk's panels;
            # the whole K = G*Hd per panel streamed a 1 MB A from L3 per panel
            # (LSTM N=64: the GEMM took 635 ms per sequence vs 345 forward)
            for g in range(G):
                for p in range(pc, pe):
                    c0 = (p - pc) * NR
                    b0 = (p * GHd + g * Hd) * NR
                    a0 = (qa * GHd + g * Hd) * MR
                    if g == 0:
                        mk_tile_prefetch(a_cur, a0, bq, b0, mf, qa * MR * W + c0, W, Hd)
                    else:
                        mk_tile_acc_prefetch(a_cur, a0, bq, b0, mf, qa * MR * W + c0, W, Hd)
                    for q in range(qa + 1, qb):
                        a0 = (q * GHd + g * Hd) * MR
                        if g == 0:
                            mk_tile(a_cur, a0, bq, b0, mf, q * MR * W + c0, W, Hd)
                        else:
                            mk_tile_acc(a_cur, a0, bq, b0, mf, q * MR * W + c0, W, Hd)
            for n in range(qa * MR, min(qb * MR, N)):
                _combine_row32(n, u0, u1, t, mm[n], dtmp, dh, dc, cell == 2, lengths,
                               reverse, k)
                if s + 1 < T:
                    _bwd_row32(cell, tn, n, u0, u1, dy, has_dy, dh, dc, dtmp, hprev,
                               gates, aux1, aux2, dgx, dgh, lengths, sb)
                    _pack_dg_row(dgh, tn, n, u0, u1, Hd, G, a_nxt, MR)

    @njit(parallel=True, **VEC_JIT)
    def _seq_bwd_v6(cell, dy, has_dy, dh, dc, bq, hprev, gates, aux1, aux2, dgx, dgh, lengths,
                    reverse, k, nth, chunk, rows):
        """The whole float32 BPTT time loop (:func:`_bwd_step_v6` per thread and step).
        ``rows`` False (v6, v7): one parallel region per step, thread th owns the hidden-unit
        panels [p0, p1) for every sentence: one barrier per step. ``rows`` True (v8): thread
        th owns a range of MR-sentence tiles for every unit and runs all T steps of its
        sentences in ONE parallel region (see :func:`_seq_fwd_v6`)."""
        T, N, GHd = dgx.shape
        Hd = dh.shape[1]
        P = (Hd + NR - 1) // NR
        Q = (N + MR - 1) // MR
        W = chunk * NR
        apack = np.zeros((2, Q * GHd * MR), np.float32)   # rows >= N stay 0
        mmbuf = np.empty((nth, Q * MR, W), np.float32)
        sbuf = np.empty((nth, W), np.float32)
        dtmp = np.empty_like(dh)
        t0 = 0 if reverse else T - 1                       # first step processed
        if rows:
            for th in prange(nth):
                qa, qb = th * Q // nth, (th + 1) * Q // nth
                if qb > qa:
                    _bwd_first_v6(cell, t0, 0, P, qa, qb, chunk, apack[0], sbuf[th], dy,
                                  has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh,
                                  lengths)
                    for s in range(T):
                        t = s if reverse else T - 1 - s
                        tn = t + 1 if reverse else t - 1       # next step processed
                        cur = s % 2
                        _bwd_step_v6(cell, s, t, tn, 0, P, qa, qb, chunk, apack[cur],
                                     apack[1 - cur], mmbuf[th], sbuf[th], bq, dy, has_dy, dh,
                                     dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths,
                                     reverse, k)
            return dh, dc
        for th in prange(nth):
            _bwd_first_v6(cell, t0, th * P // nth, (th + 1) * P // nth, 0, Q, chunk, apack[0],
                          sbuf[th], dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx,
                          dgh, lengths)
        for s in range(T):
            t = s if reverse else T - 1 - s
            tn = t + 1 if reverse else t - 1                   # next step processed
            cur = s % 2
            for th in prange(nth):
                _bwd_step_v6(cell, s, t, tn, th * P // nth, (th + 1) * P // nth, 0, Q, chunk,
                             apack[cur], apack[1 - cur], mmbuf[th], sbuf[th], bq, dy, has_dy,
                             dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths,
                             reverse, k)
        return dh, dc

    @njit(inline="always", **VEC_JIT)
    def _combine_row32(n, u0, u1, t, mmr, dtmp, dh, dc, is_lstm, lengths, reverse, k):
        """dh_(t-1)[n, u0:u1] = dtmp + (dg_t @ W_hh) (mmr[:u1-u0]) at a valid step, zero where
        truncated BPTT cuts (dc too), dtmp alone at a padded step."""
        m = u1 - u0
        dhr, tm = dh[n, u0:u1], dtmp[n, u0:u1]
        if t < lengths[n]:
            if _bptt_cut(t, lengths[n], reverse, k):
                for j in range(m):
                    dhr[j] = ZERO32
                if is_lstm:
                    dcr = dc[n, u0:u1]
                    for j in range(m):
                        dcr[j] = ZERO32
            else:
                for j in range(m):
                    dhr[j] = tm[j] + mmr[j]
        else:
            for j in range(m):
                dhr[j] = tm[j]

    @njit(inline="always", **_jit)
    def _bwd_unit(cell, t, n, u, Hd, dht, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh):
        """Pointwise backward of unit u, sentence n, valid step t; dht = dh + dy[t]."""
        if cell == 0:
            hv = gates[t, n, u]
            dgx[t, n, u] = dht * (1.0 - hv * hv)
            dtmp[n, u] = 0
        elif cell == 1:
            dgx[t, n, u] = dht if gates[t, n, u] > 0 else dht * 0
            dtmp[n, u] = 0
        elif cell == 2:
            i = gates[t, n, u]
            f = gates[t, n, Hd + u]
            g = gates[t, n, 2 * Hd + u]
            o = gates[t, n, 3 * Hd + u]
            tc = aux2[t, n, u]
            dct = dc[n, u] + dht * o * (1.0 - tc * tc)
            dgx[t, n, u] = dct * g * i * (1.0 - i)
            dgx[t, n, Hd + u] = dct * aux1[t, n, u] * f * (1.0 - f)
            dgx[t, n, 2 * Hd + u] = dct * i * (1.0 - g * g)
            dgx[t, n, 3 * Hd + u] = dht * tc * o * (1.0 - o)
            dc[n, u] = dct * f
            dtmp[n, u] = 0
        else:
            r = gates[t, n, u]
            z = gates[t, n, Hd + u]
            nn = gates[t, n, 2 * Hd + u]
            dan = dht * (1.0 - z) * (1.0 - nn * nn)
            dar = dan * aux1[t, n, u] * r * (1.0 - r)
            daz = dht * (hprev[t, n, u] - nn) * z * (1.0 - z)
            dgx[t, n, u] = dar
            dgx[t, n, Hd + u] = daz
            dgx[t, n, 2 * Hd + u] = dan
            dgh[t, n, u] = dar
            dgh[t, n, Hd + u] = daz
            dgh[t, n, 2 * Hd + u] = dan * r
            dtmp[n, u] = dht * z

    @njit(inline="always", **_jit)
    def _bwd_range(cell, n, u0, u1, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths):
        """Region A for units u0..u1-1 of sentence n: pre-activation gradients of step t;
        dtmp gets the part of dh_(t-1) that does not go through W_hh (the pass-through at
        padded steps, GRU's z*dh)."""
        Hd = dh.shape[1]
        if t < lengths[n]:
            for u in range(u0, u1):
                dht = dh[n, u]
                if has_dy:
                    dht += dy[t, n, u]
                _bwd_unit(cell, t, n, u, Hd, dht, dh, dc, dtmp, hprev, gates, aux1, aux2,
                          dgx, dgh)
        else:
            for u in range(u0, u1):
                dtmp[n, u] = dh[n, u]

    @njit(inline="always", **_jit)
    def _bwd_par_body(cell, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths):
        N, Hd = dh.shape
        nb = (Hd + UNIT_BLOCK - 1) // UNIT_BLOCK
        for blk in prange(N * nb):
            n = blk // nb
            u0 = (blk - n * nb) * UNIT_BLOCK
            _bwd_range(cell, n, u0, min(u0 + UNIT_BLOCK, Hd), t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths)

    @njit(inline="always", **_jit)
    def _bwd_ser_body(cell, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths):
        N, Hd = dh.shape
        for n in range(N):
            _bwd_range(cell, n, 0, Hd, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths)

    @njit(parallel=True, **_jit)
    def _bwd_pointwise(cell, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths):
        """Region A of a backward step, parallel over (sentence, unit block)."""
        if cell == 0:
            _bwd_par_body(0, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths)
        elif cell == 1:
            _bwd_par_body(1, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths)
        elif cell == 2:
            _bwd_par_body(2, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths)
        else:
            _bwd_par_body(3, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths)

    @njit(nogil=True, **_jit)   # nogil: v4 runs it on worker threads
    def _bwd_pointwise_serial(cell, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths):
        """Serial twin of _bwd_pointwise."""
        if cell == 0:
            _bwd_ser_body(0, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths)
        elif cell == 1:
            _bwd_ser_body(1, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths)
        elif cell == 2:
            _bwd_ser_body(2, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths)
        else:
            _bwd_ser_body(3, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh, lengths)

    # ---- numba v5: the backward elementwise step as short vectorisable float32 loops ---------
    # On unit ranges [u0, u1) through zero-based slices, as the forward's row helpers (v6 runs
    # them on one thread's units).
    @njit(inline="always", **VEC_JIT)
    def _lstm_bwd_row32(Hd, u0, u1, s, gr, tcr, cpr, dcr, gx):
        """s = (dh + dy)[u0:u1] of one sentence; writes dgx's four slices, dc <- dc_(t-1)."""
        gi, gf = gr[u0:u1], gr[Hd + u0:Hd + u1]
        gg, go = gr[2 * Hd + u0:2 * Hd + u1], gr[3 * Hd + u0:3 * Hd + u1]
        xi, xf = gx[u0:u1], gx[Hd + u0:Hd + u1]
        xg, xo = gx[2 * Hd + u0:2 * Hd + u1], gx[3 * Hd + u0:3 * Hd + u1]
        tc, cp, dcs = tcr[u0:u1], cpr[u0:u1], dcr[u0:u1]
        n = u1 - u0
        for k in range(n):                                    # o gate
            o = go[k]
            xo[k] = s[k] * tc[k] * o * (ONE32 - o)
        for k in range(n):                                    # dc_t = dc + dh o (1 - tanh^2 c)
            dcs[k] = dcs[k] + s[k] * go[k] * (ONE32 - tc[k] * tc[k])
        for k in range(n):              # i, f, g gates: one output per loop (fewer overlap
            i = gi[k]                   # checks, or LLVM leaves the loop scalar)
            xi[k] = dcs[k] * gg[k] * i * (ONE32 - i)
        for k in range(n):
            f = gf[k]
            xf[k] = dcs[k] * cp[k] * f * (ONE32 - f)
        for k in range(n):
            g = gg[k]
            xg[k] = dcs[k] * gi[k] * (ONE32 - g * g)
        for k in range(n):                                    # dc_(t-1) = dc_t f
            dcs[k] = dcs[k] * gf[k]

    @njit(inline="always", **VEC_JIT)
    def _gru_bwd_row32(Hd, u0, u1, s, gr, hnr, hpr, gx, gh, tmp):
        gr_, gz, gn = gr[u0:u1], gr[Hd + u0:Hd + u1], gr[2 * Hd + u0:2 * Hd + u1]
        xr, xz, xn = gx[u0:u1], gx[Hd + u0:Hd + u1], gx[2 * Hd + u0:2 * Hd + u1]
        hr, hz, hn = gh[u0:u1], gh[Hd + u0:Hd + u1], gh[2 * Hd + u0:2 * Hd + u1]
        hnv, hp, tm = hnr[u0:u1], hpr[u0:u1], tmp[u0:u1]
        n = u1 - u0
        for k in range(n):                                    # n gate
            z, nn = gz[k], gn[k]
            xn[k] = s[k] * (ONE32 - z) * (ONE32 - nn * nn)
        for k in range(n):                                    # r gate (through W_hn h + b_hn)
            r = gr_[k]
            xr[k] = xn[k] * hnv[k] * r * (ONE32 - r)
        for k in range(n):                                    # z gate
            z = gz[k]
            xz[k] = s[k] * (hp[k] - gn[k]) * z * (ONE32 - z)
        for k in range(n):
            hr[k] = xr[k]
        for k in range(n):
            hz[k] = xz[k]
        for k in range(n):
            hn[k] = xn[k] * gr_[k]
        for k in range(n):                                    # the part of dh_(t-1) past W_hh
            tm[k] = s[k] * gz[k]

    @njit(inline="always", **VEC_JIT)
    def _bwd_row32(cell, t, n, u0, u1, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx,
                   dgh, lengths, sbuf):
        """Backward elementwise step of sentence n, units [u0, u1): the pre-activation
        gradients dgx[t, n] (and GRU's dgh) from dh (+ dy[t]); dc <- dc_(t-1); dtmp gets the
        part of dh_(t-1) that bypasses W_hh. sbuf: scratch of >= u1 - u0 values."""
        m = u1 - u0
        tm = dtmp[n, u0:u1]
        dhr = dh[n, u0:u1]
        if t >= lengths[n]:                                   # padded: dh passes through
            for k in range(m):
                tm[k] = dhr[k]
            return
        s = sbuf[:m]
        if has_dy:
            dyr = dy[t, n, u0:u1]
            for k in range(m):
                s[k] = dhr[k] + dyr[k]
        else:
            for k in range(m):
                s[k] = dhr[k]
        gr, gx = gates[t, n], dgx[t, n]
        if cell == 0:
            g0, x0 = gr[u0:u1], gx[u0:u1]
            for k in range(m):
                x0[k] = s[k] * (ONE32 - g0[k] * g0[k])
        elif cell == 1:
            g0, x0 = gr[u0:u1], gx[u0:u1]
            for k in range(m):
                x0[k] = s[k] if g0[k] > 0 else ZERO32 * s[k]
        elif cell == 2:
            _lstm_bwd_row32(dh.shape[1], u0, u1, s, gr, aux2[t, n], aux1[t, n], dc[n], gx)
        else:
            _gru_bwd_row32(dh.shape[1], u0, u1, s, gr, aux1[t, n], hprev[t, n], gx, dgh[t, n],
                           dtmp[n])
        if cell != 3:
            for k in range(m):
                tm[k] = ZERO32

    @njit(nogil=True, **VEC_JIT)   # nogil: v5 runs it on worker threads
    def _bwd_pointwise32(cell, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh,
                         lengths):
        """float32 twin of _bwd_pointwise_serial (numba v5), one sentence row at a time."""
        N, Hd = dh.shape
        sbuf = np.empty(Hd, dh.dtype)
        for n in range(N):
            _bwd_row32(cell, t, n, 0, Hd, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2,
                       dgx, dgh, lengths, sbuf)

    # ---- numba v7: streamed-W_hh GEMVs fused with the gates, small N (kernels/_stream_gemv.py)
    @njit(inline="always", **VEC_JIT)
    def _v7_units(th, nth, Hd):
        """Thread th's hidden units [u0, u1): nth near-equal ranges, multiples of 8 (whole
        vectors) except the last."""
        q = (Hd + 7) // 8
        return min(Hd, th * q // nth * 8), min(Hd, (th + 1) * q // nth * 8)

    @njit(inline="always", **VEC_JIT)
    def _v7_width(nth, Hd):
        """The most units any thread owns."""
        hs = 0
        for th in range(nth):
            u0, u1 = _v7_units(th, nth, Hd)
            hs = max(hs, u1 - u0)
        return hs

    @njit(parallel=True, **VEC_JIT)
    def _seq_fwd_v7(cell, xg, w_hh, b_hh, h, c, lengths, reverse, y, hprev, gates, aux1, aux2,
                    nth):
        """The whole float32 forward time loop, one parallel region per step (numba v7). Thread
        ``th`` owns the hidden units [u0, u1): it dots its units' G gate rows of W_hh with
        h_(t-1) (``dot_rows``: W_hh streamed as stored, no transpose or packing), runs those
        units' gates and state update, and writes their h_t into the other of two h buffers
        (the next step's GEMV reads all of h_t). Returns the final (h, c)."""
        T, N, GHd = xg.shape
        Hd = h.shape[1]
        G = GHd // Hd
        hs = _v7_width(nth, Hd)                           # gate stride in a thread's buffer
        hb = np.empty((2, N, Hd), np.float32)
        hb[0] = h
        hgbuf = np.empty((nth, N, G * hs), np.float32)
        for s in range(T):
            t = T - 1 - s if reverse else s
            cur = s % 2
            for th in prange(nth):
                u0, u1 = _v7_units(th, nth, Hd)
                h_cur, h_nxt, hg = hb[cur], hb[1 - cur], hgbuf[th]
                for g in range(G):
                    dot_rows(w_hh, g * Hd + u0, g * Hd + u1, h_cur, hg, g * hs)
                for n in range(N):
                    for u in range(u0, u1):
                        hprev[t, n, u] = h_cur[n, u]
                    if cell == 2:
                        for u in range(u0, u1):
                            aux1[t, n, u] = c[n, u]
                    if t < lengths[n]:
                        _cell_row32(cell, t, n, u0, u1, xg, hg[n], hs, b_hh, h_cur, c, y,
                                    gates, aux1, aux2)
                        for u in range(u0, u1):
                            h_nxt[n, u] = y[t, n, u]
                    else:
                        for u in range(u0, u1):
                            h_nxt[n, u] = h_cur[n, u]
        return hb[T % 2].copy(), c

    @njit(parallel=True, **VEC_JIT)
    def _seq_bwd_v7(cell, dy, has_dy, dh, dc, w_hh, hprev, gates, aux1, aux2, dgx, dgh, lengths,
                    reverse, k, nth):
        """The whole float32 BPTT time loop, one parallel region per step (numba v7). Thread th
        owns the hidden units [u0, u1) = columns of W_hh: per step it computes those columns of
        dg_t @ W_hh (``axpy_cols``), finishes dh_(t-1) for its units (pass-through,
        truncation), then runs the elementwise step t-1 for them, writing their dg_(t-1),
        which the next step's GEMV reads whole: one barrier per step."""
        T, N, GHd = dgx.shape
        Hd = dh.shape[1]
        hs = _v7_width(nth, Hd)
        mmbuf = np.empty((nth, N, hs), np.float32)
        sbuf = np.empty((nth, hs), np.float32)
        dtmp = np.empty_like(dh)
        t0 = 0 if reverse else T - 1                       # first step processed
        for th in prange(nth):
            u0, u1 = _v7_units(th, nth, Hd)
            for n in range(N):
                _bwd_row32(cell, t0, n, u0, u1, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1,
                           aux2, dgx, dgh, lengths, sbuf[th])
        for s in range(T):
            t = s if reverse else T - 1 - s
            tn = t + 1 if reverse else t - 1                   # next step processed
            for th in prange(nth):
                u0, u1 = _v7_units(th, nth, Hd)
                mm = mmbuf[th]
                axpy_cols(w_hh, dgh[t], u0, u1, mm)
                for n in range(N):
                    _combine_row32(n, u0, u1, t, mm[n], dtmp, dh, dc, cell == 2, lengths,
                                   reverse, k)
                    if s + 1 < T:
                        _bwd_row32(cell, tn, n, u0, u1, dy, has_dy, dh, dc, dtmp, hprev,
                                   gates, aux1, aux2, dgx, dgh, lengths, sbuf[th])
        return dh, dc

    @njit(inline="always", **_jit)
    def _bptt_cut(t, length, reverse, k):
        """Whether truncated BPTT (k steps) drops the gradient entering valid step t of a
        sentence of this length: its processing-order step s = k, 2k, ..."""
        if k <= 0:
            return False
        s = length - 1 - t if reverse else t
        return s > 0 and s % k == 0

    @njit(inline="always", **_jit)
    def _combine_range(n, u0, u1, t, mm, dtmp, dh, dc, is_lstm, lengths, reverse, k):
        if t < lengths[n]:
            if _bptt_cut(t, lengths[n], reverse, k):
                for u in range(u0, u1):
                    dh[n, u] = 0
                    if is_lstm:
                        dc[n, u] = 0
            else:
                for u in range(u0, u1):
                    dh[n, u] = dtmp[n, u] + mm[n, u]
        else:
            for u in range(u0, u1):
                dh[n, u] = dtmp[n, u]

    @njit(parallel=True, **_jit)
    def _bwd_combine(t, mm, dtmp, dh, dc, is_lstm, lengths, reverse, k):
        """Region B: dh_(t-1) = dtmp + dg_t @ W_hh (valid steps), then truncation."""
        N, Hd = dh.shape
        nb = (Hd + UNIT_BLOCK - 1) // UNIT_BLOCK
        for blk in prange(N * nb):
            n = blk // nb
            u0 = (blk - n * nb) * UNIT_BLOCK
            _combine_range(n, u0, min(u0 + UNIT_BLOCK, Hd), t, mm, dtmp, dh, dc, is_lstm, lengths, reverse, k)

    @njit(nogil=True, **_jit)   # nogil: v4 runs it on worker threads
    def _bwd_combine_serial(t, mm, dtmp, dh, dc, is_lstm, lengths, reverse, k):
        """Serial twin of _bwd_combine."""
        N, Hd = dh.shape
        for n in range(N):
            _combine_range(n, 0, Hd, t, mm, dtmp, dh, dc, is_lstm, lengths, reverse, k)

    @njit(parallel=True, **_jit)
    def _bwd_gemv_small(t, dgh, w_hh, dtmp, dh, dc, is_lstm, lengths, reverse, k, B):
        """Region B for small N: dh_{t-1}[:, block] = dtmp + sum_j dg_t[:, j] * W_hh[j, block]
        (axpy form over rows of W_hh, parallel over column blocks), then truncation."""
        N, Hd = dh.shape
        GHd = w_hh.shape[0]
        nblk = (Hd + B - 1) // B
        for blk in prange(nblk):
            u0 = blk * B
            w = min(B, Hd - u0)
            acc = np.zeros((N, B), dtype=dh.dtype)
            for n in range(N):
                if t < lengths[n]:
                    for j in range(GHd):
                        g = dgh[t, n, j]
                        if g != 0:
                            for uu in range(w):
                                acc[n, uu] += g * w_hh[j, u0 + uu]
            for n in range(N):
                cut = t < lengths[n] and _bptt_cut(t, lengths[n], reverse, k)
                for uu in range(w):
                    u = u0 + uu
                    if t < lengths[n]:
                        if cut:
                            dh[n, u] = 0
                            if is_lstm:
                                dc[n, u] = 0
                        else:
                            dh[n, u] = dtmp[n, u] + acc[n, uu]
                    else:
                        dh[n, u] = dtmp[n, u]

    @njit(**_jit)
    def _seq_bwd_v2(cell, dy, has_dy, dh, dc, w_hh, hprev, gates, aux1, aux2, dgx, dgh, lengths,
                    reverse, k, par):
        T, N, GHd = dgx.shape
        dtmp = np.empty_like(dh)
        mm = np.empty_like(dh)
        for s in range(T):
            t = s if reverse else T - 1 - s
            if par:
                _bwd_pointwise(cell, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx,
                               dgh, lengths)
            else:
                _bwd_pointwise_serial(cell, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1,
                                      aux2, dgx, dgh, lengths)
            np.dot(dgh[t], w_hh, mm)
            if par:
                _bwd_combine(t, mm, dtmp, dh, dc, cell == 2, lengths, reverse, k)
            else:
                _bwd_combine_serial(t, mm, dtmp, dh, dc, cell == 2, lengths, reverse, k)
        return dh, dc

    @njit(**_jit)
    def _seq_bwd_v3(cell, dy, has_dy, dh, dc, w_hh, hprev, gates, aux1, aux2, dgx, dgh, lengths,
                    reverse, k, B):
        T, N, GHd = dgx.shape
        dtmp = np.empty_like(dh)
        for s in range(T):
            t = s if reverse else T - 1 - s
            _bwd_pointwise(cell, t, dy, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx,
                           dgh, lengths)
            _bwd_gemv_small(t, dgh, w_hh, dtmp, dh, dc, cell == 2, lengths, reverse, k, B)
        return dh, dc


# numba v1/v2: a step's elementwise kernel runs on the thread pool only from this many N*G*Hd
# values on. Below it the serial twin runs: numba's OpenMP pool spins after each region and
# fights OpenBLAS's own spinning pool for the cores (measured 3-10x slowdowns on 2 cores),
# while the elementwise work is far cheaper than the step's GEMM.
PARALLEL_MIN_UNITS = 1 << 20


def _parallel_pointwise(N, G, Hd):
    """Whether v1's per-step elementwise kernel is worth waking the thread pool for."""
    return N * G * Hd >= PARALLEL_MIN_UNITS and numba.get_num_threads() > 1


_BLAS_CONTROLLER = []
# numba v1: BLAS threads for the per-step GEMV when N <= SMALL_N. None leaves BLAS alone (best
# on an idle machine: LSTM N=1 95 ms vs 180 ms with 1 thread, 2 cores); 1 runs the time loop's
# GEMVs on one BLAS thread, which is robust on an oversubscribed machine (there a 2-thread
# OpenBLAS GEMV that synchronises every call measured 16 ms instead of 1.2 ms).
STEP_BLAS_THREADS = None


def _step_blas_limit(N):
    """Context for v1's time loop applying STEP_BLAS_THREADS (needs the optional threadpoolctl);
    the weight-gradient GEMMs after the loop always keep all threads."""
    if N > SMALL_N or STEP_BLAS_THREADS is None:
        return contextlib.nullcontext()
    return _blas_limit(STEP_BLAS_THREADS)


def _blas_limit(threads: int):
    """Context limiting NumPy's BLAS to ``threads`` threads (no-op without threadpoolctl)."""
    if not _BLAS_CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS_CONTROLLER.append(ThreadpoolController().select(user_api="blas"))
        except Exception:  # pragma: no cover - threadpoolctl missing
            _BLAS_CONTROLLER.append(None)
    ctl = _BLAS_CONTROLLER[0]
    return contextlib.nullcontext() if ctl is None else ctl.limit(limits=threads)


def _block_size(Hd, G):
    """Hidden units per block of the fused small-N kernels: >= 2 blocks per thread, multiple
    of 16 (vector width), at most 256."""
    nt = numba.get_num_threads() if _HAVE_NUMBA else 1
    b = -(-Hd // (2 * nt))
    b = ((b + 15) // 16) * 16
    return int(max(16, min(256, b)))


# numba v4: sentences are independent, so v4 can cut the batch into one slice per worker
# thread, each worker running the WHOLE time loop of its slice with single-threaded BLAS and
# GIL-free serial elementwise kernels. Nothing synchronises per step: a step of v1 is a
# multi-threaded BLAS call whose threads meet every step (spinning, and waiting a scheduler time
# slice when another process holds a core: the 20-40 ms "anomaly" steps measured on the shared
# 2-core machine), while a descheduled v4 worker only delays itself. It splits where that also
# wins on a quiet machine (measured, 2 cores, speech shape): 2 <= N <= SPLIT_SMALL_MAX, where
# single-threaded GEMVs of 1-2 sentences beat OpenBLAS's poor small-M GEMM, and N >=
# SPLIT_MIN_N, where two independent 1-thread GEMMs beat one 2-thread GEMM plus per-step sync.
# In between (N=8: 4 sentences per worker, 1-thread small-M GEMM 2.9 ms vs 1.5 ms on 2 threads)
# and at N=1 v4 runs v1's loop.
SPLIT_SMALL_MAX = 4
SPLIT_MIN_N = 32
# a v4 worker with at most this many sentences does one BLAS GEMV per sentence instead of one
# GEMM: single-threaded OpenBLAS runs a 2 x 1000 x 4000 sgemm ~2.5x slower than two sgemv
# calls (2.3-2.6 ms vs 0.9 ms measured; its small-M GEMM path is far from bandwidth-bound)
GEMV_ROWS = 2
# worker threads of numba v4; None: numba.get_num_threads() (the "same thread count" rule)
SPLIT_WORKERS = None


def _split_workers(N):
    """Number of sentence slices numba v4 cuts a batch of N into (1: run v1's loop)."""
    if not (2 <= N <= SPLIT_SMALL_MAX or N >= SPLIT_MIN_N):
        return 1
    nw = SPLIT_WORKERS if SPLIT_WORKERS is not None else (
        numba.get_num_threads() if _HAVE_NUMBA else 1)
    return int(max(1, min(nw, N)))


def _slices(N, nw):
    """nw contiguous (n0, n1) sentence ranges covering 0..N-1, sizes differing by <= 1."""
    q, r = divmod(N, nw)
    out, n0 = [], 0
    for i in range(nw):
        n1 = n0 + q + (1 if i < r else 0)
        out.append((n0, n1))
        n0 = n1
    return out


def _run_workers(fn, ranges):
    """fn(n0, n1) for every range on its own thread (the calling thread takes the first) with
    BLAS limited to one thread for the duration; re-raises the first worker exception."""
    import threading
    errors = []

    def body(n0, n1):
        try:
            fn(n0, n1)
        except BaseException as e:  # pragma: no cover - re-raised below
            errors.append(e)

    with _blas_single_thread():
        threads = [threading.Thread(target=body, args=r) for r in ranges[1:]]
        for th in threads:
            th.start()
        body(*ranges[0])
        for th in threads:
            th.join()
    if errors:
        raise errors[0]


def _blas_single_thread():
    """Context limiting NumPy's BLAS to one thread (no-op without threadpoolctl)."""
    return _blas_limit(1)


if _HAVE_NUMBA:
    @njit(nogil=True, **_jit)
    def _transpose_into(a, out):
        """out = a.T in 64 x 64 tiles (v4): 8 ms for W_hh 4000 x 1000 float32 where
        ``np.ascontiguousarray(w.T)`` takes 22-24 ms (strided column reads)."""
        R, C = a.shape
        for i0 in range(0, R, 64):
            i1 = min(i0 + 64, R)
            for j0 in range(0, C, 64):
                j1 = min(j0 + 64, C)
                for j in range(j0, j1):
                    for i in range(i0, i1):
                        out[j, i] = a[i, j]
        return out


def _transposed(w, fast):
    """C-contiguous w.T: numba's tiled transpose for v4 (``fast``), NumPy's copy otherwise."""
    if fast and _HAVE_NUMBA:
        return _transpose_into(w, np.empty((w.shape[1], w.shape[0]), w.dtype))
    return np.ascontiguousarray(w.T)


def _needs_whhT(N, nw):
    """Whether v4/v5's backward runs per-sentence GEMVs over a contiguous W_hh^T: v1's loop at
    N=1, or split slices of at most GEMV_ROWS sentences."""
    return N == 1 if nw == 1 else N // nw <= GEMV_ROWS


def _w_fingerprint(w):
    """~4096 evenly spaced values of w: cheap evidence that w was not changed in place."""
    return w.reshape(-1)[::max(1, w.size // 4096)].tobytes()


def _keep_for_backward(cache, key, w_hh, derived):
    """Let a forward's copy of W_hh in another layout (v5: W_hh^T; v6: the backward's packed
    panels) ride in the cache for the backward, with the w_hh it came from and a fingerprint;
    the forward makes it while w_hh is in cache (v6's panels: 0.3 ms there, 1.1-1.9 ms from
    DRAM in the backward, LSTM Hd=512)."""
    cache[key] = derived
    cache[key + "_source"] = (w_hh, _w_fingerprint(w_hh))


def _kept_for_backward(cache, key, w_hh, shape_of):
    """What :func:`_keep_for_backward` kept under ``key`` when the backward got the very same,
    unchanged w_hh (and it has shape ``shape_of(w_hh)`` and w_hh's dtype); else None. Runs
    before the backward's checks: the identity test comes first."""
    src = cache.get(key + "_source") if isinstance(cache, dict) else None
    if src is None or src[0] is not w_hh or _w_fingerprint(w_hh) != src[1]:
        return None
    kept = cache.get(key)
    ok = (isinstance(kept, np.ndarray) and kept.shape == shape_of(w_hh)
          and kept.dtype == w_hh.dtype)
    return kept if ok else None


def _sl(a, real, n0, n1):
    """Sentence slice [n0:n1] of a (T, N, ...) array; dummies (shape (1, 1, 1)) pass through."""
    return a[:, n0:n1] if real else a


def _v4_forward(code, cell, xg, wT, bhh, h, c, lens, reverse, y, cache, aux1, aux2, T, N, G,
                Hd, nw, pointwise):
    """numba v4/v5 forward time loop: one worker per sentence slice, no per-step barrier;
    ``pointwise`` is the serial elementwise step kernel."""
    lstm = cell == "lstm"
    a1 = "cprev" in cache or "hn" in cache
    a2 = "tanh_c" in cache

    def work(n0, n1):
        hs, cs, ls = h[n0:n1], c[n0:n1], lens[n0:n1]
        xs, ys, gs = xg[:, n0:n1], y[:, n0:n1], cache["gates"][:, n0:n1]
        hp = cache["hprev"][:, n0:n1]
        x1, x2 = _sl(aux1, a1, n0, n1), _sl(aux2, a2, n0, n1)
        hg = np.empty((n1 - n0, G * Hd), xg.dtype)
        for s in range(T):
            t = T - 1 - s if reverse else s
            hp[t] = hs
            if lstm:
                x1[t] = cs
            if n1 - n0 <= GEMV_ROWS:
                for r in range(n1 - n0):
                    np.dot(hs[r], wT, out=hg[r])
            else:
                np.dot(hs, wT, out=hg)
            pointwise(code, t, xs, hg, bhh, hs, hs, cs, ys, gs, x1, x2, ls)

    _run_workers(work, _slices(N, nw))


def _v4_backward(code, cell, dyv, has_dy, dh, dc, w_hh, hprev, gates, aux1, aux2, cache, dgx,
                 dgh, lens, rev, k, T, N, nw, pointwise, whhT):
    """numba v4/v5 BPTT time loop: one worker per sentence slice, no per-step barrier;
    ``pointwise`` is the serial elementwise step kernel."""
    a1 = "cprev" in cache or "hn" in cache
    a2 = "tanh_c" in cache
    gru = cell == "gru"

    def work(n0, n1):
        dhs, dcs, ls = dh[n0:n1], dc[n0:n1], lens[n0:n1]
        dys = _sl(dyv, has_dy, n0, n1)
        hp, gs = hprev[:, n0:n1], gates[:, n0:n1]
        x1, x2 = _sl(aux1, a1, n0, n1), _sl(aux2, a2, n0, n1)
        gx = dgx[:, n0:n1]
        gh = dgh[:, n0:n1] if gru else gx
        dtmp = np.empty_like(dhs)
        mm = np.empty_like(dhs)
        for s in range(T):
            t = s if rev else T - 1 - s
            pointwise(code, t, dys, has_dy, dhs, dcs, dtmp, hp, gs, x1, x2, gx, gh, ls)
            if n1 - n0 <= GEMV_ROWS:
                for r in range(n1 - n0):
                    np.dot(whhT, gh[t, r], out=mm[r])
            else:
                np.dot(gh[t], w_hh, out=mm)
            _bwd_combine_serial(t, mm, dtmp, dhs, dcs, cell == "lstm", ls, rev, k)

    _run_workers(work, _slices(N, nw))


def _nb_prepare_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, fast_t=False,
                        fused=None):
    """Checks and buffers of a numba forward; ``fused`` (see :func:`_fused_loop`) picks the
    W_hh layout its time loop reads: "packed" micro-kernel panels of W_hh^T, "gemv" W_hh
    as given, None W_hh^T."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, T, N, G, Hd = _check_forward(
        cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths)
    dt = x.dtype
    pool = fused is not None and _pool_gemms(T, N, G, Hd, x.shape[2])
    xg = (_input_projection_pool if pool else _input_projection)(x, w_ih, b_ih)   # ONE GEMM
    if fused == "packed":                                 # v6: W_hh^T in micro-kernel panels
        wT = pack_row_panels(w_hh, Hd, G, np.empty(G * -(-Hd // NR) * Hd * NR, dt))
    elif fused == "gemv":                                 # v7: dot_rows reads W_hh's rows
        wT = w_hh
    else:
        wT = _transposed(w_hh, fast_t)                    # (Hd, G*Hd): contiguous inner loop
    bhh = np.zeros(G * Hd, dt) if b_hh is None else b_hh
    h = np.zeros((N, Hd), dt) if h0 is None else h0.copy()
    c = np.zeros((N, Hd), dt) if c0 is None or cell != "lstm" else c0.copy()
    lens = np.full(N, T, np.int64) if lengths is None else lengths
    cache = _alloc_cache(cell, T, N, Hd, dt)
    y = np.zeros((T, N, Hd), dt)
    if cell in ("rnn_tanh", "rnn_relu"):
        cache["gates"] = y
    dummy = np.zeros((1, 1, 1), dt)
    aux1 = cache.get("cprev", cache.get("hn", dummy))
    aux2 = cache.get("tanh_c", dummy)
    return xg, wT, bhh, h, c, lens, cache, y, aux1, aux2, T, N, G, Hd


# numba v6: micro-kernel panels (NR units each) per gates pass; see _seq_fwd_v6
V6_CHUNK = 4
# numba v6's work split: None uses numba.get_num_threads() parts (one per thread); tests set
# other counts (uneven panel ranges) - any count is correct, prange runs the parts on its pool
V6_THREADS = None
# numba v6 runs its packed loops from this batch size on. Below, v5's per-sentence GEMVs stream
# W_hh faster than a 4-row tile that is mostly padding (speech shape, fwd+bwd, interleaved
# rounds, v5 vs packed; AVX2 EPYC: LSTM N=1 116 vs 173 ms, N=2 147 vs 148, N=3 319 vs 150;
# GRU N=1 55 vs 79, N=2 99 vs 100, N=3 175 vs 100. AVX-512 EPYC (2026-11-27): LSTM N=1 58.7
# vs 61.6, N=2 97.3 vs 65.1; GRU N=1 37.6 vs 36.8, N=2 58.8 vs 44.8)
PACKED_MIN_N = 2
# numba v7 runs its streamed-W_hh GEMV loops (_seq_fwd_v7 / _seq_bwd_v7) up to this batch size
# (below PACKED_MIN_N, where v6 runs as v5)
GEMV_MAX_N = 1
# numba v8 splits the packed loops by sentences (``rows``: every thread runs all T steps of its
# MR-sentence tiles in one parallel region, no barrier per step, and reads all of W_hh's
# panels at every step) where W_hh's packed panels fit about a core's L2 (ROW_SPLIT_L2_BYTES),
# or up to ROW_SPLIT_MAX_WHH_BYTES with at least 2 tiles (8 sentences) per thread to reuse each
# panel from L3; with a tile per thread and the tiles evenly shared (or >= 4 per thread).
# Elsewhere it splits by hidden units like v6 / v7. Measured (fwd+bwd, 2-core AVX-512 EPYC,
# interleaved, v7 -> rows): LSTM T=38 N=16 Hd=64 1.97 -> 1.47 ms, T=6 N=32 Hd=128 1.56 ->
# 1.32, N=8 0.61 -> 0.56, T=6 N=32 Hd=256 8.1 -> 6.8, T=25 N=16 Hd=256 13.2 -> 11.2; ReLU
# RNN T=12 N=32 Hd=440 8.6 -> 7.9; W_hh past L2: tanh RNN T=100 N=16 Hd=1000 (4 MB) 127 ->
# 117; speech LSTM (16 MB) N=16 300 vs 292, N=8 153 vs 157 (a tie: left on the unit split).
# One tile per thread past L2 (1 MB here): LSTM Hd=256 (1.18 MB) T=6 / T=25 N=8 1.05x / 1.18x,
# GRU Hd=384 (1.77 MB) T=47 N=8 0.94x: the bound sits between them
ROW_SPLIT_L2_BYTES = 3 << 19
ROW_SPLIT_MAX_WHH_BYTES = 8 << 20


# numba v6 runs its GEMMs outside the time loop (input projection, dW_ih, dW_hh, dx) on numba's
# threads (kernels/_pool_blas.py) from this many multiply-adds, T*N*G*Hd*(I + Hd), on; below,
# on OpenBLAS's threads: a tie there (LSTM T=2 N=4 Hd=32 fwd+bwd 0.25 vs 0.23 ms), while from
# ~2^20 on OpenBLAS's threads lose to OpenMP's spin after the BPTT loop (fwd+bwd, 21 interleaved
# rounds, pool vs OpenBLAS: GRU T=25 N=3 Hd=128 0.90 vs 1.05 ms, LSTM T=6 N=8 Hd=512 8.6 vs
# 10.9, GRU T=6 N=32 Hd=256 5.9 vs 7.8, LSTM T=47 N=32 Hd=256 35 vs 48)
POOL_GEMM_MIN_MACS = 2**20


def _pool_gemms(T, N, G, Hd, I):
    return T * N * G * Hd * (I + Hd) >= POOL_GEMM_MIN_MACS


def _v6_threads():
    return max(1, V6_THREADS if V6_THREADS is not None else numba.get_num_threads())


def _col_panels_shape(w_hh):
    """Flat size of :func:`_col_panels`' result, as a shape."""
    return (-(-w_hh.shape[1] // NR) * w_hh.shape[0] * NR,)


def _col_panels(w_hh):
    """W_hh (G*Hd, Hd) in the micro-kernel's B panels for ``dg @ W_hh`` (v6's backward)."""
    return pack_col_panels(w_hh, np.empty(_col_panels_shape(w_hh), w_hh.dtype))


def _row_split(version, N, G, Hd):
    """Whether numba v8's packed loops run split by sentences (see ROW_SPLIT_L2_BYTES)."""
    if version < 8:
        return False
    nth = _v6_threads()
    Q = -(-N // MR)                                   # MR-sentence tiles
    whh_bytes = G * -(-Hd // NR) * NR * Hd * 4
    fits = whh_bytes <= ROW_SPLIT_L2_BYTES or (Q >= 2 * nth
                                                and whh_bytes <= ROW_SPLIT_MAX_WHH_BYTES)
    return Q >= nth and (Q % nth == 0 or Q >= 4 * nth) and fits


def _fused_loop(version, x):
    """Which fused float32 time loop numba v6 / v7 run: "packed" (v6 and v7, N >=
    PACKED_MIN_N: the micro-kernel loops), "gemv" (v7, N <= GEMV_MAX_N: the streamed-W_hh
    GEMV loops) or None, where they run as v5 (float64; v6 below PACKED_MIN_N)."""
    if not (version >= 6 and isinstance(x, np.ndarray) and x.dtype == np.float32
            and x.ndim == 3):
        return None
    N = x.shape[1]
    if N >= PACKED_MIN_N:
        return "packed"
    if version >= 7 and N <= GEMV_MAX_N:
        return "gemv"
    return None


def _nb_forward(version, cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse):
    fused = _fused_loop(version, x)
    asked, version = version, min(version, 5)
    xg, wT, bhh, h, c, lens, cache, y, aux1, aux2, T, N, G, Hd = _nb_prepare_forward(
        cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, fast_t=(version >= 4), fused=fused)
    code = _CODE[cell]
    if fused == "gemv":
        h, c = _seq_fwd_v7(code, xg, w_hh, bhh, h, c, lens, bool(reverse), y, cache["hprev"],
                           cache["gates"], aux1, aux2, _v6_threads())
        return (y, h, c, cache) if cell == "lstm" else (y, h, cache)
    if fused == "packed":
        # the backward's W_hh panels, packed now while W_hh is in cache (see _keep_for_backward)
        _keep_for_backward(cache, "w_hh_col_panels", w_hh, _col_panels(w_hh))
        h, c = _seq_fwd_v6(code, xg, wT, bhh, h, c, lens, bool(reverse), y, cache["hprev"],
                           cache["gates"], aux1, aux2, _v6_threads(), V6_CHUNK,
                           _row_split(asked, N, G, Hd))
        return (y, h, c, cache) if cell == "lstm" else (y, h, cache)
    nw = _split_workers(N) if version >= 4 else 1
    if version == 5 and _needs_whhT(N, nw):
        _keep_for_backward(cache, "w_hhT", w_hh, wT)
    fast32 = version == 5 and x.dtype == np.float32       # vectorised float32 elementwise
    serial_pw = _fwd_pointwise32 if fast32 else _fwd_pointwise_serial
    if nw > 1:                                            # v4/v5: one loop per batch slice
        _v4_forward(code, cell, xg, wT, bhh, h, c, lens, bool(reverse), y, cache, aux1, aux2,
                    T, N, G, Hd, nw, serial_pw)
    elif version in (1, 4, 5):                            # per-step Python loop
        hg = np.empty((N, G * Hd), x.dtype)
        par = not fast32 and _parallel_pointwise(N, G, Hd)
        pw = _fwd_pointwise if par else serial_pw
        with _step_blas_limit(N):
            for s in range(T):
                t = T - 1 - s if reverse else s
                cache["hprev"][t] = h
                if cell == "lstm":
                    aux1[t] = c
                np.dot(h, wT, out=hg)
                pw(code, t, xg, hg, bhh, h, h, c, y, cache["gates"], aux1, aux2, lens)
    elif version == 2 or N > SMALL_N:
        h, c = _seq_fwd_v2(code, xg, wT, bhh, h, c, lens, bool(reverse), y, cache["hprev"],
                           cache["gates"], aux1, aux2, _parallel_pointwise(N, G, Hd))
    else:
        h, c = _seq_fwd_v3(code, xg, wT, bhh, h, c, lens, bool(reverse), y, cache["hprev"],
                           cache["gates"], aux1, aux2, _block_size(Hd, G))
    if cell == "lstm":
        return y, h, c, cache
    return y, h, cache


def _nb_backward(version, cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh,
                 cache, lengths, reverse, bptt_steps):
    fused = _fused_loop(version, x)
    packed = fused == "packed"
    asked, version = version, min(version, 5)
    kept_whhT = (_kept_for_backward(cache, "w_hhT", w_hh, lambda w: w.shape[::-1])
                 if version == 5 else None)
    kept_panels = (_kept_for_backward(cache, "w_hh_col_panels", w_hh, _col_panels_shape)
                   if packed else None)
    (x, w_ih, w_hh, cache, dy, dh_n, dc_n, lengths, k, T, N, G, Hd) = _check_backward(
        cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh, cache, lengths,
        bptt_steps)
    dt = x.dtype
    code = _CODE[cell]
    dh = np.zeros((N, Hd), dt) if dh_n is None else dh_n.copy()
    dc = np.zeros((N, Hd), dt) if dc_n is None or cell != "lstm" else dc_n.copy()
    lens = np.full(N, T, np.int64) if lengths is None else lengths
    dgx = np.zeros((T, N, G * Hd), dt)
    dgh = np.zeros((T, N, G * Hd), dt) if cell == "gru" else dgx
    has_dy = dy is not None
    dyv = dy if has_dy else np.zeros((1, 1, 1), dt)
    dummy = np.zeros((1, 1, 1), dt)
    aux1 = cache.get("cprev", cache.get("hn", dummy))
    aux2 = cache.get("tanh_c", dummy)
    hprev, gates = cache["hprev"], cache["gates"]
    rev = bool(reverse)
    nw = _split_workers(N) if version >= 4 else 1
    fast32 = version == 5 and dt == np.float32            # vectorised float32 elementwise
    serial_pw = _bwd_pointwise32 if fast32 else _bwd_pointwise_serial
    # per-sentence GEMVs (v4/v5) use the dot form over a contiguous W_hh^T (2x the axpy form)
    whhT = None
    if version >= 4 and _needs_whhT(N, nw) and fused is None:
        whhT = kept_whhT if kept_whhT is not None else _transposed(w_hh, True)
    if fused == "gemv":                                   # v7: streamed W_hh GEMVs
        dh, dc = _seq_bwd_v7(code, dyv, has_dy, dh, dc, w_hh, hprev, gates, aux1, aux2, dgx,
                             dgh, lens, rev, k, _v6_threads())
    elif packed:                                          # v6: packed W_hh micro-kernel
        bq = kept_panels if kept_panels is not None else _col_panels(w_hh)
        dh, dc = _seq_bwd_v6(code, dyv, has_dy, dh, dc, bq, hprev, gates, aux1, aux2, dgx, dgh,
                             lens, rev, k, _v6_threads(), V6_CHUNK, _row_split(asked, N, G, Hd))
    elif nw > 1:                                          # v4/v5: one BPTT loop per batch slice
        _v4_backward(code, cell, dyv, has_dy, dh, dc, w_hh, hprev, gates, aux1, aux2, cache,
                     dgx, dgh, lens, rev, k, T, N, nw, serial_pw, whhT)
    elif version in (1, 4, 5):
        dtmp = np.empty_like(dh)
        mm = np.empty_like(dh)
        par = not fast32 and _parallel_pointwise(N, G, Hd)
        pw = _bwd_pointwise if par else serial_pw
        comb = _bwd_combine if par else _bwd_combine_serial
        # v4/v5 at N=1: dh = W_hh^T dg as a dot-form GEMV over the rows of a contiguous
        # W_hh^T (OpenBLAS: 0.20-0.22 ms vs 0.46 ms for the axpy-form dg @ W_hh, 2 threads,
        # LSTM speech shape); the 16 MB transpose (8-12 ms, tiled) is paid once per call by
        # v4, and v5 takes the forward's from the cache
        with _step_blas_limit(N):
            for s in range(T):
                t = s if rev else T - 1 - s
                pw(code, t, dyv, has_dy, dh, dc, dtmp, hprev, gates, aux1, aux2, dgx, dgh,
                   lens)
                if whhT is None:
                    np.dot(dgh[t], w_hh, out=mm)
                else:
                    np.dot(whhT, dgh[t, 0], out=mm[0])
                comb(t, mm, dtmp, dh, dc, cell == "lstm", lens, rev, k)
    elif version == 2 or N > SMALL_N:
        dh, dc = _seq_bwd_v2(code, dyv, has_dy, dh, dc, w_hh, hprev, gates, aux1, aux2, dgx,
                             dgh, lens, rev, k, _parallel_pointwise(N, G, Hd))
    else:
        dh, dc = _seq_bwd_v3(code, dyv, has_dy, dh, dc, w_hh, hprev, gates, aux1, aux2, dgx,
                             dgh, lens, rev, k, _block_size(Hd, 1))
    pool = fused is not None and _pool_gemms(T, N, G, Hd, x.shape[2])
    dx = (_param_grads_pool if pool else _param_grads)(dw_ih, dw_hh, db_ih, db_hh, dgx, dgh, x,
                                                        hprev, w_ih)
    if cell == "lstm":
        return dx, dh, dc
    return dx, dh


# =============================================================================================
# Jordan RNN: h_t = tanh(x_t W_ih^T + y_{t-1} W_hy^T + b_h), y_t = h_t W_ho^T + b_o
# =============================================================================================
def _check_jordan(x, y0, w_ih, w_hy, b_h, w_ho, b_o, lengths):
    x = _check_x(x)
    T, N, I = x.shape
    w_ih = check_float_array("w_ih", w_ih, 2, dtype=x.dtype)
    Hd = w_ih.shape[0]
    check_shape("w_ih", w_ih, (Hd, I))
    w_ho = check_float_array("w_ho", w_ho, 2, dtype=x.dtype)
    O = w_ho.shape[0]
    check_shape("w_ho", w_ho, (O, Hd))
    w_hy = check_float_array("w_hy", w_hy, 2, dtype=x.dtype)
    check_shape("w_hy", w_hy, (Hd, O))
    b_h = _opt_array("b_h", b_h, (Hd,), x.dtype)
    b_o = _opt_array("b_o", b_o, (O,), x.dtype)
    y0 = _opt_array("y0", y0, (N, O), x.dtype)
    lengths = _check_lengths(lengths, T, N)
    return x, y0, w_ih, w_hy, b_h, w_ho, b_o, lengths, T, N, I, Hd, O


def _ref_jordan_forward(x, y0, w_ih, w_hy, b_h, w_ho, b_o, lengths=None):
    x, y0, w_ih, w_hy, b_h, w_ho, b_o, lengths, T, N, I, Hd, O = _check_jordan(
        x, y0, w_ih, w_hy, b_h, w_ho, b_o, lengths)
    dt = x.dtype
    xg = _input_projection(x, w_ih, b_h)                  # ONE GEMM for all T steps
    yp = np.zeros((N, O), dt) if y0 is None else y0.copy()
    out = np.zeros((T, N, O), dt)
    hs = np.zeros((T, N, Hd), dt)
    yprev = np.zeros((T, N, O), dt)
    for t in range(T):
        yprev[t] = yp
        h = np.tanh(xg[t] + yp @ w_hy.T)
        yt = h @ w_ho.T
        if b_o is not None:
            yt += b_o
        if lengths is not None:
            valid = (t < lengths)[:, None]
            h = np.where(valid, h, 0)
            yt = np.where(valid, yt, 0)
            yp = np.where(valid, yt, yp)
        else:
            yp = yt
        hs[t] = h
        out[t] = yt
    return out, yp, {"h": hs, "yprev": yprev}


def _jordan_backward_common(dw_ih, dw_hy, db_h, dw_ho, db_o, dy, dy_n, x, w_ih, w_hy, w_ho,
                            cache, lengths, bptt_steps):
    x = _check_x(x)
    T, N, I = x.shape
    w_ih = check_float_array("w_ih", w_ih, 2, dtype=x.dtype)
    w_ho = check_float_array("w_ho", w_ho, 2, dtype=x.dtype)
    w_hy = check_float_array("w_hy", w_hy, 2, dtype=x.dtype)
    Hd, O = w_ih.shape[0], w_ho.shape[0]
    check_shape("w_hy", w_hy, (Hd, O))
    if not isinstance(cache, dict) or "h" not in cache or "yprev" not in cache:
        raise ValueError("cache: expected the dict returned by jordan_sequence_forward")
    hs = _opt_array("cache['h']", cache["h"], (T, N, Hd), x.dtype)
    yprev = _opt_array("cache['yprev']", cache["yprev"], (T, N, O), x.dtype)
    dy = _opt_array("dy", dy, (T, N, O), x.dtype)
    dy_n = _opt_array("dy_n", dy_n, (N, O), x.dtype)
    lengths = _check_lengths(lengths, T, N)
    return x, w_ih, w_hy, w_ho, hs, yprev, dy, dy_n, lengths, _check_bptt(bptt_steps), T, N, I, \
        Hd, O


def _jordan_param_grads(dw_ih, dw_hy, db_h, dw_ho, db_o, da, dyt, x, hs, yprev, w_ih):
    T, N, I = x.shape
    Hd, O = hs.shape[-1], yprev.shape[-1]
    DA = da.reshape(T * N, Hd)
    DY = dyt.reshape(T * N, O)
    if dw_ih is not None:
        dw_ih += DA.T @ x.reshape(T * N, I)
    if dw_hy is not None:
        dw_hy += DA.T @ yprev.reshape(T * N, O)
    if db_h is not None:
        db_h += DA.sum(axis=0)
    if dw_ho is not None:
        dw_ho += DY.T @ hs.reshape(T * N, Hd)
    if db_o is not None:
        db_o += DY.sum(axis=0)
    return (DA @ w_ih).reshape(T, N, I)


def _ref_jordan_backward(dw_ih, dw_hy, db_h, dw_ho, db_o, dy, dy_n, x, w_ih, w_hy, w_ho, cache,
                         lengths=None, bptt_steps=None):
    (x, w_ih, w_hy, w_ho, hs, yprev, dy, dy_n, lengths, k, T, N, I, Hd, O) = \
        _jordan_backward_common(dw_ih, dw_hy, db_h, dw_ho, db_o, dy, dy_n, x, w_ih, w_hy, w_ho,
                                cache, lengths, bptt_steps)
    dt = x.dtype
    lens = np.full(N, T, np.int64) if lengths is None else lengths
    g = np.zeros((N, O), dt) if dy_n is None else dy_n.copy()   # gradient into y_t (recurrent)
    da = np.zeros((T, N, Hd), dt)
    dyt = np.zeros((T, N, O), dt)                          # total gradient into each y_t
    for t in range(T - 1, -1, -1):
        valid = (t < lens)[:, None]
        tot = g if dy is None else g + np.where(valid, dy[t], 0)
        tot = np.where(valid, tot, 0)
        dyt[t] = tot
        h = hs[t]
        da[t] = (tot @ w_ho) * (1 - h * h)
        g_prev = da[t] @ w_hy
        g = np.where(valid, g_prev, g)
        if k:
            cut = (valid[:, 0] & (t > 0) & (t % k == 0))[:, None]
            g = np.where(cut, 0, g)
    dx = _jordan_param_grads(dw_ih, dw_hy, db_h, dw_ho, db_o, da, dyt, x, hs, yprev, w_ih)
    return dx, g


if _HAVE_NUMBA:
    @njit(**_jit)
    def _jordan_fwd_nb(xg, whyT, whoT, b_o, yp, lengths, out, hs, yprev):
        T, N, Hd = xg.shape
        O = whoT.shape[1]
        a = np.empty((N, Hd), dtype=xg.dtype)
        yt = np.empty((N, O), dtype=xg.dtype)
        for t in range(T):
            yprev[t] = yp
            np.dot(yp, whyT, a)
            for n in range(N):
                for j in range(Hd):
                    a[n, j] = np.tanh(a[n, j] + xg[t, n, j])
            np.dot(a, whoT, yt)
            for n in range(N):
                if t < lengths[n]:
                    for j in range(Hd):
                        hs[t, n, j] = a[n, j]
                    for o in range(O):
                        v = yt[n, o] + b_o[o]
                        out[t, n, o] = v
                        yp[n, o] = v
        return yp

    @njit(**_jit)
    def _jordan_bwd_nb(dy, has_dy, g, w_ho, w_hy, hs, lengths, k, da, dyt):
        T, N, O = dyt.shape
        Hd = hs.shape[2]
        dh = np.empty((N, Hd), dtype=g.dtype)
        gp = np.empty((N, O), dtype=g.dtype)
        for t in range(T - 1, -1, -1):
            for n in range(N):
                if t < lengths[n]:
                    for o in range(O):
                        v = g[n, o]
                        if has_dy:
                            v += dy[t, n, o]
                        dyt[t, n, o] = v
            np.dot(dyt[t], w_ho, dh)
            for n in range(N):
                for j in range(Hd):
                    h = hs[t, n, j]
                    da[t, n, j] = dh[n, j] * (1.0 - h * h)
            np.dot(da[t], w_hy, gp)
            for n in range(N):
                if t < lengths[n]:
                    cut = k > 0 and t > 0 and t % k == 0
                    for o in range(O):
                        g[n, o] = 0 if cut else gp[n, o]
        return g


def _nb_jordan_forward(x, y0, w_ih, w_hy, b_h, w_ho, b_o, lengths=None):
    x, y0, w_ih, w_hy, b_h, w_ho, b_o, lengths, T, N, I, Hd, O = _check_jordan(
        x, y0, w_ih, w_hy, b_h, w_ho, b_o, lengths)
    dt = x.dtype
    xg = _input_projection(x, w_ih, b_h)
    yp = np.zeros((N, O), dt) if y0 is None else y0.copy()
    out = np.zeros((T, N, O), dt)
    hs = np.zeros((T, N, Hd), dt)
    yprev = np.zeros((T, N, O), dt)
    lens = np.full(N, T, np.int64) if lengths is None else lengths
    bo = np.zeros(O, dt) if b_o is None else b_o
    yp = _jordan_fwd_nb(xg, np.ascontiguousarray(w_hy.T), np.ascontiguousarray(w_ho.T), bo, yp,
                        lens, out, hs, yprev)
    return out, yp, {"h": hs, "yprev": yprev}


def _nb_jordan_backward(dw_ih, dw_hy, db_h, dw_ho, db_o, dy, dy_n, x, w_ih, w_hy, w_ho, cache,
                        lengths=None, bptt_steps=None):
    (x, w_ih, w_hy, w_ho, hs, yprev, dy, dy_n, lengths, k, T, N, I, Hd, O) = \
        _jordan_backward_common(dw_ih, dw_hy, db_h, dw_ho, db_o, dy, dy_n, x, w_ih, w_hy, w_ho,
                                cache, lengths, bptt_steps)
    dt = x.dtype
    lens = np.full(N, T, np.int64) if lengths is None else lengths
    g = np.zeros((N, O), dt) if dy_n is None else dy_n.copy()
    da = np.zeros((T, N, Hd), dt)
    dyt = np.zeros((T, N, O), dt)
    has_dy = dy is not None
    g = _jordan_bwd_nb(dy if has_dy else np.zeros((1, 1, 1), dt), has_dy, g, w_ho, w_hy, hs,
                       lens, k, da, dyt)
    dx = _jordan_param_grads(dw_ih, dw_hy, db_h, dw_ho, db_o, da, dyt, x, hs, yprev, w_ih)
    return dx, g


# =============================================================================================
# registrations
# =============================================================================================
def _make(cell):
    lstm = cell == "lstm"

    if lstm:
        def ref_fwd(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False):
            return _ref_sequence_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths,
                                         reverse)

        def ref_bwd(dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh, cache,
                    lengths=None, reverse=False, bptt_steps=None):
            return _ref_sequence_backward(cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x,
                                          w_ih, w_hh, cache, lengths, reverse, bptt_steps)

        def step_fwd(x, h_prev, c_prev, w_ih, w_hh, b_ih, b_hh):
            return _ref_step_forward(cell, x, h_prev, c_prev, w_ih, w_hh, b_ih, b_hh)

        def step_bwd(dw_ih, dw_hh, db_ih, db_hh, dh, dc, x, h_prev, c_prev, w_ih, w_hh, saved):
            return _ref_step_backward(cell, dw_ih, dw_hh, db_ih, db_hh, dh, dc, x, h_prev,
                                      c_prev, w_ih, w_hh, saved)
    else:
        def ref_fwd(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False):
            return _ref_sequence_forward(cell, x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths,
                                         reverse)

        def ref_bwd(dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, x, w_ih, w_hh, cache, lengths=None,
                    reverse=False, bptt_steps=None):
            return _ref_sequence_backward(cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, None, x,
                                          w_ih, w_hh, cache, lengths, reverse, bptt_steps)

        def step_fwd(x, h_prev, w_ih, w_hh, b_ih, b_hh):
            h, _, saved = _ref_step_forward(cell, x, h_prev, None, w_ih, w_hh, b_ih, b_hh)
            return h, saved

        def step_bwd(dw_ih, dw_hh, db_ih, db_hh, dh, x, h_prev, w_ih, w_hh, saved):
            return _ref_step_backward(cell, dw_ih, dw_hh, db_ih, db_hh, dh, None, x, h_prev,
                                      None, w_ih, w_hh, saved)

    registry.register(f"{cell}_sequence_forward", "numpy", 1, default=True,
                      doc="reference: one-GEMM input projection, per-step GEMM + NumPy gates")(
        ref_fwd)
    registry.register(f"{cell}_sequence_backward", "numpy", 1, default=True,
                      doc="reference BPTT: NumPy dh recursion, one-GEMM weight gradients")(
        ref_bwd)
    registry.register(f"{cell}_step_forward", "numpy", 1, default=True,
                      doc="reference: one time step, saves post-activation gates")(step_fwd)
    registry.register(f"{cell}_step_backward", "numpy", 1, default=True,
                      doc="reference: one step's backward, per-step outer-product dW")(step_bwd)

    if not _HAVE_NUMBA:  # pragma: no cover
        return
    docs = {1: "per-step Python loop: BLAS GEMM + one fused prange elementwise kernel per step",
            2: "whole time loop in ONE njit call: BLAS np.dot per step + fused prange gates",
            3: "as v2, but N<=8 runs one fused region per step (hand GEMV over unit blocks)",
            4: "N in 2..4 or >= 32: one whole time loop per batch slice and thread (1-thread "
               "BLAS, no per-step barrier); other N run v1's loop",
            5: "v4 with the forward elementwise step vectorised in float32 (polynomial exp, "
               "AVX2: ~4x faster gates); float64 runs as v4",
            6: "float32, N >= 2: W_hh packed once per call, per step ONE parallel region of a "
               "4x24 (AVX2) / 4x48 (AVX-512) register-tiled micro-kernel fused with the gates "
               "(forward and BPTT); "
               "float64 and N = 1 run as v5",
            7: "v6, and at N = 1 (float32) per step ONE parallel region of GEMVs streaming "
               "W_hh as stored, fused with the gates (forward and BPTT); float64 runs as v5",
            8: "v7, with the packed loops split by sentences where W_hh's panels fit a core's "
               "L2 (every thread runs all T steps of its sentences in ONE parallel region, "
               "no barrier per step)"}
    for v in (1, 2, 3, 4, 5, 6, 7, 8):
        if lstm:
            def nb_fwd(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False, _v=v):
                return _nb_forward(_v, cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse)

            def nb_bwd(dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh, cache,
                       lengths=None, reverse=False, bptt_steps=None, _v=v):
                return _nb_backward(_v, cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x,
                                    w_ih, w_hh, cache, lengths, reverse, bptt_steps)
        else:
            def nb_fwd(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False, _v=v):
                return _nb_forward(_v, cell, x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths,
                                   reverse)

            def nb_bwd(dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, x, w_ih, w_hh, cache, lengths=None,
                       reverse=False, bptt_steps=None, _v=v):
                return _nb_backward(_v, cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, None, x,
                                    w_ih, w_hh, cache, lengths, reverse, bptt_steps)
        registry.register(f"{cell}_sequence_forward", "numba", v, default=(v == 8),
                          doc=docs[v])(nb_fwd)
        registry.register(f"{cell}_sequence_backward", "numba", v, default=(v == 8),
                          doc=docs[v])(nb_bwd)


for _cell in CELLS:
    _make(_cell)

registry.register("jordan_sequence_forward", "numpy", 1, default=True,
                  doc="reference Jordan RNN forward (previous output feeds the hidden layer)")(
    _ref_jordan_forward)
registry.register("jordan_sequence_backward", "numpy", 1, default=True,
                  doc="reference Jordan RNN BPTT, one-GEMM weight gradients")(
    _ref_jordan_backward)
if _HAVE_NUMBA:
    registry.register("jordan_sequence_forward", "numba", 1, default=True,
                      doc="whole time loop in one njit call, BLAS np.dot per step")(
        _nb_jordan_forward)
    registry.register("jordan_sequence_backward", "numba", 1, default=True,
                      doc="whole BPTT loop in one njit call, one-GEMM weight gradients")(
        _nb_jordan_backward)
