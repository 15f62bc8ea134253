"""Gap metrics on synthetic timings with known answers, and the sweep / gap commands."""
import json
import math

import numpy as np
import pytest

from bench import cli, gap, runners
from bench.workloads import Workload, get_set


def _rnn(N=1, T=8, I=16, Hd=32, op="rnn_tanh"):
    return Workload(f"r-n{N}", op, dict(T=T, N=N, I=I, Hd=Hd), family="r")


def _cnn(N=1):
    return Workload(f"c-n{N}", "conv2d", dict(N=N, C=4, H=8, W=8, K=8, R=3, S=3, padding=1),
                    family="c")


# ---------------------------------------------------------------- Hockney
@pytest.mark.parametrize("weights", [None, "relative"])
def test_hockney_exact_linear_timings(weights):
    a, b = 3e-3, 5e-4                       # r_inf = 2000 items/s, n_1/2 = 6
    ns = [1, 2, 4, 8, 16, 32, 64]
    fit = gap.hockney_fit(ns, [a + b * n for n in ns], flops_per_item=1e6, weights=weights)
    assert fit.a == pytest.approx(a, rel=1e-9) and fit.b == pytest.approx(b, rel=1e-9)
    assert fit.r_inf == pytest.approx(2000.0, rel=1e-9)
    assert fit.n_half == pytest.approx(6.0, rel=1e-9)
    assert fit.r_inf_gflops == pytest.approx(2000 * 1e6 / 1e9, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0)
    # read off the sweep: throughput N/(a+bN) reaches half of the best (N=64: 64/0.035) first at 8
    best = 64 / (a + 64 * b)
    expect = min(n for n in ns if n / (a + b * n) >= best / 2)
    assert fit.n_half_measured == expect == 8


def test_hockney_half_throughput_at_n_half():
    a, b = 2.0, 0.5
    fit = gap.hockney_fit([1, 10, 100], [a + b * n for n in (1, 10, 100)])
    n = fit.n_half
    assert n / (a + b * n) == pytest.approx(fit.r_inf / 2)


def test_hockney_edge_cases():
    with pytest.raises(ValueError, match="two distinct"):
        gap.hockney_fit([4, 4], [1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        gap.hockney_fit([1, 2], [1.0, 0.0])
    fit = gap.hockney_fit([1, 2, 4], [1.0, 1.0, 1.0])      # no growth: no asymptote
    assert math.isnan(fit.r_inf) and math.isnan(fit.n_half)
    fit = gap.hockney_fit([1, 2], [1.0, 3.0])               # negative intercept -> n_1/2 = 0
    assert fit.a < 0 and fit.n_half == 0.0


def test_gap_ratios_only_at_shared_batches():
    c = [{"N": 1, "gflops": 10.0}, {"N": 2, "gflops": 20.0}, {"N": 8, "gflops": 40.0}]
    r = [{"N": 1, "gflops": 1.0}, {"N": 2, "gflops": 4.0}]
    assert gap.gap_ratios(c, r) == {1: 10.0, 2: 5.0}


# ---------------------------------------------------------------- the whole report, synthetic
def test_gap_report_on_synthetic_timer(monkeypatch):
    cnn, rnn = _cnn(), _rnn()
    ac, bc, ar, br = 1e-3, 1e-4, 4e-3, 2e-5
    threads = {"n": 2}
    monkeypatch.setattr(gap, "max_threads", lambda: 2)

    class FakeThreads:
        def __init__(self, n):
            self.n = n

        def __enter__(self):
            self.old, threads["n"] = threads["n"], self.n

        def __exit__(self, *exc):
            threads["n"] = self.old

    monkeypatch.setattr(gap, "threads", FakeThreads)

    def timer(w):
        slow = 1.5 if threads["n"] == 1 and w.op == "conv2d" else 1.0   # CNN scales 1.5x
        if w.family.startswith("conv1d-"):
            return 0.5 * (ac + bc * w.batch)
        a, b = (ac, bc) if w.op == "conv2d" else (ar, br)
        return slow * (a + b * w.batch)

    rep = gap.gap_report(cnn, rnn, [1, 2, 4, 8], timer)
    assert rep["cnn"]["fit"]["n_half"] == pytest.approx(ac / bc)
    assert rep["rnn"]["fit"]["n_half"] == pytest.approx(ar / br)
    assert rep["rnn"]["fit"]["r_inf_gflops"] == pytest.approx(
        rnn.training_flops / br / 1e9)
    for n in (1, 2, 4, 8):
        expect = (cnn.with_batch(n).training_flops / (ac + bc * n)) / (
            rnn.with_batch(n).training_flops / (ar + br * n))
        assert rep["gap"][str(n)] == pytest.approx(expect)
    assert rep["step_latency_s"] == pytest.approx((ar + br) / rnn.shape["T"])
    assert rep["thread_scaling"]["cnn"]["speedup"] == pytest.approx(1.5)
    assert rep["thread_scaling"]["rnn"]["speedup"] == pytest.approx(1.0)
    assert rep["thread_scaling"]["cnn"]["threads"] == [1, 2]
    p = rep["pair"]
    assert abs(p["flop_match"] - 1) < 0.03
    assert set(p["gap"]) == {"1", "2", "4", "8"}
    assert p["rnn_rows"] == rep["rnn"]["rows"]          # same RNN measurement, reused
    json.dumps(rep)                                      # JSON-ready


@pytest.mark.parametrize("op,I,Hd,k", [("rnn_tanh", 40, 250, 3), ("lstm", 160, 1000, 3),
                                       ("gru", 32, 64, 5), ("rnn_tanh", 64, 64, 3)])
def test_conv1d_pair_matches_flops_and_keeps_length(op, I, Hd, k):
    rnn = _rnn(N=4, T=25, I=I, Hd=Hd, op=op)
    conv, match = gap.conv1d_pair(rnn, k)
    assert abs(match - 1) < 0.03
    assert conv.flops == pytest.approx(match * rnn.flops)
    assert conv.output_shape[-1] == rnn.shape["T"] and conv.shape["C"] == I
    with pytest.raises(ValueError, match="odd"):
        gap.conv1d_pair(rnn, 2)


def test_pair_conv_reads_the_rnns_own_input(monkeypatch):
    rnn = _rnn(N=3, T=6, I=5, Hd=7)
    conv, _ = gap.conv1d_pair(rnn)
    seen = {}
    real = runners._conv_runner

    def spy(w, impl, inp, grads):
        seen["x"] = np.array(inp["x"], dtype=np.float64)
        return real(w, impl, inp, grads)

    monkeypatch.setattr(runners, "_conv_runner", spy)
    timer = gap.pair_timer(runners.Impl("numpy", 1), rnn, budget_s=0.0)
    assert timer(conv) > 0
    rnn_x = runners.make_runner(rnn, runners.Impl("numpy", 1))
    from bench.workloads import make_inputs
    x_seq = make_inputs(rnn, np.random.default_rng(0))["x"]
    np.testing.assert_array_equal(seen["x"][:, :, 0, :], x_seq.transpose(1, 2, 0))
    assert rnn_x.outputs()["y"].shape == (6, 3, 7)


def test_memory_guard_names_the_size():
    w = get_set("seeds", ops=["lstm"])[-1]
    need = gap.training_bytes(w)
    assert need > w.bytes
    with pytest.raises(gap.MemoryTooLarge, match="needs about .*MiB"):
        gap.check_memory([w], available=need // 2)
    gap.check_memory([w], available=need * 10)


# ---------------------------------------------------------------- the commands
def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_sweep_json(capsys):
    code, out, _ = run_cli(capsys, "sweep", "rnn_tanh", "--batches", "1,2,4", "--budget", "0.01",
                           "--json")
    assert code == 0
    d = json.loads(out)
    assert [r["N"] for r in d["rows"]] == [1, 2, 4]
    for r in d["rows"]:
        assert {"N", "ms", "gflops", "items_per_s", "pct_roofline", "workload"} <= set(r)
        assert r["gflops"] > 0
    assert {"r_inf_gflops", "n_half", "n_half_measured", "r2"} <= set(d["fit"])
    assert d["impl"].startswith("numba/v") and d["interrupted"] is False


def test_sweep_table(capsys):
    code, out, _ = run_cli(capsys, "sweep", "maxpool2d", "--batches", "1,2", "--budget", "0.01",
                           "--version", "1")
    assert code == 0
    for col in ("N", "ms", "GFLOP/s", "items/s", "% roofline", "r∞", "n½", "numba/v1"):
        assert col in out


def test_sweep_on_torch_reports_its_fit(capsys):
    """PyTorch's own r_inf / n_1/2 on the same sweep (the issue's n_1/2 comparison)."""
    pytest.importorskip("torch")
    code, out, _ = run_cli(capsys, "sweep", "rnn_tanh", "--backend", "torch", "--workload",
                           "quick", "--batches", "1,2,4", "--budget", "0.01", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["impl"] == "torch" and [r["N"] for r in d["rows"]] == [1, 2, 4]
    assert d["fit"] is not None and all(r["gflops"] > 0 for r in d["rows"])


def test_sweep_ctrl_c_keeps_measured_rows(capsys, monkeypatch):
    calls = {"n": 0}

    def fake_make_timer(impl, budget_s=0.2, validate=True):
        def timer(w):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return 1e-3 * w.batch
        return timer

    monkeypatch.setattr(gap, "make_timer", fake_make_timer)
    code, out, _ = run_cli(capsys, "sweep", "conv2d", "--batches", "1,2,4,8", "--json")
    assert code == cli.EXIT_INTERRUPTED
    d = json.loads(out)
    assert d["interrupted"] and [r["N"] for r in d["rows"]] == [1, 2]
    calls["n"] = 0
    code, out, _ = run_cli(capsys, "sweep", "conv2d", "--batches", "1,2,4,8")
    assert code == cli.EXIT_INTERRUPTED and "interrupted" in out and "after 2 of 4" in out


def test_gap_json(capsys):
    code, out, _ = run_cli(capsys, "gap", "--workload", "quick", "--batches", "1,2",
                           "--budget", "0.01", "--json")
    assert code == 0
    d = json.loads(out)
    assert {"cnn", "rnn", "gap", "step_latency_s", "thread_scaling", "pair", "batches",
            "impl"} <= set(d)
    assert set(d["gap"]) == {"1", "2"} and all(v > 0 for v in d["gap"].values())
    for k in ("cnn", "rnn"):
        assert {"r_inf_gflops", "n_half", "n_half_measured"} <= set(d[k]["fit"])
        assert d["thread_scaling"][k]["speedup"] > 0
    assert abs(d["pair"]["flop_match"] - 1) < 0.03


def test_gap_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is in the 'bench' extra")
    png = tmp_path / "gap.png"
    code, out, _ = run_cli(capsys, "gap", "--workload", "quick", "--batches", "1,2",
                           "--budget", "0.01", "--no-threads", "--plot", str(png), "--json")
    assert code == 0 and json.loads(out)["plot"] == str(png)
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gap_table(capsys):
    code, out, _ = run_cli(capsys, "gap", "--workload", "quick", "--batches", "1,2",
                           "--budget", "0.01", "--no-threads", "--no-pair")
    assert code == 0
    for col in ("CNN GFLOP/s", "RNN GFLOP/s", "gap CNN/RNN", "r∞ GFLOP/s", "n½ (fit",
                "per-step latency"):
        assert col in out


@pytest.mark.parametrize("argv,needle", [
    (["sweep", "conv2d", "--backend", "tpu"], "unknown backend 'tpu'"),
    (["sweep", "conv2d", "--version", "77"], "has versions"),
    (["sweep", "conv2d", "--workload", "nope"], "valid sets"),
    (["gap", "--workload", "nope"], "valid sets"),
    (["gap", "--backend", "tpu"], "expected one of"),
    (["gap", "--workload", "quick", "--rnn", "nope"], "quick-lstm"),
    (["sweep", "lstm", "--batches", "0,x"], "--batches"),
    (["sweep", "lstm", "--backend", "torch", "--version", "2"], "'torch' has no kernel versions"),
    (["gap", "--workload", "quick", "--backend", "torch"], "for PyTorch's r_inf"),
])
def test_bad_input_lists_valid_names(capsys, argv, needle):
    code, out, _ = run_cli(capsys, *argv)
    assert code == 2
    assert needle in out


def test_unknown_op_is_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["sweep", "conv3d"])
    assert e.value.code == 2
    assert "conv2d" in capsys.readouterr().err      # argparse lists the valid choices


def test_too_large_for_memory_is_refused_up_front(capsys, monkeypatch):
    monkeypatch.setattr(gap, "available_bytes", lambda: 1 << 20)
    code, out, _ = run_cli(capsys, "sweep", "lstm", "--workload", "seeds", "--batches", "64")
    assert code == 2 and "needs about" in out and "available" in out
    code, out, _ = run_cli(capsys, "gap")
    assert code == 2 and "needs about" in out
