"""Persistent recurrent kernels (version 3, kernels/recurrent_persistent.py +
kernels/cuda/recurrent_persistent.cu) on "cuda-emu" (always, where g++ exists) and "cuda"
(skipped with the reason without a GPU) vs the NumPy reference: forward and backward of every
cell, float32/float64, lengths, reverse, truncated BPTT, no bias / no initial state, a chain
forward v3 -> backward v3, the backward on another version's cache, and the fit rule
(``persistent_fits``, the N > 8 and "W_hh does not fit" errors).

Hidden sizes 8 and 13 with the emulator's 4 virtual SMs give 4 blocks of 2 units and 4 blocks of
4 / 4 / 4 / 1 units: several blocks, so every step crosses the grid barrier, and a partial
last block. Also run once under ``SEQGRID_EMU_REVERSE=1`` and ``SEQGRID_EMU_ASAN=1`` (with
``kernels.cuda.emu.asan_env()``).
"""
import numpy as np
import pytest

import kernels.recurrent_persistent as rp
from kernels import registry
from kernels.recurrent import CELLS, GATES
from util import assert_close

BACKENDS = ["cuda-emu", "cuda"]
DTYPES = [np.float32, np.float64]
# (T, N, I, Hd)
SHAPES = [(5, 1, 6, 8), (3, 3, 4, 13)]
TOL32 = dict(atol=2e-5, rtol=1e-4)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    ok, why = registry.backend_status()[request.param]
    if not ok:
        pytest.skip(why)
    return request.param


def dev(backend, a):
    if a is None or backend != "cuda":
        return a
    import cupy
    return cupy.asarray(a)


def host(backend, a):
    if backend == "cuda":
        return a.get()
    assert isinstance(a, np.ndarray), type(a)
    return a


def tol(dtype):
    return TOL32 if np.dtype(dtype) == np.float32 else {}


def _problem(cell, T, N, I, Hd, dtype, seed=0, bias=True, state=True):
    rng = np.random.default_rng(seed)
    G = GATES[cell]

    def r(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    p = dict(x=r(T, N, I), h0=r(N, Hd) if state else None,
             c0=r(N, Hd) if (state and cell == "lstm") else None,
             w_ih=r(G * Hd, I, scale=0.4), w_hh=r(G * Hd, Hd, scale=0.4),
             b_ih=r(G * Hd) if bias else None, b_hh=r(G * Hd) if bias else None)
    return p


def _fwd_args(cell, p):
    if cell == "lstm":
        return (p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    return (p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])


def _lengths(N, T, with_lengths):
    if not with_lengths:
        return None
    return np.array([T, max(1, T - 2), max(1, T - 1)][:N] if N > 1 else [max(1, T - 2)])


def _compare_forward(backend, cell, out, ref):
    names = ["y", "h_n"] + (["c_n"] if cell == "lstm" else [])
    dtype = ref[0].dtype
    for name, a, b in zip(names, out[:-1], ref[:-1]):
        assert_close(f"{cell} {name}", host(backend, a), b, **tol(dtype))
    cache, rcache = out[-1], ref[-1]
    assert set(cache) == set(rcache), (sorted(cache), sorted(rcache))
    for k in rcache:
        assert cache[k].shape == rcache[k].shape, k
        assert_close(f"{cell} cache[{k!r}]", host(backend, cache[k]), rcache[k], **tol(dtype))


def _lift(backend, p):
    return {k: dev(backend, v) for k, v in p.items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("with_lengths,reverse", [(False, False), (True, False), (True, True),
                                                  (False, True)])
def test_forward_matches_reference(backend, cell, shape, dtype, with_lengths, reverse):
    T, N, I, Hd = shape
    assert rp._geometry(Hd, rp.EMU_VIRTUAL_SMS)[1] >= 2    # the grid barrier is exercised
    p = _problem(cell, T, N, I, Hd, dtype)
    lengths = _lengths(N, T, with_lengths)
    ref = registry.get(f"{cell}_sequence_forward", "numpy", 1)(
        *_fwd_args(cell, p), lengths=lengths, reverse=reverse)
    fwd = registry.get(f"{cell}_sequence_forward", backend, 3)
    out = fwd(*_fwd_args(cell, _lift(backend, p)), lengths=lengths, reverse=reverse)
    _compare_forward(backend, cell, out, ref)


@pytest.mark.parametrize("cell", CELLS)
def test_forward_reads_but_never_writes_the_initial_state(backend, cell):
    """Step 0 reads h0 (and c0) in place, without the launcher's copy: they must come back
    unchanged, also when a reversed short sentence's first step is padding (c carries c0),
    and a second call with the same inputs gives the same outputs."""
    p = _lift(backend, _problem(cell, 5, 3, 4, 11, np.float64, seed=7))
    before = {k: host(backend, p[k]).copy() for k in ("h0", "c0") if p[k] is not None}
    fwd = registry.get(f"{cell}_sequence_forward", backend, 3)
    lengths = np.array([5, 2, 1])
    first = fwd(*_fwd_args(cell, p), lengths=lengths, reverse=True)
    second = fwd(*_fwd_args(cell, p), lengths=lengths, reverse=True)
    for k, v in before.items():
        assert np.array_equal(host(backend, p[k]), v), f"{k} was modified"
    for a, b in zip(first[:-1], second[:-1]):
        assert np.array_equal(host(backend, a), host(backend, b))
    ref = registry.get(f"{cell}_sequence_forward", "numpy", 1)(
        *_fwd_args(cell, {k: (None if v is None else host(backend, v)) for k, v in p.items()}),
        lengths=lengths, reverse=True)
    _compare_forward(backend, cell, first, ref)


@pytest.mark.parametrize("cell", CELLS)
def test_forward_without_bias_and_state(backend, cell):
    p = _problem(cell, 4, 3, 5, 13, np.float64, seed=3, bias=False, state=False)
    ref = registry.get(f"{cell}_sequence_forward", "numpy", 1)(*_fwd_args(cell, p))
    out = registry.get(f"{cell}_sequence_forward", backend, 3)(*_fwd_args(cell, _lift(backend, p)))
    _compare_forward(backend, cell, out, ref)


def _bwd_case(cell, T, N, Hd, dtype, seed, with_dy=True, with_dh=True):
    rng = np.random.default_rng(seed + 100)
    dy = rng.standard_normal((T, N, Hd)).astype(dtype) if with_dy else None
    dh_n = rng.standard_normal((N, Hd)).astype(dtype) if with_dh else None
    dc_n = rng.standard_normal((N, Hd)).astype(dtype) if (with_dh and cell == "lstm") else None
    return dy, dh_n, dc_n


def _grads(p, seed):
    """Non-zero starting parameter gradients: the kernels must ACCUMULATE into them."""
    rng = np.random.default_rng(seed + 7)
    return [rng.standard_normal(p[k].shape).astype(p[k].dtype) if p[k] is not None else
            rng.standard_normal(p["w_hh"].shape[0]).astype(p["w_hh"].dtype)
            for k in ("w_ih", "w_hh", "b_ih", "b_hh")]


def _run_backward(backend, cell, version, grads, dy, dh_n, dc_n, p, cache, lengths, reverse,
                  bptt):
    b = registry.get(f"{cell}_sequence_backward", backend, version)
    grads = [dev(backend, g) for g in grads]
    args = (dy, dh_n, dc_n) if cell == "lstm" else (dy, dh_n)
    args = tuple(dev(backend, a) for a in args)
    out = b(*grads, *args, dev(backend, p["x"]), dev(backend, p["w_ih"]), dev(backend, p["w_hh"]),
            {k: dev(backend, v) for k, v in cache.items()}, lengths=lengths, reverse=reverse,
            bptt_steps=bptt)
    return [host(backend, o) for o in out], [host(backend, g) for g in grads]


def _compare_backward(backend, cell, got, ref, dtype):
    names = ["dx", "dh0"] + (["dc0"] if cell == "lstm" else [])
    for name, a, b in zip(names, got[0], ref[0]):
        assert_close(f"{cell} {name}", a, b, **tol(dtype))
    for name, a, b in zip(("dw_ih", "dw_hh", "db_ih", "db_hh"), got[1], ref[1]):
        assert_close(f"{cell} {name}", a, b, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("with_lengths,reverse,bptt", [(False, False, None), (True, False, None),
                                                       (True, True, None), (True, False, 2),
                                                       (True, True, 2), (False, True, 0)])
def test_backward_matches_reference(backend, cell, shape, dtype, with_lengths, reverse, bptt):
    """Backward v3 on the reference's cache (any version's cache must do)."""
    T, N, I, Hd = shape
    p = _problem(cell, T, N, I, Hd, dtype, seed=1)
    lengths = _lengths(N, T, with_lengths)
    fwd = registry.get(f"{cell}_sequence_forward", "numpy", 1)
    cache = fwd(*_fwd_args(cell, p), lengths=lengths, reverse=reverse)[-1]
    dy, dh_n, dc_n = _bwd_case(cell, T, N, Hd, dtype, 1)
    g0 = _grads(p, 1)
    ref = _run_backward("numpy", cell, 1, [g.copy() for g in g0], dy, dh_n, dc_n, p, cache,
                        lengths, reverse, bptt)
    got = _run_backward(backend, cell, 3, [g.copy() for g in g0], dy, dh_n, dc_n, p, cache,
                        lengths, reverse, bptt)
    _compare_backward(backend, cell, got, ref, dtype)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("with_dy,with_dh", [(False, True), (True, False)])
def test_backward_optional_gradients(backend, cell, with_dy, with_dh):
    T, N, I, Hd = 4, 3, 5, 8
    p = _problem(cell, T, N, I, Hd, np.float64, seed=2)
    cache = registry.get(f"{cell}_sequence_forward", "numpy", 1)(*_fwd_args(cell, p))[-1]
    dy, dh_n, dc_n = _bwd_case(cell, T, N, Hd, np.float64, 2, with_dy, with_dh)
    g0 = _grads(p, 2)
    ref = _run_backward("numpy", cell, 1, [g.copy() for g in g0], dy, dh_n, dc_n, p, cache,
                        None, False, None)
    got = _run_backward(backend, cell, 3, [g.copy() for g in g0], dy, dh_n, dc_n, p, cache,
                        None, False, None)
    _compare_backward(backend, cell, got, ref, np.float64)


@pytest.mark.parametrize("cell", CELLS)
def test_forward_then_backward_v3_chain(backend, cell):
    """A layer's use: forward v3 -> its cache -> backward v3, all on the device."""
    T, N, I, Hd = 5, 3, 4, 13
    lengths = np.array([5, 2, 4])
    p = _problem(cell, T, N, I, Hd, np.float64, seed=4)
    ref_c = registry.get(f"{cell}_sequence_forward", "numpy", 1)(
        *_fwd_args(cell, p), lengths=lengths, reverse=True)[-1]
    out = registry.get(f"{cell}_sequence_forward", backend, 3)(
        *_fwd_args(cell, _lift(backend, p)), lengths=lengths, reverse=True)
    dy, dh_n, dc_n = _bwd_case(cell, T, N, Hd, np.float64, 4)
    g0 = _grads(p, 4)
    ref = _run_backward("numpy", cell, 1, [g.copy() for g in g0], dy, dh_n, dc_n, p, ref_c,
                        lengths, True, None)
    got = _run_backward(backend, cell, 3, [g.copy() for g in g0], dy, dh_n, dc_n, p,
                        {k: host(backend, v) for k, v in out[-1].items()}, lengths, True, None)
    _compare_backward(backend, cell, got, ref, np.float64)


# ---------------------------------------------------------------------------------------------
# fit rule and errors
# ---------------------------------------------------------------------------------------------
def test_n_above_8_is_a_clear_error(backend):
    p = _problem("gru", 2, 9, 3, 8, np.float32)
    with pytest.raises(ValueError, match=r"N=9 sentences > 8"):
        registry.get("gru_sequence_forward", backend, 3)(*_fwd_args("gru", _lift(backend, p)))


def test_hidden_size_that_does_not_fit_is_a_clear_error():
    Hd = rp.max_hidden("lstm", 1, np.float64, "cuda-emu") + 1
    ok, why = rp.persistent_fits("lstm", 1, Hd, np.float64, "cuda-emu")
    assert not ok and "shared memory" in why and f"Hd={Hd}" in why
    p = _problem("lstm", 1, 1, 2, Hd, np.float64)
    with pytest.raises(ValueError, match=r"lstm_sequence_forward v3 \(persistent\).*shared memory"):
        registry.get("lstm_sequence_forward", "cuda-emu", 3)(*_fwd_args("lstm", p))


def test_persistent_fits_and_documented_limits():
    # the table in the module docstring: float32, 132 SMs, 232448 bytes per block
    blocks, smem = rp.DEFAULT_SMS, rp.DEFAULT_SMEM_OPTIN
    assert (blocks, smem) == (132, 232448)

    def limit(cell, N, direction):
        hd = 0
        while rp.shared_bytes(cell, N, hd + 1, np.float32, direction, blocks) <= smem:
            hd += 1
        return hd

    assert limit("rnn_tanh", 1, "forward") == 2640 and limit("rnn_tanh", 8, "forward") == 2244
    assert limit("gru", 1, "forward") == 1569 and limit("gru", 8, "forward") == 1410
    assert limit("lstm", 1, "forward") == 1320 and limit("lstm", 8, "forward") == 1204
    assert limit("rnn_relu", 1, "backward") == 2764 and limit("rnn_relu", 8, "backward") == 2747
    assert limit("gru", 8, "backward") == 1584 and limit("lstm", 8, "backward") == 1320
    ok, why = rp.persistent_fits("lstm", 8, 9, np.float32, "cuda-emu")
    assert ok and "blocks" in why
    ok, why = rp.persistent_fits("rnn_tanh", 9, 8, np.float32, "cuda-emu")
    assert not ok and "N=9" in why
    assert rp.max_hidden("gru", 9, backend="cuda-emu") == 0
    assert rp.max_hidden("lstm", 8, np.float32, "cuda-emu", "forward") >= 13
    with pytest.raises(ValueError, match="cell"):
        rp.persistent_fits("elman", 1, 8)
    with pytest.raises(ValueError, match="direction"):
        rp.persistent_fits("gru", 1, 8, direction="sideways")


def test_registered_as_version_3_and_4_with_4_the_gpu_default():
    for cell in CELLS:
        for d in ("forward", "backward"):
            op = f"{cell}_sequence_{d}"
            for be in ("cuda", "cuda-emu"):
                assert {3, 4} <= set(registry.versions(op, be)), (op, be)
            assert registry.default_version(op, "cuda") == 4
            assert registry.default_version(op, "cuda-emu") == 1


def test_argument_errors_name_the_argument():
    p = _problem("lstm", 3, 2, 4, 8, np.float32)
    bad = dict(p, w_hh=p["w_hh"][:-1])
    with pytest.raises(ValueError, match="w_hh"):
        registry.get("lstm_sequence_forward", "cuda-emu", 3)(*_fwd_args("lstm", bad))
    with pytest.raises(ValueError, match="lengths"):
        registry.get("lstm_sequence_forward", "cuda-emu", 3)(*_fwd_args("lstm", p),
                                                               lengths=[4, 1])
    with pytest.raises(ValueError, match="cache"):
        registry.get("lstm_sequence_backward", "cuda-emu", 3)(
            None, None, None, None, None, None, None, p["x"], p["w_ih"], p["w_hh"], {})


def test_emulated_kernels_are_cooperative():
    from kernels.cuda.loader import load_module
    mod = load_module(rp._CU_FILE, "cuda-emu", name_expressions=rp._CU_TEMPLATES)
    for name in rp._CU_TEMPLATES:
        assert mod.get_function(name).cooperative, name


@pytest.mark.parametrize("cell", CELLS)
def test_full_batch_wider_hidden(backend, cell):
    """N = 8 (the limit) and Hd = 70: on the emulator (64 threads per block) a thread handles
    several units in the gate phase (the non-prefetched path) and the staging copies take more
    than one batch of loads."""
    T, N, I, Hd = 3, 8, 5, 70
    lengths = np.array([3, 1, 2, 3, 3, 2, 1, 3])
    p = _problem(cell, T, N, I, Hd, np.float64, seed=5)
    ref_out = registry.get(f"{cell}_sequence_forward", "numpy", 1)(
        *_fwd_args(cell, p), lengths=lengths)
    out = registry.get(f"{cell}_sequence_forward", backend, 3)(
        *_fwd_args(cell, _lift(backend, p)), lengths=lengths)
    _compare_forward(backend, cell, out, ref_out)
    dy, dh_n, dc_n = _bwd_case(cell, T, N, Hd, np.float64, 5)
    g0 = _grads(p, 5)
    ref = _run_backward("numpy", cell, 1, [g.copy() for g in g0], dy, dh_n, dc_n, p,
                        ref_out[-1], lengths, False, None)
    got = _run_backward(backend, cell, 3, [g.copy() for g in g0], dy, dh_n, dc_n, p,
                        ref_out[-1], lengths, False, None)
    _compare_backward(backend, cell, got, ref, np.float64)


@pytest.mark.parametrize("cell", CELLS)
def test_small_hidden_several_warps_per_column(backend, cell):
    """Hd = 4 on the emulator: one unit per block, so the backward's phase B splits each
    column over several warps (P > 1) and sums their partial dot products."""
    T, N, I, Hd = 4, 2, 3, 4
    p = _problem(cell, T, N, I, Hd, np.float64, seed=6)
    ref_out = registry.get(f"{cell}_sequence_forward", "numpy", 1)(*_fwd_args(cell, p),
                                                                    reverse=True)
    out = registry.get(f"{cell}_sequence_forward", backend, 3)(
        *_fwd_args(cell, _lift(backend, p)), reverse=True)
    _compare_forward(backend, cell, out, ref_out)
    dy, dh_n, dc_n = _bwd_case(cell, T, N, Hd, np.float64, 6)
    g0 = _grads(p, 6)
    ref = _run_backward("numpy", cell, 1, [g.copy() for g in g0], dy, dh_n, dc_n, p,
                        ref_out[-1], None, True, 3)
    got = _run_backward(backend, cell, 3, [g.copy() for g in g0], dy, dh_n, dc_n, p,
                        ref_out[-1], None, True, 3)
    _compare_backward(backend, cell, got, ref, np.float64)


# ---------------------------------------------------------------------------------------------
# version 4: persistent where it fits, version 1 beyond
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("N,fits", [(3, True), (9, False)])
def test_fallback_version_picks_v3_or_v1_and_matches_reference(backend, cell, N, fits,
                                                               monkeypatch):
    T, I, Hd = 4, 5, 8
    p = _problem(cell, T, N, I, Hd, np.float64, seed=5)
    lengths = np.array([4, 2, 3, 1, 4, 4, 2, 3, 1][:N])
    chosen = []
    real = rp._chosen_version
    monkeypatch.setattr(rp, "_chosen_version",
                        lambda *a: chosen.append(real(*a)) or chosen[-1])
    ref_out = registry.get(f"{cell}_sequence_forward", "numpy", 1)(
        *_fwd_args(cell, p), lengths=lengths)
    out = registry.get(f"{cell}_sequence_forward", backend, 4)(
        *_fwd_args(cell, _lift(backend, p)), lengths=lengths)
    _compare_forward(backend, cell, out, ref_out)
    dy, dh_n, dc_n = _bwd_case(cell, T, N, Hd, np.float64, 5)
    g0 = _grads(p, 5)
    ref = _run_backward("numpy", cell, 1, [g.copy() for g in g0], dy, dh_n, dc_n, p,
                        ref_out[-1], lengths, False, None)
    got = _run_backward(backend, cell, 4, [g.copy() for g in g0], dy, dh_n, dc_n, p,
                        {k: host(backend, v) for k, v in out[-1].items()}, lengths, False, None)
    _compare_backward(backend, cell, got, ref, np.float64)
    assert chosen == ([3, 3] if fits else [1, 1])


def test_fallback_version_beyond_the_hidden_size_limit():
    Hd = rp.max_hidden("rnn_tanh", 1, np.float64, "cuda-emu", "forward") + 1
    assert rp._chosen_version("cuda-emu", "rnn_tanh", 1, Hd, np.float64, "forward") == 1
    assert rp._chosen_version("cuda-emu", "rnn_tanh", 1, Hd - 1, np.float64, "forward") == 3


def test_fallback_version_passes_bad_arguments_to_checks_that_name_them():
    p = _problem("gru", 3, 2, 4, 8, np.float32)
    with pytest.raises(ValueError, match="w_hh"):
        registry.get("gru_sequence_forward", "cuda-emu", 4)(
            *_fwd_args("gru", dict(p, w_hh=p["w_hh"][0])))
    with pytest.raises(ValueError, match="lengths"):
        registry.get("gru_sequence_forward", "cuda-emu", 4)(*_fwd_args("gru", p),
                                                              lengths=[4, 1])
