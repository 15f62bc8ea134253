"""Persistent CUDA recurrent kernels: version 3 of ``{cell}_sequence_forward/_backward``.

# T steps, N batch, I input, Hd hidden, G gates (rnn 1, lstm 4, gru 3), B blocks, S units/block

Same ops, signatures, validation, cache dict and semantics (``lengths``, ``reverse``,
``bptt_steps``) as :mod:`kernels.recurrent`, on the ``cuda`` and ``cuda-emu`` backends; not the
default version. Source: ``kernels/cuda/recurrent_persistent.cu``.

v3 persistent (both directions): ONE cooperative launch runs all T steps. Each of B blocks owns
S = ceil(Hd / B) hidden units with all G gates of those units and keeps its part of ``W_hh`` in
shared memory for the whole sequence, loaded once; a grid-wide barrier separates the steps
(one per step: forward double-buffers h; backward keeps a dgh slot per step).

* forward: ``x @ W_ih^T + b_ih`` for all steps is one ``xp.matmul`` before the launch (as on the
  CPU); per step a block stages ``h_{t-1}`` in shared memory, computes its G*S rows of
  ``h_{t-1} @ W_hh^T`` (one warp per row, N accumulators per lane), applies the gates and writes
  y, the cache and its slice of ``h_t``.
* backward: per step a block turns dh_t (+ dy_t) of its units into the pre-activation gradients
  (and dc), then, after the grid barrier, its columns of ``dgh_t @ W_hh`` (``W_hh[:, slice]`` in
  shared memory) give dh_{t-1} of its units.  dW_ih, dW_hh, db_ih, db_hh and dx are then one
  ``xp.matmul`` / reduction each over all T*N rows (:func:`kernels.recurrent._param_grads`).
  The backward accepts the cache of any version (only keys and shapes matter).

Fit rule (checked before every launch, :func:`persistent_fits`): B = number of SMs on ``cuda``
(``EMU_VIRTUAL_SMS`` = 4 on ``cuda-emu``), at most 1 block per SM so that every block is resident
(required by the grid barrier); the dynamic shared memory of one block must not exceed the
device's opt-in maximum per block (227 KiB = 232448 bytes on H100/H200; the same number is used
for the emulator)::

    forward   bytes = sizeof(T) * (G*S*Hd + N*Hd + N*G*S)    # W_hh rows | h_{t-1} | h W^T
    backward  bytes = sizeof(T) * (S*G*Hd + N*RC + P*N*S)    # W_hh columns | dgh chunk | sums

(RC >= 32 rows of dgh[t] per chunk: the backward stages dgh[t] through shared memory so each
block reads it from L2 once per step; RC grows to fill the shared memory left, up to G*Hd;
P = max(1, warps // S) warps share a column's dot products)
and N <= 8 (``MAX_N``: one register accumulator per sentence). Largest Hd that fits, float32,
132 SMs, 232448 bytes (float64 roughly Hd / sqrt(2))::

    cell            forward N=1   forward N=8   backward N=1   backward N=8
    rnn_tanh/relu      2640          2244           2764           2747
    gru                1569          1410           1584           1584
    lstm               1320          1204           1320           1320

Beyond that (or N > 8) v3 raises ValueError naming the limit (a benchmark row labelled v3 is
always the persistent kernel). Version 4 is the same kernel with the fallback: it runs v3 where
:func:`persistent_fits` says the direction fits and version 1 (cuBLAS GEMM per step plus the
fused gate kernel, the fastest non-persistent version on an H200) beyond it. Both directions
decide separately; the cache format is shared, so a v1 forward cache feeds a v3 backward.

Grid barrier: ``seqgrid_grid_sync()`` from the loader's prelude (an atomic arrival counter and
a generation word, see :data:`kernels.cuda.loader.NVRTC_GRID_SYNC_PRELUDE`); the loader compiles
the module with CuPy's ``enable_cooperative_groups=True``, so the launch is a cooperative one
(``cuLaunchCooperativeKernel``), which fails instead of deadlocking if the blocks cannot all be
resident. The emulator runs every block of such a launch on its own OS thread.

Measured on an H200 (CuPy 14.2, 132 blocks x 512 threads, float32, I=256; per step = the
difference between T=1000 and T=100 over 900 steps, CUDA events): the bare grid barrier alone
costs ~2.0 us per sync. lstm Hd=1024: N=1 forward 9.7 / backward 16.4 us per step, N=8 14.5 /
35.8; gru Hd=1024 N=8 13.1 / 26.7; rnn_tanh Hd=2048 N=8 15.9 / 24.8; lstm Hd=256 N=8 6.0 / 10.9.
Whole call at T=100, lstm Hd=1024 N=8: 1.6 ms forward, against 32 ms for a CuPy loop of one
cuBLAS GEMM plus unfused elementwise kernels per step. (These per-step numbers predate the
staging change below.)

Staging (``rp_stage``): the backward copies all of dgh[t] (N x G*Hd) into shared memory every
step; its element -> (row, column) mapping divided per element (63 divisions per thread and step
for the lstm at N=8, Hd=1000) and kept 8 loads in flight. One division per thread and 16 loads
in flight (2026-11-27): speech-shape training step (T=100, Hd=1000) on an H200, lstm N=8 6.00
-> 4.53 ms (0.85x -> 1.27x cuDNN, measured beside it in each run), lstm N=1 1.32x, gru N=8
1.31x, rnn_relu N=8 2.06x.

Launch overhead (H100 host, speech shape T=100 Hd=1000): the host's time per forward call,
before and during which the GPU idles, was 0.29-0.42 ms, a fifth of the call at N=1. Reading
every device attribute per call (``Device.attributes``), pathlib resolution and a new kernel
object per call in the loader, a host-to-device copy of the all-T lengths and copies of h0 / c0
are gone (cached, or read in place by step 0): 0.13-0.17 ms now.
"""
from __future__ import annotations

import functools

import numpy as np

from . import recurrent as rec
from . import recurrent_cuda  # noqa: F401  (v1, the fallback; registered first, default after)
from .cuda.common import ctype, device_lengths, device_xp, register_cuda
from .registry import set_default
from .cuda.loader import load_module

MAX_N = 8                      # RP_MAXN in recurrent_persistent.cu
EMU_VIRTUAL_SMS = 4            # blocks of an emulated launch (>= 2 so the grid barrier is used)
DEFAULT_SMS = 132              # H100 SXM / H200; used by persistent_fits without a GPU
DEFAULT_SMEM_OPTIN = 232448    # 227 KiB: opt-in dynamic shared memory per block, sm_90
THREADS = {"cuda": 512, "cuda-emu": 64}   # 16 warps: latency of the per-step chains
CHUNK_MIN = 32                 # backward: fewest dgh rows staged per shared-memory chunk
CHUNK_CAP = {"cuda-emu": 32}   # the emulator uses the smallest chunk so tests cross chunks
_CU_FILE = "recurrent_persistent.cu"
_CU_TEMPLATES = tuple(f"rnn_persistent_{d}<{t}>" for d in ("fwd", "bwd")
                      for t in ("float", "double"))
_I32_MAX = 2**31 - 1


# =============================================================================================
# fit rule
# =============================================================================================
def device_limits(backend: str) -> tuple[int, int, str]:
    """``(blocks, shared bytes per block, where from)`` for a persistent launch on ``backend``.

    ``cuda``: the current device's multiprocessor count and opt-in maximum dynamic shared
    memory per block when CuPy sees a GPU, else the H100/H200 numbers (132, 232448).
    ``cuda-emu``: ``EMU_VIRTUAL_SMS`` blocks and the H100/H200 shared-memory limit.
    """
    if backend == "cuda-emu":
        return EMU_VIRTUAL_SMS, DEFAULT_SMEM_OPTIN, "emulator: 4 virtual SMs, 227 KiB"
    if backend != "cuda":
        raise ValueError(f"backend: expected 'cuda' or 'cuda-emu', got {backend!r}")
    try:
        import cupy
        dev_id = cupy.cuda.Device().id
    except Exception:  # no CuPy / no GPU: plan with the documented H100/H200 numbers
        return DEFAULT_SMS, DEFAULT_SMEM_OPTIN, "no GPU visible: assuming 132 SMs, 227 KiB"
    return _device_limits(dev_id)


@functools.lru_cache(maxsize=None)
def _device_limits(dev_id: int) -> tuple[int, int, str]:
    """Two attributes of device ``dev_id``, read once per process: the launchers ask on every
    call, and the GPU idles while the host asks (inside the caller's timing)."""
    import cupy
    rt = cupy.cuda.runtime      # cudaDevAttrMultiProcessorCount = 16, ...PerBlockOptin = 97
    sms, smem = rt.deviceGetAttribute(16, dev_id), rt.deviceGetAttribute(97, dev_id)
    return int(sms), int(smem), f"device {dev_id}: {sms} SMs, {smem} B shared/block"


def _geometry(Hd: int, blocks: int) -> tuple[int, int]:
    """``(S, B)``: units per block and blocks actually launched (every block owns >= 1 unit)."""
    S = -(-Hd // blocks)
    return S, -(-Hd // S)


def _parts(S: int, warps: int) -> int:
    """Warps per column in the backward's phase B (P)."""
    return max(1, warps // S)


def shared_bytes(cell: str, N: int, Hd: int, dtype, direction: str, blocks: int,
                 warps: int = THREADS["cuda"] // 32) -> int:
    """Dynamic shared memory per block of the forward / backward persistent kernel (the
    backward with its smallest dgh chunk, ``CHUNK_MIN`` rows)."""
    G = rec.GATES[cell]
    sz = np.dtype(dtype).itemsize
    S, _ = _geometry(Hd, blocks)
    if direction == "forward":
        return sz * (G * S * Hd + N * Hd + N * G * S)
    return sz * (S * G * Hd + N * CHUNK_MIN + _parts(S, warps) * N * S)


def _bwd_chunk(backend, N, Hd, G, S, itemsize, smem):
    """Rows of dgh[t] per shared-memory chunk of the backward (``RC``), warps per column
    (``P``) and the bytes that makes: RC as many as the shared memory left over allows, a
    multiple of 32, at most G*Hd (rounded up to 32), at most ``CHUNK_CAP[backend]``."""
    P = _parts(S, THREADS[backend] // 32)
    left = smem - itemsize * (S * G * Hd + P * N * S)
    rc = min(-(-(G * Hd) // 32) * 32, (left // (itemsize * N)) // 32 * 32)
    if CHUNK_CAP.get(backend):
        rc = min(rc, CHUNK_CAP[backend])
    rc = max(rc, CHUNK_MIN)
    return rc, P, itemsize * (S * G * Hd + N * rc + P * N * S)


def persistent_fits(cell: str, N: int, Hd: int, dtype=np.float32, backend: str = "cuda",
                    direction: str = "both") -> tuple[bool, str]:
    """Whether version 3 can run ``cell`` with batch ``N`` and hidden size ``Hd``.

    Parameters
    ----------
    cell : {"rnn_tanh", "rnn_relu", "lstm", "gru"}
    N : int
        sentences per launch (at most ``MAX_N`` = 8).
    Hd : int
        hidden size.
    dtype : float32 or float64
    backend : {"cuda", "cuda-emu"}
        ``cuda`` queries the current GPU (or assumes an H100/H200 without one).
    direction : {"forward", "backward", "both"}

    Returns
    -------
    (bool, str)
        ``(True, summary)`` or ``(False, the limit that is exceeded)``.
    """
    if cell not in rec.GATES:
        raise ValueError(f"cell: expected one of {rec.CELLS}, got {cell!r}")
    if direction not in ("forward", "backward", "both"):
        raise ValueError(f"direction: expected 'forward', 'backward' or 'both', got {direction!r}")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype: expected float32 or float64, got {np.dtype(dtype)}")
    N, Hd = int(N), int(Hd)
    if N < 1 or Hd < 1:
        return False, f"N and Hd must be >= 1, got N={N}, Hd={Hd}"
    if N > MAX_N:
        return False, (f"N={N} sentences > {MAX_N}: the persistent kernel keeps one register "
                       f"accumulator per sentence (at most {MAX_N}); use version 1 or 2")
    blocks, smem, where = device_limits(backend)
    S, B = _geometry(Hd, blocks)
    dirs = ("forward", "backward") if direction == "both" else (direction,)
    for d in dirs:
        need = shared_bytes(cell, N, Hd, dtype, d, blocks, THREADS[backend] // 32)
        if need > smem:
            return False, (f"{cell} {d} with Hd={Hd}, N={N}, {np.dtype(dtype)}: W_hh slice of "
                           f"{rec.GATES[cell]}*{S} rows x {Hd} needs {need} bytes of shared "
                           f"memory per block across {B} blocks, more than the {smem} bytes "
                           f"available ({where}); use version 1 or 2")
    need = max(shared_bytes(cell, N, Hd, dtype, d, blocks, THREADS[backend] // 32) for d in dirs)
    return True, f"{B} blocks x {S} units, {need} bytes shared memory per block ({where})"


def max_hidden(cell: str, N: int = 1, dtype=np.float32, backend: str = "cuda",
               direction: str = "both") -> int:
    """Largest Hd such that every hidden size up to it fits (see :func:`persistent_fits`);
    0 when N is out of range."""
    if not 1 <= int(N) <= MAX_N:
        return 0
    blocks, smem, _ = device_limits(backend)
    dirs = ("forward", "backward") if direction == "both" else (direction,)
    hd = 0
    while all(shared_bytes(cell, N, hd + 1, dtype, d, blocks, THREADS[backend] // 32) <= smem
              for d in dirs):
        hd += 1
    return hd


def _require_fit(cell, N, Hd, dtype, backend, direction):
    ok, why = persistent_fits(cell, N, Hd, dtype, backend, direction)
    if not ok:
        raise ValueError(f"{cell}_sequence_{direction} v3 (persistent): {why}")
    blocks, smem, _ = device_limits(backend)
    S, B = _geometry(Hd, blocks)
    return S, B, shared_bytes(cell, N, Hd, dtype, direction, blocks, THREADS[backend] // 32)


# =============================================================================================
# validation: the CPU versions' checks on the backend's array module (CuPy on "cuda")
# =============================================================================================
def _check_forward(backend, cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths):
    return rec._check_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths,
                              xp=device_xp(backend))


def _check_backward(backend, cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh,
                    cache, lengths, bptt_steps):
    return rec._check_backward(cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh,
                               cache, lengths, bptt_steps, xp=device_xp(backend))


def _check_i32(cell, T, N, G, Hd):
    if T * N * G * Hd > _I32_MAX or G * Hd > _I32_MAX:
        raise ValueError(f"{cell} v3 (persistent): T*N*G*Hd = {T * N * G * Hd} > 2^31-1")


def _kernel(backend, direction, dtype):
    mod = load_module(_CU_FILE, backend, name_expressions=_CU_TEMPLATES)
    return mod.get_function(f"rnn_persistent_{'fwd' if direction == 'forward' else 'bwd'}"
                            f"<{ctype(dtype)}>")


# =============================================================================================
# launchers
# =============================================================================================
def _forward(backend, cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse):
    xp = device_xp(backend)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, T, N, G, Hd = _check_forward(
        backend, cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths)
    S, B, smem = _require_fit(cell, N, Hd, x.dtype, backend, "forward")
    _check_i32(cell, T, N, G, Hd)
    dt = x.dtype
    xg = xp.ascontiguousarray(rec._input_projection(x, w_ih, b_ih))   # ONE GEMM, all steps
    hbuf = xp.empty((2, N, Hd), dt)      # step 0 reads h0 itself: no copy into hbuf[0]
    if h0 is None:
        h0 = xp.zeros((N, Hd), dt)
    lstm = cell == "lstm"
    if lstm:                               # step 0 reads c0, the kernel writes c
        c = xp.empty((N, Hd), dt)
        c0 = xp.zeros((N, Hd), dt) if c0 is None else c0
    else:
        c = c0 = hbuf                      # never touched for rnn / gru cells
    y = xp.empty((T, N, Hd), dt)
    cache = {"hprev": xp.empty((T, N, Hd), dt)}
    if cell in ("rnn_tanh", "rnn_relu"):
        cache["gates"] = y                 # post-activation h is the output (as the reference)
        aux1 = aux2 = y                    # never touched for rnn cells
    else:
        cache["gates"] = xp.empty((T, N, G * Hd), dt)
        if lstm:
            cache["cprev"] = aux1 = xp.empty((T, N, Hd), dt)
            cache["tanh_c"] = aux2 = xp.empty((T, N, Hd), dt)
        else:
            cache["hn"] = aux1 = xp.empty((T, N, Hd), dt)
            aux2 = aux1
    bhh = xp.zeros(G * Hd, dt) if b_hh is None else b_hh
    lens = device_lengths(xp, lengths, T, N)
    _kernel(backend, "forward", dt)(
        (B,), (THREADS[backend],),
        (y, cache["hprev"], cache["gates"], aux1, aux2, h0, hbuf, c0, c, xg, w_hh, bhh, lens,
         np.int32(rec._CODE[cell]), np.int32(T), np.int32(N), np.int32(Hd), np.int32(S),
         np.int32(1 if reverse else 0)),
        shared_mem=smem)
    h_n = hbuf[T & 1]                      # a view: hbuf is this call's own scratch
    if lstm:
        return y, h_n, c, cache
    return y, h_n, cache


def _backward(backend, cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh, cache,
              lengths, reverse, bptt_steps):
    xp = device_xp(backend)
    (x, w_ih, w_hh, cache, dy, dh_n, dc_n, lengths, k, T, N, G, Hd) = _check_backward(
        backend, cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh, cache,
        lengths, bptt_steps)
    S, B, _ = _require_fit(cell, N, Hd, x.dtype, backend, "backward")
    RC, P, smem = _bwd_chunk(backend, N, Hd, G, S, x.dtype.itemsize, device_limits(backend)[1])
    _check_i32(cell, T, N, G, Hd)
    dt = x.dtype
    lstm, gru = cell == "lstm", cell == "gru"
    dh = xp.zeros((N, Hd), dt) if dh_n is None else dh_n.copy()
    dc = (xp.zeros((N, Hd), dt) if dc_n is None else dc_n.copy()) if lstm else dh
    dgx = xp.empty((T, N, G * Hd), dt)          # every (t, n, row) is written by the kernel
    dgh = xp.empty((T, N, G * Hd), dt) if gru else dgx
    dtmp = xp.empty((N, Hd), dt)
    aux1 = cache["cprev"] if lstm else (cache["hn"] if gru else cache["hprev"])
    aux2 = cache["tanh_c"] if lstm else aux1
    lens = device_lengths(xp, lengths, T, N)
    _kernel(backend, "backward", dt)(
        (B,), (THREADS[backend],),
        (dgx, dgh, dh, dc, dtmp, dh if dy is None else dy, cache["hprev"], cache["gates"],
         aux1, aux2, w_hh, lens, np.int32(rec._CODE[cell]), np.int32(T), np.int32(N),
         np.int32(Hd), np.int32(S), np.int32(RC), np.int32(P), np.int32(1 if reverse else 0),
         np.int32(k), np.int32(0 if dy is None else 1), np.int32(1 if gru else 0)),
        shared_mem=smem)
    dx = rec._param_grads(dw_ih, dw_hh, db_ih, db_hh, dgx, dgh, x, cache["hprev"], w_ih)
    if lstm:
        return dx, dh, dc
    return dx, dh


# =============================================================================================
# registrations
# =============================================================================================
_DOC = ("persistent: ONE cooperative launch for all T steps, W_hh slice in shared memory per "
        "block, one grid sync per step; N<=8 and Hd within the shared-memory fit "
        "(persistent_fits)")


def _register(cell):
    if cell == "lstm":
        @register_cuda("lstm_sequence_forward", 3, doc=_DOC)
        def _make_fwd(backend):
            def fwd(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False):
                return _forward(backend, cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths,
                                reverse)
            return fwd

        @register_cuda("lstm_sequence_backward", 3, doc=_DOC)
        def _make_bwd(backend):
            def bwd(dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh, cache,
                    lengths=None, reverse=False, bptt_steps=None):
                return _backward(backend, cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x,
                                 w_ih, w_hh, cache, lengths, reverse, bptt_steps)
            return bwd
    else:
        @register_cuda(f"{cell}_sequence_forward", 3, doc=_DOC)
        def _make_fwd(backend):
            def fwd(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False):
                return _forward(backend, cell, x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths,
                                reverse)
            return fwd

        @register_cuda(f"{cell}_sequence_backward", 3, doc=_DOC)
        def _make_bwd(backend):
            def bwd(dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, x, w_ih, w_hh, cache, lengths=None,
                    reverse=False, bptt_steps=None):
                return _backward(backend, cell, dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, None, x,
                                 w_ih, w_hh, cache, lengths, reverse, bptt_steps)
            return bwd


for _cell in rec.CELLS:
    _register(_cell)


# =============================================================================================
# version 4: persistent where it fits, version 1 beyond (checked per call and per direction)
# =============================================================================================
_FALLBACK_VERSION = 1
_DOC_FALLBACK = ("persistent (v3) where persistent_fits says it fits, else v1 (cuBLAS per step "
                 "+ fused gates): N<=8 and Hd within the shared-memory fit run persistent")


def _chosen_version(backend, cell, N, Hd, dtype, direction):
    ok, _ = persistent_fits(cell, N, Hd, dtype, backend, direction)
    return 3 if ok else _FALLBACK_VERSION


def _dispatch(backend, cell, direction, x, w_hh, call):
    """``call(version)`` with version 3 where ``direction`` fits, else the fallback."""
    version = _FALLBACK_VERSION
    # a malformed x / w_hh goes to the fallback, whose checks name the bad argument
    if (getattr(x, "ndim", 0) == 3 and getattr(w_hh, "ndim", 0) == 2
            and np.dtype(x.dtype) in (np.float32, np.float64)):
        version = _chosen_version(backend, cell, x.shape[1], w_hh.shape[1], x.dtype, direction)
    return call(version)


def _register_fallback(cell):
    from .registry import get
    fwd_op, bwd_op = f"{cell}_sequence_forward", f"{cell}_sequence_backward"
    if cell == "lstm":
        @register_cuda(fwd_op, 4, doc=_DOC_FALLBACK)
        def _make_fwd(backend):
            def fwd(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False):
                return _dispatch(backend, cell, "forward", x, w_hh, lambda v: get(
                    fwd_op, backend, v)(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=lengths,
                                        reverse=reverse))
            return fwd

        @register_cuda(bwd_op, 4, doc=_DOC_FALLBACK)
        def _make_bwd(backend):
            def bwd(dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih, w_hh, cache,
                    lengths=None, reverse=False, bptt_steps=None):
                return _dispatch(backend, cell, "backward", x, w_hh, lambda v: get(
                    bwd_op, backend, v)(dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, dc_n, x, w_ih,
                                        w_hh, cache, lengths=lengths, reverse=reverse,
                                        bptt_steps=bptt_steps))
            return bwd
    else:
        @register_cuda(fwd_op, 4, doc=_DOC_FALLBACK)
        def _make_fwd(backend):
            def fwd(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False):
                return _dispatch(backend, cell, "forward", x, w_hh, lambda v: get(
                    fwd_op, backend, v)(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=lengths,
                                        reverse=reverse))
            return fwd

        @register_cuda(bwd_op, 4, doc=_DOC_FALLBACK)
        def _make_bwd(backend):
            def bwd(dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, x, w_ih, w_hh, cache, lengths=None,
                    reverse=False, bptt_steps=None):
                return _dispatch(backend, cell, "backward", x, w_hh, lambda v: get(
                    bwd_op, backend, v)(dw_ih, dw_hh, db_ih, db_hh, dy, dh_n, x, w_ih, w_hh,
                                        cache, lengths=lengths, reverse=reverse,
                                        bptt_steps=bptt_steps))
            return bwd


for _cell in rec.CELLS:
    _register_fallback(_cell)
    # the default on a real GPU (H200: 1.4-3.7x v1 at N <= 8, v1 itself beyond); cuda-emu keeps
    # v1, whose emulation needs no OS thread per block
    for _d in ("forward", "backward"):
        set_default(f"{_cell}_sequence_{_d}", "cuda", 4)
