"""Recurrent kernels (kernels/recurrent.py): every numba version vs the NumPy reference, the
reference vs central differences, step ops vs sequence ops, truncation, lengths, memory, errors."""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kernels import recurrent, registry
from kernels.recurrent import CELLS, GATES, SMALL_N
from util import assert_close, numerical_grad

VERSIONS = [("numba", v) for v in (1, 2, 3, 4, 5, 6, 7, 8)]


def make(cell, T, N, I, Hd, dtype, rng, scale=0.5):
    G = GATES[cell]
    r = lambda *s: (rng.standard_normal(s) * scale).astype(dtype)  # noqa: E731
    return dict(x=r(T, N, I), h0=r(N, Hd), c0=r(N, Hd), w_ih=r(G * Hd, I), w_hh=r(G * Hd, Hd),
                b_ih=r(G * Hd), b_hh=r(G * Hd), dy=r(T, N, Hd), dh_n=r(N, Hd), dc_n=r(N, Hd))


def run(cell, backend, version, p, lengths=None, reverse=False, bptt=None, bias=True,
        use_dy=True, use_dhn=True):
    """Forward + backward; returns a dict of every output and gradient."""
    f = registry.get(f"{cell}_sequence_forward", backend, version)
    b = registry.get(f"{cell}_sequence_backward", backend, version)
    lstm = cell == "lstm"
    b_ih, b_hh = (p["b_ih"], p["b_hh"]) if bias else (None, None)
    args = (p["x"], p["h0"], p["c0"]) if lstm else (p["x"], p["h0"])
    res = f(*args, p["w_ih"], p["w_hh"], b_ih, b_hh, lengths=lengths, reverse=reverse)
    out = {"y": res[0], "h_n": res[1]}
    if lstm:
        out["c_n"] = res[2]
    grads = {k: np.zeros_like(p[k]) for k in ("w_ih", "w_hh", "b_ih", "b_hh")}
    gargs = [grads["w_ih"], grads["w_hh"], grads["b_ih"] if bias else None,
             grads["b_hh"] if bias else None]
    hargs = [p["dy"] if use_dy else None, p["dh_n"] if use_dhn else None]
    if lstm:
        hargs.append(p["dc_n"])
    r = b(*gargs, *hargs, p["x"], p["w_ih"], p["w_hh"], res[-1], lengths=lengths,
          reverse=reverse, bptt_steps=bptt)
    out["dx"], out["dh0"] = r[0], r[1]
    if lstm:
        out["dc0"] = r[2]
    for k, g in grads.items():
        if bias or k.startswith("w"):
            out["d" + k] = g
    out["cache"] = res[-1]
    return out


def compare(got, ref, dtype, where):
    tol = (2e-4, 2e-4) if dtype == np.float32 else (1e-10, 1e-9)
    for k in ref:
        if k == "cache":
            continue
        assert_close(f"{where}: {k}", got[k], ref[k], *tol)


@st.composite
def cases(draw):
    T = draw(st.integers(1, 6))
    N = draw(st.sampled_from([1, 2, 3, SMALL_N + 2]))
    I = draw(st.integers(1, 5))
    Hd = draw(st.integers(1, 7))
    use_len = draw(st.booleans())
    lengths = None
    if use_len:
        lengths = np.array(draw(st.lists(st.integers(1, T), min_size=N, max_size=N)))
    return dict(T=T, N=N, I=I, Hd=Hd, lengths=lengths, reverse=draw(st.booleans()),
                bptt=draw(st.sampled_from([None, 1, 2, 3])), bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend,version", VERSIONS, ids=[f"{b}-v{v}" for b, v in VERSIONS])
@pytest.mark.parametrize("cell", CELLS)
@settings(max_examples=6)
@given(c=cases())
def test_version_matches_reference(cell, backend, version, dtype, c):
    rng = np.random.default_rng(c["seed"])
    p = make(cell, c["T"], c["N"], c["I"], c["Hd"], dtype, rng)
    kw = dict(lengths=c["lengths"], reverse=c["reverse"], bptt=c["bptt"], bias=c["bias"])
    ref = run(cell, "numpy", 1, p, **kw)
    got = run(cell, backend, version, p, **kw)
    compare(got, ref, dtype, f"{cell}[{backend}/v{version}] {c}")
    assert got["y"].dtype == dtype and got["dx"].dtype == dtype


@pytest.mark.parametrize("parallel", [False, True], ids=["serial-pw", "prange-pw"])
@pytest.mark.parametrize("cell", CELLS)
def test_v1_v2_v3_agree_small_and_large_batch(cell, parallel, rng, monkeypatch):
    """v1/v2/v3 agree with each other and the reference, with the elementwise kernels on the
    serial twin and on the prange path (normally only used for large N*G*Hd)."""
    monkeypatch.setattr(recurrent, "_parallel_pointwise", lambda N, G, Hd: parallel)
    for N in (1, SMALL_N + 3):
        p = make(cell, 7, N, 5, 300, np.float32, rng, scale=0.1)
        lengths = rng.integers(1, 8, size=N)
        ref = run(cell, "numpy", 1, p, lengths=lengths, reverse=True, bptt=3)
        outs = [run(cell, "numba", v, p, lengths=lengths, reverse=True, bptt=3)
                for v in (1, 2, 3)]
        for v, o in zip((1, 2, 3), outs):
            compare(o, outs[0], np.float32, f"{cell} v{v} vs v1 N={N}")
            compare(o, ref, np.float32, f"{cell} v{v} vs reference N={N}")


# ----------------------------------------------------------------------------------------------
# gradient checks of the reference (float64, central differences) over whole sequences
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELLS)
def test_reference_gradcheck(cell, reverse):
    rng = np.random.default_rng(1)
    T, N, I, Hd = 4, 3, 2, 3
    p = make(cell, T, N, I, Hd, np.float64, rng)
    if cell == "rnn_relu":       # keep pre-activations away from the kink
        p["b_ih"] += 0.3
    lengths = np.array([4, 2, 3])
    lstm = cell == "lstm"
    f = registry.get(f"{cell}_sequence_forward", "numpy")

    def loss():
        args = (p["x"], p["h0"], p["c0"]) if lstm else (p["x"], p["h0"])
        res = f(*args, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], lengths=lengths,
                reverse=reverse)
        val = np.sum(res[0] * p["dy"]) + np.sum(res[1] * p["dh_n"])
        if lstm:
            val += np.sum(res[2] * p["dc_n"])
        return val

    got = run(cell, "numpy", 1, p, lengths=lengths, reverse=reverse)
    names = {"x": "dx", "h0": "dh0", "w_ih": "dw_ih", "w_hh": "dw_hh", "b_ih": "db_ih",
             "b_hh": "db_hh"}
    if lstm:
        names["c0"] = "dc0"
    for name, gname in names.items():
        num = numerical_grad(loss, p[name])
        assert_close(f"{cell} {gname}", got[gname], num, atol=1e-7, rtol=1e-6)
    # padded steps: zero outputs, dy there is ignored
    assert np.all(got["y"][2:, 1] == 0) and np.all(got["y"][3:, 2] == 0)


# ----------------------------------------------------------------------------------------------
# step ops vs the sequence driver; ONE GEMM weight gradient == sum of per-step outer products
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
def test_steps_compose_to_sequence_and_one_gemm_equals_outer_products(cell):
    rng = np.random.default_rng(2)
    T, N, I, Hd = 5, 3, 4, 3
    p = make(cell, T, N, I, Hd, np.float64, rng)
    lstm = cell == "lstm"
    sf = registry.get(f"{cell}_step_forward", "numpy")
    sb = registry.get(f"{cell}_step_backward", "numpy")
    h, c, hs, cs, saves = p["h0"], p["c0"], [], [], []
    for t in range(T):
        hs.append(h)
        cs.append(c)
        if lstm:
            h, c, s = sf(p["x"][t], h, c, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        else:
            h, s = sf(p["x"][t], h, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        saves.append((h, s))
    seq = run(cell, "numpy", 1, p)
    assert_close("y", np.stack([s[0] for s in saves]), seq["y"])
    assert_close("h_n", h, seq["h_n"])
    grads = {k: np.zeros_like(p[k]) for k in ("w_ih", "w_hh", "b_ih", "b_hh")}
    dh, dc = p["dh_n"].copy(), p["dc_n"].copy()
    dxs = [None] * T
    for t in range(T - 1, -1, -1):
        args = [grads["w_ih"], grads["w_hh"], grads["b_ih"], grads["b_hh"], dh + p["dy"][t]]
        if lstm:
            dxs[t], dh, dc, _, _ = sb(*args, dc, p["x"][t], hs[t], cs[t], p["w_ih"], p["w_hh"],
                                      saves[t][1])
        else:
            dxs[t], dh, _, _ = sb(*args, p["x"][t], hs[t], p["w_ih"], p["w_hh"], saves[t][1])
    assert_close("dx", np.stack(dxs), seq["dx"])
    assert_close("dh0", dh, seq["dh0"])
    for k, g in grads.items():   # per-step outer products summed == the one GEMM over T*N rows
        assert_close(f"d{k} (one GEMM vs per-step outer products)", seq["d" + k], g)


def test_parameter_gradients_accumulate(rng):
    p = make("gru", 3, 2, 3, 4, np.float64, rng)
    once = run("gru", "numba", 1, p)
    f = registry.get("gru_sequence_forward", "numba")
    b = registry.get("gru_sequence_backward", "numba")
    y, hn, cache = f(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    g = [once["dw_ih"].copy(), once["dw_hh"].copy(), once["db_ih"].copy(), once["db_hh"].copy()]
    b(*g, p["dy"], p["dh_n"], p["x"], p["w_ih"], p["w_hh"], cache)
    for k, gg in zip(("dw_ih", "dw_hh", "db_ih", "db_hh"), g):
        assert_close(k + " accumulates", gg, 2 * once[k])


# ----------------------------------------------------------------------------------------------
# lengths and truncation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_lengths_equal_unpadded_per_sentence(cell, reverse):
    rng = np.random.default_rng(3)
    T, N, I, Hd = 6, 3, 2, 4
    p = make(cell, T, N, I, Hd, np.float64, rng)
    lengths = np.array([6, 1, 4])
    full = run(cell, "numba", 1, p, lengths=lengths, reverse=reverse, bptt=2)
    for n, L in enumerate(lengths):
        q = {k: v for k, v in p.items()}
        for k in ("x", "dy"):
            q[k] = np.ascontiguousarray(p[k][:L, n:n + 1])
        for k in ("h0", "c0", "dh_n", "dc_n"):
            q[k] = np.ascontiguousarray(p[k][n:n + 1])
        one = run(cell, "numpy", 1, q, reverse=reverse, bptt=2)
        assert_close(f"y[{n}]", full["y"][:L, n], one["y"][:, 0])
        assert np.all(full["y"][L:, n] == 0), "outputs at padded steps must be zero"
        assert_close(f"dx[{n}]", full["dx"][:L, n], one["dx"][:, 0])
        assert np.all(full["dx"][L:, n] == 0), "no gradient through padded steps"
        for k in ("h_n", "dh0") + (("c_n", "dc0") if cell == "lstm" else ()):
            assert_close(f"{k}[{n}]", full[k][n], one[k][0])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_truncated_bptt_equals_chunked_detached_reference(cell, k):
    """bptt_steps=k == run the sequence in chunks of k steps, the state between chunks a
    constant: each chunk's backward gets its own dy, dh_n only reaches the last chunk, and only
    the first chunk's dh0 is kept."""
    rng = np.random.default_rng(4)
    T, N, I, Hd = 7, 2, 3, 3
    p = make(cell, T, N, I, Hd, np.float64, rng)
    lstm = cell == "lstm"
    got = run(cell, "numpy", 1, p, bptt=k)
    got_nb = run(cell, "numba", 3, p, bptt=k)
    compare(got_nb, got, np.float64, "numba v3 truncated")
    grads = {n: 0 for n in ("dw_ih", "dw_hh", "db_ih", "db_hh")}
    h, c, dxs = p["h0"], p["c0"], []
    starts = list(range(0, T, k))
    for ci, s0 in enumerate(starts):
        q = dict(p)
        q["x"], q["dy"] = p["x"][s0:s0 + k].copy(), p["dy"][s0:s0 + k].copy()
        q["h0"], q["c0"] = h, c
        last = ci == len(starts) - 1
        if not last:
            q["dh_n"] = np.zeros_like(h)
            q["dc_n"] = np.zeros_like(h)
        r = run(cell, "numpy", 1, q)
        h = r["h_n"]
        c = r.get("c_n")
        dxs.append(r["dx"])
        for n in grads:
            grads[n] = grads[n] + r[n]
        if ci == 0:
            dh0, dc0 = r["dh0"], r.get("dc0")
    assert_close("dx", got["dx"], np.concatenate(dxs))
    assert_close("dh0", got["dh0"], dh0)
    if lstm:
        assert_close("dc0", got["dc0"], dc0)
    for n, g in grads.items():
        assert_close(n, got[n], g)
    full = run(cell, "numpy", 1, p)
    at_least_T = run(cell, "numpy", 1, p, bptt=T)
    compare(at_least_T, full, np.float64, "bptt_steps >= T is full BPTT")


# ----------------------------------------------------------------------------------------------
# long sequences: saved activations are O(T*N*G*Hd), nothing grows faster
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_long_sequence_bounded_memory(cell):
    rng = np.random.default_rng(5)
    T, N, I, Hd = 1000, 2, 3, 8
    G = GATES[cell]
    p = make(cell, T, N, I, Hd, np.float32, rng, scale=0.3)
    run(cell, "numba", 1, make(cell, 2, N, I, Hd, np.float32, rng))  # warm the JIT
    tracemalloc.start()
    out = run(cell, "numba", 1, p)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    cache = out["cache"]
    extra = {"lstm": 2, "gru": 1}[cell]
    saved_bytes = sum(a.nbytes for a in {id(a): a for a in cache.values()}.values())
    assert saved_bytes == T * N * (G + 1 + extra) * Hd * 4
    unit = T * N * G * Hd * 4          # one (T, N, G*Hd) float32 array
    assert peak < 12 * unit + (1 << 20), f"peak {peak} bytes vs T*N*G*Hd*4 = {unit}"
    assert np.all(np.isfinite(out["dx"])) and np.all(np.isfinite(out["dw_hh"]))


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bad_input_names_the_argument(backend, rng):
    p = make("lstm", 4, 2, 3, 5, np.float32, rng)
    f = registry.get("lstm_sequence_forward", backend)
    args = lambda **kw: {**dict(x=p["x"], h0=p["h0"], c0=p["c0"], w_ih=p["w_ih"],  # noqa: E731
                                w_hh=p["w_hh"], b_ih=p["b_ih"], b_hh=p["b_hh"]), **kw}
    bad = [
        (dict(x=p["x"][:, :, :2]), ValueError, "w_ih"),
        (dict(x=p["x"].astype(np.float64)), TypeError, "w_hh"),
        (dict(x=p["x"].astype(np.int32)), TypeError, "x"),
        (dict(x=p["x"][0]), ValueError, "x"),
        (dict(h0=p["h0"][:1]), ValueError, "h0"),
        (dict(c0=p["c0"][:, :3]), ValueError, "c0"),
        (dict(w_hh=p["w_hh"][:, :4]), ValueError, "w_hh"),
        (dict(b_ih=p["b_ih"][:3]), ValueError, "b_ih"),
        (dict(lengths=[5, 1]), ValueError, "lengths"),
        (dict(lengths=[0, 1]), ValueError, "lengths"),
        (dict(lengths=[1, 2, 3]), ValueError, "lengths"),
        (dict(lengths=[1.5, 2]), TypeError, "lengths"),
    ]
    for kw, exc, name in bad:
        a = args(**kw)
        lengths = a.pop("lengths", None)
        with pytest.raises(exc, match=name):
            f(*a.values(), lengths=lengths)
    y, hn, cn, cache = f(*args().values())
    b = registry.get("lstm_sequence_backward", backend)
    g = [np.zeros_like(p[k]) for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
    with pytest.raises(ValueError, match="dy"):
        b(*g, p["dy"][:2], None, None, p["x"], p["w_ih"], p["w_hh"], cache)
    with pytest.raises(ValueError, match="cache"):
        b(*g, p["dy"], None, None, p["x"], p["w_ih"], p["w_hh"], {"hprev": cache["hprev"]})
    with pytest.raises(TypeError, match="dw_hh"):
        b(g[0], g[1].astype(np.float64), g[2], g[3], p["dy"], None, None, p["x"], p["w_ih"],
          p["w_hh"], cache)
    with pytest.raises(ValueError, match="bptt_steps"):
        b(*g, p["dy"], None, None, p["x"], p["w_ih"], p["w_hh"], cache, bptt_steps=-1)


# ----------------------------------------------------------------------------------------------
# Jordan RNN kernels
# ----------------------------------------------------------------------------------------------
def _jordan(backend, p, lengths=None, bptt=None):
    f = registry.get("jordan_sequence_forward", backend)
    b = registry.get("jordan_sequence_backward", backend)
    y, yn, cache = f(p["x"], p["y0"], p["w_ih"], p["w_hy"], p["b_h"], p["w_ho"], p["b_o"],
                     lengths=lengths)
    g = {k: np.zeros_like(p[k]) for k in ("w_ih", "w_hy", "b_h", "w_ho", "b_o")}
    dx, dy0 = b(g["w_ih"], g["w_hy"], g["b_h"], g["w_ho"], g["b_o"], p["dy"], p["dy_n"], p["x"],
                p["w_ih"], p["w_hy"], p["w_ho"], cache, lengths=lengths, bptt_steps=bptt)
    return dict(y=y, y_n=yn, dx=dx, dy0=dy0, **{"d" + k: v for k, v in g.items()})


def _jordan_params(rng, T=5, N=3, I=2, Hd=4, O=3, dtype=np.float64):
    r = lambda *s: (rng.standard_normal(s) * 0.5).astype(dtype)  # noqa: E731
    return dict(x=r(T, N, I), y0=r(N, O), w_ih=r(Hd, I), w_hy=r(Hd, O), b_h=r(Hd),
                w_ho=r(O, Hd), b_o=r(O), dy=r(T, N, O), dy_n=r(N, O))


def test_jordan_gradcheck_and_numba():
    rng = np.random.default_rng(6)
    p = _jordan_params(rng)
    lengths = np.array([5, 2, 4])
    got = _jordan("numpy", p, lengths)
    f = registry.get("jordan_sequence_forward", "numpy")

    def loss():
        y, yn, _ = f(p["x"], p["y0"], p["w_ih"], p["w_hy"], p["b_h"], p["w_ho"], p["b_o"],
                     lengths=lengths)
        return np.sum(y * p["dy"]) + np.sum(yn * p["dy_n"])

    for name, gname in (("x", "dx"), ("y0", "dy0"), ("w_ih", "dw_ih"), ("w_hy", "dw_hy"),
                        ("b_h", "db_h"), ("w_ho", "dw_ho"), ("b_o", "db_o")):
        assert_close(f"jordan {gname}", got[gname], numerical_grad(loss, p[name]), 1e-7, 1e-6)
    for bptt in (None, 2):
        ref = _jordan("numpy", p, lengths, bptt)
        nb = _jordan("numba", p, lengths, bptt)
        for k in ref:
            assert_close(f"jordan numba {k} bptt={bptt}", nb[k], ref[k], 1e-10, 1e-9)
    assert np.all(got["y"][2:, 1] == 0)


def test_single_thread_step_blas_option(monkeypatch):
    """STEP_BLAS_THREADS=1 (robust mode for loaded machines) computes the same thing."""
    pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(7)
    p = make("lstm", 4, 2, 3, 5, np.float32, rng)
    ref = run("lstm", "numba", 1, p)
    monkeypatch.setattr(recurrent, "STEP_BLAS_THREADS", 1)
    compare(run("lstm", "numba", 1, p), ref, np.float32, "STEP_BLAS_THREADS=1")


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_v4_batch_split_matches_reference(cell, dtype, version, monkeypatch):
    """numba v4 / v5 cut into uneven sentence slices (forced: 3 workers from N=2 on, whatever
    the machine's thread count) equals the reference with lengths, reverse, truncation, and
    without dy; parameter gradients still accumulate into the caller's arrays. Hd = 37 runs
    v5's vector loops and their remainders."""
    monkeypatch.setattr(recurrent, "SPLIT_WORKERS", 3)
    monkeypatch.setattr(recurrent, "SPLIT_SMALL_MAX", 4)
    monkeypatch.setattr(recurrent, "SPLIT_MIN_N", SMALL_N + 2)
    assert recurrent._split_workers(1) == 1 and recurrent._split_workers(SMALL_N) == 1
    rng = np.random.default_rng(11)
    for N in (2, 4, SMALL_N + 2):
        assert recurrent._split_workers(N) == min(3, N)
        p = make(cell, 6, N, 4, 37, dtype, rng)
        lengths = rng.integers(1, 7, size=N)
        for kw in (dict(), dict(lengths=lengths, reverse=True, bptt=2),
                   dict(lengths=lengths, use_dy=False, bias=False), dict(reverse=True, bptt=1)):
            ref = run(cell, "numpy", 1, p, **kw)
            got = run(cell, "numba", version, p, **kw)
            compare(got, ref, dtype, f"{cell} v{version} split N={N} {kw}")


@pytest.mark.parametrize("cell", CELLS)
def test_v5_vectorised_elementwise_matches_v4(cell, rng):
    """v5's float32 elementwise kernels (polynomial exp) against v4's libm ones on wide rows
    (Hd = 300: vector body and remainder), on v1's loop (N = 1, 11) and the split (N = 36),
    with lengths, reverse and truncation; a NaN in x reaches y the same way in both."""
    for N in (1, SMALL_N + 3, 36):
        p = make(cell, 5, N, 6, 300, np.float32, rng, scale=0.3)
        lengths = rng.integers(1, 6, size=N)
        kw = dict(lengths=lengths, reverse=True, bptt=2)
        v4, v5 = run(cell, "numba", 4, p, **kw), run(cell, "numba", 5, p, **kw)
        compare(v5, v4, np.float32, f"{cell} v5 vs v4 N={N}")
        assert v5["dx"].dtype == np.float32
    p["x"][0, 0, 0] = np.nan
    v4, v5 = run(cell, "numba", 4, p), run(cell, "numba", 5, p)
    np.testing.assert_array_equal(np.isnan(v5["y"]), np.isnan(v4["y"]))
    assert np.isnan(v5["y"][0, 0]).all()


@pytest.mark.parametrize("version,N", [(5, 1), (5, 4), (6, 4)])
def test_backward_reuses_the_forwards_w_hh_layout(version, N, rng, monkeypatch):
    """v5 transposes W_hh once per training step where the backward runs per-sentence GEMVs
    (N=1, split slices of <= 2 sentences) and v6 packs the backward's W_hh panels in the
    forward: the backward takes them from the cache, but only for the very same, unchanged
    w_hh; a copy or an in-place change makes it transpose / pack again, so the result always
    follows the w_hh passed to the backward."""
    monkeypatch.setattr(recurrent, "SPLIT_WORKERS", 2)
    calls = []
    name, key = (("_transposed", "w_hhT") if version == 5
                 else ("_col_panels", "w_hh_col_panels"))
    real = getattr(recurrent, name)
    monkeypatch.setattr(recurrent, name, lambda w, *a: calls.append(w.shape) or real(w, *a))
    cell = "lstm"
    p = make(cell, 4, N, 3, 40, np.float32, rng)
    got = run(cell, "numba", version, p)
    assert len(calls) == 1 and key in got["cache"]
    compare(got, run(cell, "numpy", 1, p), np.float32, f"v{version} reuse N={N}")

    f = registry.get(f"{cell}_sequence_forward", "numba", version)
    b = registry.get(f"{cell}_sequence_backward", "numba", version)
    for change in ("copy", "in place"):
        cache = f(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])[-1]
        w_hh = p["w_hh"].copy() if change == "copy" else p["w_hh"]
        if change == "in place":
            w_hh *= 0.5
        calls.clear()
        grads = [np.zeros_like(p[k]) for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
        dx = b(*grads, p["dy"], p["dh_n"], p["dc_n"], p["x"], p["w_ih"], w_hh, cache)[0]
        assert len(calls) == 1, change                    # transposed / packed again
        rgrads = [np.zeros_like(p[k]) for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
        rdx = registry.get(f"{cell}_sequence_backward", "numpy")(
            *rgrads, p["dy"], p["dh_n"], p["dc_n"], p["x"], p["w_ih"], w_hh, cache)[0]
        assert_close(f"dx with w_hh changed ({change})", dx, rdx, 2e-4, 2e-4)


@pytest.mark.parametrize("threads,chunk", [(1, 4), (2, 1), (3, 3)])
@pytest.mark.parametrize("cell", CELLS)
def test_v6_packed_loops_match_reference(cell, threads, chunk, monkeypatch):
    """numba v6's packed micro-kernel loops (forward and BPTT) equal the reference: batches
    that do and do not fill the 4-row tiles (N = 2, 6, 13), hidden sizes that do not fill the
    NR-unit panels (Hd = 37, 100), uneven panel ranges per thread and chunk sizes, with
    lengths, reverse, truncation, no dy, no bias. The packed path must actually run, with the
    GEMMs outside the loop on OpenBLAS's threads (threads = 1 here) or split over numba's
    (kernels._pool_blas; the other settings, whatever their size)."""
    monkeypatch.setattr(recurrent, "V6_THREADS", threads)
    monkeypatch.setattr(recurrent, "V6_CHUNK", chunk)
    pool = threads != 1
    monkeypatch.setattr(recurrent, "POOL_GEMM_MIN_MACS", 0 if pool else 2**62)
    ran = []
    for name in ("_seq_fwd_v6", "_seq_bwd_v6", "_input_projection_pool", "_param_grads_pool"):
        real = getattr(recurrent, name)
        monkeypatch.setattr(recurrent, name,
                            lambda *a, _r=real, _n=name: ran.append(_n) or _r(*a))
    rng = np.random.default_rng(threads * 10 + chunk)
    for N, Hd in ((2, 37), (6, 100), (13, 37)):
        p = make(cell, 5, N, 3, Hd, np.float32, rng, scale=0.4)
        lengths = rng.integers(1, 6, size=N)
        for kw in (dict(), dict(lengths=lengths, reverse=True, bptt=2),
                   dict(lengths=lengths, use_dy=False, bias=False)):
            ran.clear()
            ref = run(cell, "numpy", 1, p, **kw)
            got = run(cell, "numba", 6, p, **kw)
            want = (["_input_projection_pool", "_seq_fwd_v6", "_seq_bwd_v6", "_param_grads_pool"]
                    if pool else ["_seq_fwd_v6", "_seq_bwd_v6"])
            assert ran == want
            compare(got, ref, np.float32, f"{cell} v6 N={N} Hd={Hd} {kw}")


def test_v6_and_v7_pick_their_loops_by_batch_and_dtype(rng):
    """v6 keeps v5's paths where they are faster or the micro-kernel does not apply; v7 is v6
    with its GEMV loops below PACKED_MIN_N."""
    fused = recurrent._fused_loop
    n_packed, n_gemv = recurrent.PACKED_MIN_N, recurrent.GEMV_MAX_N
    assert n_gemv < n_packed
    for v in (6, 7):
        assert fused(v, np.zeros((2, n_packed, 3), np.float32)) == "packed"
        assert fused(v, np.zeros((2, 8, 3), np.float64)) is None
    assert fused(6, np.zeros((2, n_packed - 1, 3), np.float32)) is None
    assert fused(7, np.zeros((2, n_gemv, 3), np.float32)) == "gemv"
    assert fused(7, np.zeros((2, 1, 3), np.float64)) is None
    assert fused(5, np.zeros((2, 8, 3), np.float32)) is None
    p = make("gru", 3, 1, 2, 30, np.float32, rng)
    compare(run("gru", "numba", 6, p), run("gru", "numba", 5, p), np.float32, "v6 N=1")


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_v8_sentence_split_loops_match_reference(cell, threads, monkeypatch):
    """numba v8's sentence-split packed loops (every thread runs all steps of its MR-sentence
    tiles) equal the reference: fewer tiles than threads (N = 2: idle threads), uneven tile
    counts (N = 13: 4 tiles), a partial last tile, panels that end off NR (Hd = 37, 100), with
    lengths, reverse, truncation, no dy, no bias; the loops must run with rows=True."""
    monkeypatch.setattr(recurrent, "V6_THREADS", threads)
    monkeypatch.setattr(recurrent, "_row_split", lambda version, *a: version >= 8)
    rows = []
    for name in ("_seq_fwd_v6", "_seq_bwd_v6"):
        real = getattr(recurrent, name)
        monkeypatch.setattr(recurrent, name,
                            lambda *a, _r=real: rows.append(a[-1]) or _r(*a))
    rng = np.random.default_rng(threads + 40)
    for N, Hd in ((2, 37), (6, 100), (13, 37)):
        p = make(cell, 5, N, 3, Hd, np.float32, rng, scale=0.4)
        lengths = rng.integers(1, 6, size=N)
        for kw in (dict(), dict(lengths=lengths, reverse=True, bptt=2),
                   dict(lengths=lengths, use_dy=False, bias=False)):
            rows.clear()
            ref = run(cell, "numpy", 1, p, **kw)
            got = run(cell, "numba", 8, p, **kw)
            assert rows == [True, True]
            compare(got, ref, np.float32, f"{cell} v8 N={N} Hd={Hd} {kw}")


def test_v8_splits_by_sentences_where_w_hh_is_small_and_tiles_share_evenly(monkeypatch):
    """The rule of ROW_SPLIT_*: W_hh's panels within a core's L2, or within the larger bound
    with 2+ tiles per thread; a tile per thread, tiles shared evenly or 4+ per thread; v8
    only."""
    split = recurrent._row_split
    monkeypatch.setattr(recurrent, "V6_THREADS", 2)
    assert split(8, 16, 4, 64) and split(8, 8, 4, 128)          # small W_hh, 2 / 1 tiles each
    assert not split(7, 16, 4, 64) and not split(6, 16, 4, 64)  # v6 / v7: unit split
    assert not split(8, 4, 4, 64)                               # one tile for two threads
    assert not split(8, 12, 4, 64) and split(8, 36, 4, 64)      # 3 tiles: 2 + 1; 9: 5 + 4
    assert split(8, 8, 4, 256)                                  # 1.2 MB: within the L2 bound
    assert not split(8, 8, 3, 384) and split(8, 16, 3, 384)     # 1.8 MB: needs 2 tiles each
    assert not split(8, 64, 4, 1000)                            # 16 MB: past the bound
    monkeypatch.setattr(recurrent, "V6_THREADS", 1)
    assert split(8, 2, 4, 64)                                   # one thread: one region


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_v7_gemv_loops_match_reference(cell, threads, monkeypatch):
    """numba v7's streamed-W_hh GEMV loops (forward and BPTT) equal the reference: one
    sentence (and, with the batch limits raised, 2 and 3: the kernels' sentence loops), hidden
    sizes that leave a thread no units (Hd = 1), end off a vector (Hd = 13) or a 4-row block
    (Hd = 37), with lengths, reverse, truncation, no dy, no bias; the GEMV loops must run."""
    monkeypatch.setattr(recurrent, "V6_THREADS", threads)
    ran = []
    for name in ("_seq_fwd_v7", "_seq_bwd_v7"):
        real = getattr(recurrent, name)
        monkeypatch.setattr(recurrent, name,
                            lambda *a, _r=real, _n=name: ran.append(_n) or _r(*a))
    rng = np.random.default_rng(threads)
    for N, Hd in ((1, 1), (1, 13), (1, 37), (2, 13), (3, 37)):
        monkeypatch.setattr(recurrent, "GEMV_MAX_N", max(N, 1))
        monkeypatch.setattr(recurrent, "PACKED_MIN_N", N + 1)
        p = make(cell, 5, N, 3, Hd, np.float32, rng, scale=0.4)
        lengths = rng.integers(1, 6, size=N)
        for kw in (dict(), dict(lengths=lengths, reverse=True, bptt=2),
                   dict(lengths=lengths, use_dy=False, bias=False)):
            ran.clear()
            ref = run(cell, "numpy", 1, p, **kw)
            got = run(cell, "numba", 7, p, **kw)
            assert ran == ["_seq_fwd_v7", "_seq_bwd_v7"]
            compare(got, ref, np.float32, f"{cell} v7 N={N} Hd={Hd} {kw}")


def test_v4_slices_cover_the_batch():
    """Sentence slices are contiguous, cover 0..N-1 once and differ in size by at most one."""
    for N in (1, 2, 7, 64):
        for nw in range(1, min(N, 5) + 1):
            s = recurrent._slices(N, nw)
            assert s[0][0] == 0 and s[-1][1] == N and len(s) == nw
            assert all(a[1] == b[0] for a, b in zip(s, s[1:]))
            sizes = [b - a for a, b in s]
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
