"""Recurrent CUDA kernels (kernels/cuda/recurrent.cu, launchers in kernels/recurrent_cuda.py) on
"cuda-emu" (the CPU emulator) and "cuda" (a GPU; skipped with the reason when there is none)
vs the NumPy reference: every cell and version, forward outputs, final states and the whole
cache, backward dx / dh0 / dc0 and the accumulated parameter gradients, with packed lengths,
reverse, truncated BPTT, no bias, no initial state, float32 and float64; v2's tiling edges
(several unit tiles, reduction stages and sentence tiles); argument errors.

Shapes are small (T <= 5, N <= 3, Hd <= 12) so the emulator stays fast; one test per cell uses
N = 34, Hd = 37 to cross v2's 32-wide tiles. Also run with ``SEQGRID_EMU_REVERSE=1`` and
``SEQGRID_EMU_ASAN=1`` (``kernels.cuda.emu.asan_env()``) to catch order dependence and
out-of-bounds accesses."""
import numpy as np
import pytest

from kernels import registry
from kernels.recurrent import GATES
from util import assert_close

BACKENDS = ["cuda-emu", "cuda"]
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
VERSIONS = [1, 2]
DTYPES = [np.float32, np.float64]
CACHE_KEYS = {"rnn_tanh": ("hprev", "gates"), "rnn_relu": ("hprev", "gates"),
              "lstm": ("hprev", "gates", "cprev", "tanh_c"), "gru": ("hprev", "gates", "hn")}


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    ok, why = registry.backend_status()[request.param]
    if not ok:
        pytest.skip(why)
    return request.param


def dev(backend, a):
    """Move a host array (or None) to the backend's memory (CuPy on "cuda")."""
    if backend == "cuda" and a is not None:
        import cupy
        return cupy.asarray(a)
    return a


def host(backend, a):
    if backend == "cuda":
        return a.get()
    assert isinstance(a, np.ndarray), type(a)
    return a


# scenario: (T, N, I, Hd, lengths, reverse, bptt_steps, bias, h0, dy, dh_n)
SCENARIOS = {
    "plain": (4, 3, 5, 7, None, False, None, True, True, True, True),
    "packed": (5, 3, 4, 6, [5, 2, 3], False, None, True, True, True, True),
    "packed_reverse_bptt": (5, 3, 3, 5, [3, 5, 1], True, 2, True, True, True, True),
    "bptt": (5, 2, 7, 12, None, False, 2, True, True, True, True),
    "no_bias_no_state": (3, 2, 4, 6, [3, 2], False, None, False, False, False, False),
    "single_step": (1, 1, 2, 3, None, True, 1, True, True, True, False),
}


def _problem(cell, dtype, T, N, I, Hd, bias, state, seed):
    rng = np.random.default_rng(seed)
    G = GATES[cell]

    def r(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    p = {"x": r(T, N, I), "w_ih": r(G * Hd, I, scale=0.5), "w_hh": r(G * Hd, Hd, scale=0.5),
         "b_ih": r(G * Hd) if bias else None, "b_hh": r(G * Hd) if bias else None,
         "h0": r(N, Hd) if state else None,
         "c0": r(N, Hd) if state and cell == "lstm" else None}
    if cell == "rnn_relu":            # keep relu inputs away from the kink at 0
        p["x"] += np.sign(p["x"]).astype(dtype) * dtype(0.05)
    return p, rng


def _forward(cell, fn, p, put, lengths, reverse):
    args = (put(p["x"]), put(p["h0"]))
    if cell == "lstm":
        args += (put(p["c0"]),)
    args += (put(p["w_ih"]), put(p["w_hh"]), put(p["b_ih"]), put(p["b_hh"]))
    out = fn(*args, lengths=lengths, reverse=reverse)
    return out[:-1], out[-1]


def _backward(cell, fn, p, grads, dy, dh_n, dc_n, cache, put, lengths, reverse, bptt):
    args = tuple(grads) + (put(dy), put(dh_n))
    if cell == "lstm":
        args += (put(dc_n),)
    args += (put(p["x"]), put(p["w_ih"]), put(p["w_hh"]), cache)
    return fn(*args, lengths=lengths, reverse=reverse, bptt_steps=bptt)


def _check(backend, cell, version, dtype, T, N, I, Hd, lengths, reverse, bptt, bias, state,
           has_dy, has_dh, seed=0):
    tag = (f"[{backend} v{version} {cell} {np.dtype(dtype)} T={T} N={N} I={I} Hd={Hd} "
           f"lengths={lengths} reverse={reverse} bptt={bptt} bias={bias}]")
    p, rng = _problem(cell, dtype, T, N, I, Hd, bias, state, seed)
    put = lambda a: dev(backend, a)                                # noqa: E731
    ref_f = registry.get(f"{cell}_sequence_forward", "numpy", 1)
    gpu_f = registry.get(f"{cell}_sequence_forward", backend, version)
    out_r, cache_r = _forward(cell, ref_f, p, lambda a: a, lengths, reverse)
    out_g, cache_g = _forward(cell, gpu_f, p, put, lengths, reverse)
    for name, g, r in zip(("y", "h_n", "c_n"), out_g, out_r):
        assert_close(f"{name} {tag}", host(backend, g), r)
    assert set(cache_g) == set(CACHE_KEYS[cell]), tag
    for key in CACHE_KEYS[cell]:
        assert_close(f"cache[{key!r}] {tag}", host(backend, cache_g[key]), cache_r[key])

    dy = rng.standard_normal((T, N, Hd)).astype(dtype) if has_dy else None
    dh_n = rng.standard_normal((N, Hd)).astype(dtype) if has_dh else None
    dc_n = rng.standard_normal((N, Hd)).astype(dtype) if has_dh and cell == "lstm" else None
    shapes = [p["w_ih"].shape, p["w_hh"].shape, p["w_hh"].shape[:1], p["w_hh"].shape[:1]]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]   # gradients accumulate
    grads_r = [s.copy() for s in start]
    grads_g = [put(s.copy()) for s in start]
    if not bias:                                   # None skips a parameter gradient
        grads_r[2] = grads_r[3] = grads_g[2] = grads_g[3] = None
    ref_b = registry.get(f"{cell}_sequence_backward", "numpy", 1)
    gpu_b = registry.get(f"{cell}_sequence_backward", backend, version)
    res_r = _backward(cell, ref_b, p, grads_r, dy, dh_n, dc_n, cache_r, lambda a: a, lengths,
                      reverse, bptt)
    res_g = _backward(cell, gpu_b, p, grads_g, dy, dh_n, dc_n, cache_g, put, lengths, reverse,
                      bptt)
    assert len(res_g) == len(res_r) == (3 if cell == "lstm" else 2), tag
    for name, g, r in zip(("dx", "dh0", "dc0"), res_g, res_r):
        assert_close(f"{name} {tag}", host(backend, g), r)
    for name, g, r in zip(("dw_ih", "dw_hh", "db_ih", "db_hh"), grads_g, grads_r):
        if r is not None:
            assert_close(f"{name} {tag}", host(backend, g), r)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_matches_reference(backend, cell, version, scenario, dtype):
    T, N, I, Hd, lengths, reverse, bptt, bias, state, has_dy, has_dh = SCENARIOS[scenario]
    _check(backend, cell, version, dtype, T, N, I, Hd, lengths, reverse, bptt, bias, state,
           has_dy, has_dh)


@pytest.mark.parametrize("cell", CELLS)
def test_v2_tile_edges(backend, cell):
    """N = 34, Hd = 37: two unit tiles with a ragged edge, two 32-deep reduction stages (more
    for G*Hd in backward), two sentence tiles; with packed lengths and reverse."""
    lengths = [3] * 17 + [1, 2] * 8 + [2]
    _check(backend, cell, 2, np.float64, 3, 34, 3, 37, lengths, True, None, True, True, True,
           True, seed=3)


def test_lengths_as_list_and_device_array(backend):
    """lengths may be a list, a NumPy array, or (on "cuda") a CuPy array."""
    cell, dtype = "gru", np.float64
    p, _ = _problem(cell, dtype, 3, 2, 2, 4, True, True, 5)
    ref_f = registry.get(f"{cell}_sequence_forward", "numpy", 1)
    gpu_f = registry.get(f"{cell}_sequence_forward", backend, 1)
    (y_r, _), _ = _forward(cell, ref_f, p, lambda a: a, [3, 1], False)
    for lengths in ([3, 1], np.array([3, 1]), dev(backend, np.array([3, 1]))):
        (y, _), _ = _forward(cell, gpu_f, p, lambda a: dev(backend, a), lengths, False)
        assert_close(f"y lengths={type(lengths)}", host(backend, y), y_r)


def test_registered_on_both_gpu_backends():
    for cell in CELLS:
        for op in (f"{cell}_sequence_forward", f"{cell}_sequence_backward"):
            # a real GPU defaults to v4 (persistent where it fits, v1 beyond); the emulator to v1
            assert registry.default_version(op, "cuda") == 4, op
            assert registry.default_version(op, "cuda-emu") == 1, op
            for be in ("cuda", "cuda-emu"):
                for v in VERSIONS:
                    assert registry.get(op, be, v).doc, (op, be, v)


# ----------------------------------------------------------------------------------------------
# argument errors: the same checks as the CPU versions, with the device's array module
# ----------------------------------------------------------------------------------------------
def _args(backend, cell="lstm", dtype=np.float32):
    p, _ = _problem(cell, dtype, 2, 2, 3, 4, True, True, 7)
    return {k: dev(backend, v) for k, v in p.items()}


def test_wrong_dtype_and_shape_rejected(backend):
    f = registry.get("lstm_sequence_forward", backend, 2)
    a = _args(backend)
    with pytest.raises(TypeError, match=r"^w_hh: expected dtype float32 \(matching the input\)"):
        f(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"].astype(np.float64), a["b_ih"],
          a["b_hh"])
    with pytest.raises(ValueError, match=r"^h0: expected shape \(2, 4\)"):
        f(a["x"], a["h0"][:1], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    with pytest.raises(ValueError, match=r"^w_hh: expected shape \(4\*Hd, Hd\)"):
        f(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"][:, :3], a["b_ih"], a["b_hh"])
    with pytest.raises(ValueError, match=r"^lengths: expected every length in \[1, T=2\]"):
        f(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], lengths=[3, 1])
    y, h, c, cache = f(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    b = registry.get("lstm_sequence_backward", backend, 1)
    with pytest.raises(ValueError, match=r"^cache: expected the dict returned by "
                                         r"lstm_sequence_forward"):
        b(None, None, None, None, y, None, None, a["x"], a["w_ih"], a["w_hh"],
          {"hprev": cache["hprev"]})
    dw = dev(backend, np.zeros((4, 16), np.float32)).T             # a non-contiguous view
    with pytest.raises(TypeError, match=r"^dw_ih: expected a C-contiguous"):
        b(dw, None, None, None, y, None, None, a["x"], a["w_ih"], a["w_hh"], cache)
    with pytest.raises(TypeError, match=r"^bptt_steps: expected None or a positive int"):
        b(None, None, None, None, y, None, None, a["x"], a["w_ih"], a["w_hh"], cache,
          bptt_steps=1.5)


def test_wrong_array_module_rejected(backend):
    a = _args(backend, "gru")
    f = registry.get("gru_sequence_forward", backend, 1)
    if backend == "cuda":
        msg = r"expected a cupy array \(GPU memory\), got a NumPy \(host\) array"
        with pytest.raises(TypeError, match=f"^x: {msg}"):
            f(a["x"].get(), a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
        with pytest.raises(TypeError, match=f"^b_hh: {msg}"):
            f(a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"].get())
        y, h, cache = f(a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
        b = registry.get("gru_sequence_backward", backend, 2)
        with pytest.raises(TypeError, match=f"^dw_hh: {msg}"):
            b(None, np.zeros((12, 4), np.float32), None, None, y, None, a["x"], a["w_ih"],
              a["w_hh"], cache)
        return
    with pytest.raises(TypeError, match=r"^x: expected a NumPy array"):
        f(a["x"].tolist(), a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    with pytest.raises(TypeError, match=r"^h0: expected a NumPy array"):
        f(a["x"], a["h0"].tolist(), a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
