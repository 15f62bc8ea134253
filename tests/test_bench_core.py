"""bench core: FLOP/byte counts against hand counts, workload sets, timer, roofline."""
import contextlib
import math
import sys
import time
import types

import numpy as np
import pytest
from hypothesis import given, strategies as st

from bench import flops as F
from bench import roofline, timer, workloads as W


# ----------------------------------------------------------------------------
# flops
# ----------------------------------------------------------------------------
def _count_positions(n, k, stride, pad, dil):
    """Output length by enumerating window start positions (independent of the formula)."""
    return sum(1 for start in range(-pad, n + pad)
               if (start + pad) % stride == 0 and start + dil * (k - 1) <= n + pad - 1)


def test_conv_tiny_hand_count():
    # 1x1x3x3 input, one 2x2 filter: 4 outputs, each a 4-term dot product -> 16 MACs
    assert F.conv2d_output_size(3, 3, 2, 2) == (2, 2)
    assert F.conv2d_flops(1, 1, 3, 3, 1, 2, 2) == 2 * 16
    # bytes: x 9 + w 4 + b 1 + y 4 = 18 floats
    assert F.conv2d_bytes(1, 1, 3, 3, 1, 2, 2) == 18 * 4
    assert F.conv2d_bytes(1, 1, 3, 3, 1, 2, 2, itemsize=8, bias=False) == 17 * 8


def test_conv_alexnet_conv1():
    # 227x227x3 -> 96 11x11 s4: 55x55 outputs; 105.4 M multiply-adds per image
    assert F.conv2d_output_size(227, 227, 11, 11, 4, 0) == (55, 55)
    assert F.conv2d_flops(1, 3, 227, 227, 96, 11, 11, 4, 0) == 2 * 105_415_200
    assert F.conv2d_flops(8, 3, 227, 227, 96, 11, 11, 4, 0) == 1_686_643_200


@given(H=st.integers(1, 20), R=st.integers(1, 5), s=st.integers(1, 3), p=st.integers(0, 3),
       d=st.integers(1, 3))
def test_conv_output_size_matches_enumeration(H, R, s, p, d):
    want = _count_positions(H, R, s, p, d)
    if want < 1:
        with pytest.raises(ValueError):
            F.conv2d_output_size(H, H, R, R, s, p, d)
    else:
        assert F.conv2d_output_size(H, H + 1, R, R, s, p, d)[0] == want


def test_conv_rect_and_pairs():
    # DeepSpeech layer: 161x700, filter 5 (h) x 20 (w), stride 2
    assert F.conv2d_output_size(161, 700, 5, 20, (2, 2), (0, 0)) == (79, 341)
    assert F.conv2d_output_size(10, 10, 3, 3, (1, 2), (1, 0), (1, 2)) == (10, 3)
    with pytest.raises(ValueError):
        F.conv2d_output_size(2, 2, 5, 5)


def test_pool_counts():
    assert F.pool2d_output_size(16, 16, 2, 2) == (8, 8)
    assert F.pool2d_output_size(55, 55, 3, 2) == (27, 27)
    assert F.pool2d_output_size(13, 13, 3, 2) == (6, 6)
    assert F.pool2d_output_size(5, 5, 2) == (2, 2)            # stride defaults to the window
    assert F.pool2d_bytes(1, 1, 4, 4, 2, 2) == (16 + 4) * 4
    assert F.pool2d_flops(1, 1, 4, 4, 2, 2) == 4 * 4
    with pytest.raises(ValueError):
        F.pool2d_output_size(4, 4, 2, 2, padding=2)          # more than half the window


def test_rnn_hand_counts():
    # LSTM, T=1 N=1 I=2 Hd=3: 4*3 pre-activations, each 2+3 terms -> 60 MACs
    assert F.rnn_flops("lstm", 1, 1, 2, 3) == 120
    # GRU, T=2 N=1 I=1 Hd=1: 3 pre-activations x 2 terms x 2 steps -> 12 MACs
    assert F.rnn_flops("gru", 2, 1, 1, 1) == 24
    assert F.rnn_flops("rnn_tanh", 1, 1, 1, 1) == F.rnn_flops("rnn_relu", 1, 1, 1, 1) == 4
    with pytest.raises(ValueError, match="lstm"):
        F.rnn_flops("rnn", 1, 1, 1, 1)


def test_rnn_deepbench_vanilla_example():
    # DeepBench vanilla Hd=1760 N=16 T=50 (I = Hd). DeepBench skips the input projection:
    # 2*N*T*Hd*Hd = 4.956 GFLOP; counting it doubles that.
    deepbench = 2 * 16 * 50 * 1760 * 1760
    assert deepbench == 4_956_160_000
    assert F.rnn_flops("rnn_relu", 50, 16, 1760, 1760) == 2 * deepbench
    assert F.rnn_flops("lstm", 50, 16, 1760, 1760) == 8 * deepbench


def test_rnn_bytes_hand_counts():
    # vanilla T=2 N=1 I=1 Hd=1: x 2 + h0 1 + W 2 + b 2 + y 2 = 9 floats
    assert F.rnn_bytes("rnn_tanh", 2, 1, 1, 1) == 9 * 4
    # LSTM T=1 N=1 I=1 Hd=1: x 1 + h0 1 + c0 1 + W 8 + b 8 + y 1 + c_T 1 = 21 floats
    assert F.rnn_bytes("lstm", 1, 1, 1, 1) == 21 * 4


def test_training_flops():
    assert F.training_flops(100) == 300
    assert F.training_flops(100, "conv2d") == 300
    assert F.training_flops(100, "maxpool2d") == 200
    assert F.arithmetic_intensity(10, 5) == 2.0


# ----------------------------------------------------------------------------
# workloads
# ----------------------------------------------------------------------------
SIZES = {"quick": 8, "seeds": 22, "deepbench-train": 53, "deepbench-inference": 72}


def test_set_names_and_sizes():
    assert set(W.set_names()) == set(SIZES)
    for name, n in SIZES.items():
        assert len(W.get_set(name)) == n, name


def _check_valid(w):
    assert w.op in W.OPS
    assert w.flops > 0 and w.bytes > 0, w.name
    assert all(d >= 1 for d in w.output_shape), (w.name, w.output_shape)
    assert all(v >= 1 for k, v in w.shape.items() if isinstance(v, int)), w.name
    assert w.family and w.name.startswith(w.family)
    # counts agree with bench.flops
    assert w.flops == W.Workload(w.name, w.op, w.shape, dtype=w.dtype).flops


@pytest.mark.parametrize("scale", [1.0, 0.25, 0.1, 0.001])
@pytest.mark.parametrize("name", list(SIZES))
def test_every_workload_valid(name, scale):
    ws = W.get_set(name, scale=scale)
    assert ws
    names = [w.name for w in ws]
    assert len(names) == len(set(names)), "names unique within a set"
    for w in ws:
        _check_valid(w)
        assert w.scale == scale
    if scale < 1:
        full = {w.name: w for w in W.get_set(name)}
        assert all(w.flops <= full[w.name].flops for w in ws)


def test_seeds_shapes():
    ws = {w.name: w for w in W.get_set("seeds")}
    c1 = ws["alexnet-conv1-n8"]
    assert c1.output_shape == (8, 96, 55, 55)
    assert c1.flops == 1_686_643_200
    assert ws["alexnet-conv2-n8"].output_shape == (8, 256, 27, 27)
    assert ws["alexnet-pool1-n8"].output_shape == (8, 96, 27, 27)
    assert ws["pool16-max-n8"].output_shape == (8, 64, 8, 8)
    lstm = ws["speech-lstm-n16"]
    assert lstm.shape == dict(T=100, N=16, I=160, Hd=1000)
    assert lstm.flops == 2 * 16 * 100 * 1000 * 1160 * 4
    assert sorted(w.batch for w in ws.values() if w.family == "speech-gru") == [1, 4, 16, 64]


def test_deepbench_shapes():
    train = {w.name: w for w in W.get_set("deepbench-train")}
    ds = train["db-deepspeech-conv1-n4"]
    assert ds.shape["H"] == 161 and ds.shape["W"] == 700 and (ds.shape["R"], ds.shape["S"]) == (5, 20)
    assert ds.output_shape == (4, 32, 79, 341)
    assert train["db-vanilla-h1760-t50-n16"].op == "rnn_relu"
    assert train["db-vanilla-h1760-t50-n16"].shape["I"] == 1760
    assert len([w for w in train.values() if w.op == "gru"]) == 9
    inf = W.get_set("deepbench-inference")
    assert {w.batch for w in inf} == {1, 2, 4}
    assert {w.family for w in inf} == {w.family for w in train.values()}


def test_scaling_rule():
    w = {x.name: x for x in W.get_set("seeds", scale=0.25)}["alexnet-conv1-n8"]
    # N 8*0.25 = 2; H 227*0.25 = 56.75 -> 57; channels and filter unchanged
    assert (w.shape["N"], w.shape["H"], w.shape["W"]) == (2, 57, 57)
    assert (w.shape["C"], w.shape["K"], w.shape["R"], w.shape["stride"]) == (3, 96, 11, (4, 4))
    tiny = {x.name: x for x in W.get_set("seeds", scale=1e-3)}
    assert tiny["alexnet-conv1-n8"].shape["H"] == 11          # the filter still fits
    assert tiny["alexnet-conv1-n8"].output_shape == (1, 96, 1, 1)
    r = {x.name: x for x in W.get_set("seeds", scale=0.1)}["speech-lstm-n64"]
    assert r.shape == dict(T=10, N=6, I=16, Hd=100)
    # families collapsing onto the same shape are kept once
    inf = W.get_set("deepbench-inference", scale=0.1)
    assert len({w.family for w in inf}) == len(inf)
    # scale_batch=False keeps batch sweeps (n_1/2) intact
    keep = W.get_set("deepbench-inference", scale=0.1, scale_batch=False)
    assert len(keep) == 72 and {w.batch for w in keep} == {1, 2, 4}
    assert {w.name: w.shape["Hd"] for w in keep if w.kind == "rnn"}["db-lstm-h512-t25-n4"] == 51
    with pytest.raises(ValueError):
        W.get_set("quick", scale=0)


def test_ops_filter_and_errors():
    assert [w.op for w in W.get_set("seeds", ops=["lstm"])] == ["lstm"] * 4
    assert {w.op for w in W.get_set("seeds", ops="cnn")} == {"conv2d", "maxpool2d", "avgpool2d"}
    assert {w.kind for w in W.get_set("quick", ops="rnn")} == {"rnn"}
    assert {w.op for w in W.get_set("quick", ops="gru,conv2d")} == {"gru", "conv2d"}
    with pytest.raises(ValueError, match="quick"):
        W.get_set("nope")
    with pytest.raises(ValueError, match="unknown op"):
        W.get_set("quick", ops=["lstmm"])


def test_workload_validation_and_helpers():
    w = W.Workload("c", "conv2d", dict(N=2, C=3, H=8, W=8, K=4, R=3, S=3, padding=1))
    assert w.shape["stride"] == (1, 1) and w.shape["dilation"] == (1, 1)
    assert w.family == "c" and w.kind == "cnn" and w.batch == 2
    assert w.training_flops == 3 * w.flops
    assert hash(w) == hash(W.Workload("c", "conv2d", dict(w.shape)))
    w4 = w.with_batch(4)
    assert w4.flops == 2 * w.flops and w4.name == "c-n4" and w4.family == "c"
    assert "3x8x8 -> 4x8x8" in w.describe()
    assert w.to_dict()["shape"]["stride"] == [1, 1]
    with pytest.raises(ValueError, match="output size"):
        W.Workload("bad", "conv2d", dict(N=1, C=1, H=2, W=2, K=1, R=3, S=3))
    with pytest.raises(ValueError, match="missing"):
        W.Workload("bad", "lstm", dict(T=1, N=1, I=1))
    with pytest.raises(ValueError, match="unknown op"):
        W.Workload("bad", "conv3d", {})
    f64 = W.Workload("r", "lstm", dict(T=1, N=1, I=1, Hd=1), dtype="float64")
    assert f64.bytes == 21 * 8


def test_make_inputs_shapes():
    for w in W.get_set("quick"):
        arrs = W.make_inputs(w, np.random.default_rng(1))
        s = w.shape
        assert all(a.dtype == np.float32 for a in arrs.values())
        if w.op == "conv2d":
            assert arrs["x"].shape == (s["N"], s["C"], s["H"], s["W"])
            assert arrs["weight"].shape == (s["K"], s["C"], s["R"], s["S"])
            assert arrs["bias"].shape == (s["K"],)
        elif w.kind == "cnn":
            assert set(arrs) == {"x"} and arrs["x"].shape == (s["N"], s["C"], s["H"], s["W"])
        else:
            G, Hd = F.gates(w.op), s["Hd"]
            assert arrs["x"].shape == (s["T"], s["N"], s["I"])
            assert arrs["h0"].shape == (s["N"], Hd)
            assert ("c0" in arrs) == (w.op == "lstm")
            assert arrs["w_ih"].shape == (G * Hd, s["I"])
            assert arrs["w_hh"].shape == (G * Hd, Hd)
            assert arrs["b_ih"].shape == arrs["b_hh"].shape == (G * Hd,)
            assert np.abs(arrs["w_hh"]).max() <= 1 / math.sqrt(Hd)
    w = W.get_set("quick", ops="lstm")[0]
    a, b = W.make_inputs(w, 7, dtype="float64"), W.make_inputs(w, 7, dtype="float64")
    assert a["x"].dtype == np.float64
    assert all(np.array_equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------
# timer
# ----------------------------------------------------------------------------
def test_timing_stats():
    t = timer.Timing([5.0, 1.0, 3.0, 2.0, 4.0], first_call_s=10.0)
    assert (t.n, t.median, t.min, t.max, t.mean) == (5, 3.0, 1.0, 5.0, 3.0)
    assert (t.q1, t.q3, t.iqr) == (2.0, 4.0, 2.0)
    assert t.spread == pytest.approx(2 / 3)
    assert t.compile_s == 7.0
    assert t.gflops(3e9) == pytest.approx(1.0)
    assert t.seconds_per_gflop(3e9) == pytest.approx(1.0)
    assert timer.Timing([1.0]).iqr == 0.0
    assert "median" in str(t) and t.to_dict()["median"] == 3.0


def test_timer_sleep_median():
    t = timer.time_call(lambda: time.sleep(0.01), budget_s=0.1, min_repeats=3)
    assert 3 <= t.n <= 11
    assert t.min >= 0.01
    assert t.median == pytest.approx(0.01, abs=0.01)     # a loaded CI box oversleeps a little
    assert len(t.times) == t.n and t.device == "cpu"


def test_timer_separates_compile():
    calls = []

    def fn():  # the first call is slow, like a JIT compile
        time.sleep(0.15 if not calls else 0.002)
        calls.append(1)

    t = timer.time_call(fn, warmup=1, repeats=5)
    assert len(calls) == 6 and t.n == 5
    assert t.first_call_s >= 0.15
    assert t.median < 0.05 and t.max < 0.1                # compile excluded from the stats
    assert t.compile_s > 0.1


def test_timer_counts_budget_and_sync():
    calls, syncs = [], []
    t = timer.time_call(lambda: calls.append(1), warmup=3, repeats=4)
    assert len(calls) == 7 and t.n == 4
    t = timer.time_call(lambda: None, budget_s=0.0, min_repeats=3)
    assert t.n == 3
    t = timer.time_call(lambda: None, budget_s=10.0, max_repeats=20)
    assert t.n == 20
    t = timer.time_call(lambda: None, warmup=0, repeats=3, sync=lambda: syncs.append(1))
    assert len(syncs) == 3 and t.first_call_s == t.times[0]
    with pytest.raises(ValueError):
        timer.time_call(lambda: None, device="tpu")
    with pytest.raises(TypeError):
        timer.time_call(lambda: None, sync=5)


def test_timer_cuda_path_imports_lazily():
    assert callable(timer.cuda_event_timer)
    try:
        import cupy  # noqa: F401
    except Exception:
        with pytest.raises(ImportError):
            timer.time_call(lambda: None, device="cuda", repeats=1)


class _FakeEvent:
    def record(self, stream=None):
        self.t = time.perf_counter()

    def synchronize(self):
        pass


class _FakeStream:
    __module__ = "cupy.cuda.stream"  # what timer uses to recognise a CuPy stream

    def synchronize(self):
        pass


@pytest.fixture
def fake_cupy(monkeypatch):
    """A NumPy-backed stand-in for the few CuPy calls the GPU paths make, so those
    paths run without a GPU (the real thing is exercised where CuPy exists)."""
    cp = types.ModuleType("cupy")
    cp.__version__ = "fake"
    cp.cuda = types.SimpleNamespace(
        Event=_FakeEvent, get_current_stream=_FakeStream,
        get_elapsed_time=lambda a, b: (b.t - a.t) * 1e3,
        Device=lambda i: contextlib.nullcontext(),
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1,
                                      getDeviceProperties=lambda i: {"name": b"FakeGPU"}))
    cp.random = types.SimpleNamespace(
        random=lambda shape, dtype: np.random.default_rng(0).random(shape, dtype=dtype))
    for name in ("float32", "matmul", "empty", "ones", "empty_like", "copyto"):
        setattr(cp, name, getattr(np, name))
    monkeypatch.setitem(sys.modules, "cupy", cp)
    return cp


def test_timer_cuda_event_path(fake_cupy):
    t = timer.time_call(lambda: time.sleep(0.002), device="cuda", repeats=3)
    assert t.device == "cuda" and t.n == 3 and t.min >= 0.002
    t = timer.time_call(lambda: None, sync=_FakeStream(), repeats=2)
    assert t.device == "cuda"


# ----------------------------------------------------------------------------
# roofline
# ----------------------------------------------------------------------------
def test_cpu_peaks_remeasures_a_stalled_threaded_sgemm(tmp_path, monkeypatch):
    """A threaded sgemm below half of the serial one is measured again (a stall, not a peak);
    if it stays there the entry says ``suspect``. One thread: nothing to compare."""
    monkeypatch.setattr(roofline, "_numba_threads", lambda: 2)
    seen, blas_now = [], [None]

    @contextlib.contextmanager
    def fake_threads(n):                       # which BLAS thread count is being measured
        blas_now[0] = n
        yield True

    def fake_sgemm(budget_s, rng):             # GFLOP/s per thread count, one per call
        seen.append(blas_now[0])
        return rates[blas_now[0]].pop(0), 512

    monkeypatch.setattr(roofline, "_blas_threads", fake_threads)
    monkeypatch.setattr(roofline, "_cpu_sgemm", fake_sgemm)
    rates = {2: [6.0, 150.0], 1: [80.0, 79.0]}
    p = roofline.cpu_peaks(budget_s=0.05, cache=False)
    assert seen == [2, 1, 2, 1]
    assert p["sgemm_gflops"] == 150.0 and p["sgemm_gflops_by_threads"] == {"2": 150.0, "1": 80.0}
    assert not p["suspect"]

    seen.clear()
    rates = {2: [6.0] * 3, 1: [80.0] * 3}
    p = roofline.cpu_peaks(budget_s=0.05, cache=False)
    assert len(seen) == 2 * roofline.SGEMM_ATTEMPTS and p["suspect"]
    assert p["sgemm_gflops"] == 80.0


def test_cpu_peaks_quick_and_cached(tmp_path):
    cache = tmp_path / "peaks.json"
    t0 = time.perf_counter()
    p = roofline.cpu_peaks(budget_s=0.05, cache=cache)
    assert time.perf_counter() - t0 < 5
    assert p["sgemm_gflops"] > 0 and p["copy_gbs"] > 0 and not p["cached"]
    assert p["threads"] >= 1 and cache.exists()
    again = roofline.cpu_peaks(budget_s=0.05, cache=cache)
    assert again["cached"] and again["sgemm_gflops"] == p["sgemm_gflops"]
    assert not roofline.cpu_peaks(budget_s=0.05, cache=cache, refresh=True)["cached"]
    # a request with a larger budget than the cached entry re-measures
    assert not roofline.cpu_peaks(budget_s=0.06, cache=cache)["cached"]
    assert not roofline.cpu_peaks(budget_s=0.05, cache=False)["cached"]


def test_gpu_peaks_reason():
    peaks, reason = roofline.gpu_peaks(budget_s=0.05, cache=False)
    assert isinstance(reason, str) and reason
    if peaks is not None:
        assert peaks["sgemm_gflops"] > 0 and peaks["copy_gbs"] > 0


def test_gpu_peaks_code_path(fake_cupy, tmp_path):
    peaks, reason = roofline.gpu_peaks(budget_s=0.01, cache=tmp_path / "p.json")
    assert reason == "FakeGPU"
    assert peaks["device"] == "cuda" and peaks["sgemm_gflops"] > 0 and peaks["copy_gbs"] > 0
    assert roofline.gpu_peaks(budget_s=0.01, cache=tmp_path / "p.json")[0]["cached"]


def test_percent_of_roofline_math():
    peaks = {"sgemm_gflops": 100.0, "copy_gbs": 10.0}
    assert roofline.ridge_point(peaks) == 10.0
    # AI = 1 FLOP/byte: memory-bound, attainable 10 GFLOP/s
    assert roofline.attainable_gflops(1e9, 1e9, peaks) == 10.0
    assert roofline.percent_of_roofline(5.0, 1e9, 1e9, peaks) == pytest.approx(50.0)
    # AI = 100: compute-bound, attainable 100 GFLOP/s
    assert roofline.percent_of_roofline(50.0, 1e7, 1e9, peaks) == pytest.approx(50.0)
    # exactly at the ridge
    assert roofline.percent_of_roofline(100.0, 1e8, 1e9, peaks) == pytest.approx(100.0)
