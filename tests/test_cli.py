"""The seqgrid CLI: validation before timing, JSON output, errors."""
import json

import numpy as np
import pytest

from bench import cli, runners
from bench.workloads import get_set
from kernels import registry


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr().out
    return code, out


def test_compare_quick_json(capsys):
    code, out = run_cli(capsys, "compare", "conv2d", "maxpool2d", "--workload", "quick",
                        "--no-torch", "--budget", "0.01", "--json")
    assert code == 0
    data = json.loads(out)
    assert not data["failures"]
    impls = {(r["op"], r["impl"]) for r in data["rows"]}
    for v in registry.versions("conv2d_forward", "numba"):
        assert ("conv2d", f"numba/v{v}") in impls
    for r in data["rows"]:
        assert r["ms"] > 0 and r["gflops"] > 0 and r["pct_roofline"] > 0


def test_compare_rounds_pool_interleaved_repeats(capsys, monkeypatch):
    """--rounds K times the implementations of a workload in turn K times: every row pools
    K rounds of repeats (3 each at a tiny budget) and is measured in round order
    (impl A, impl B, A, B, ...); a bad --rounds is a usage error naming it."""
    calls = []
    real = cli.time_call

    def spy(fn, **kw):
        t = real(fn, **kw)
        calls.append((kw["warmup"], len(t.times)))
        return t

    monkeypatch.setattr(cli, "time_call", spy)
    code, out = run_cli(capsys, "compare", "maxpool2d", "--workload", "quick", "--backends",
                        "numba", "--versions", "1,2", "--no-torch", "--budget", "0.001",
                        "--rounds", "3", "--json")
    assert code == 0
    rows = json.loads(out)["rows"]
    workloads = {r["workload"] for r in rows}
    assert len(calls) == 3 * len(rows) == 3 * 2 * len(workloads)
    assert [w for w, _ in calls[:4]] == [1, 1, 0, 0]       # warm-up only in the first round
    for r in rows:
        assert r["rounds"] == 3 and r["n"] >= 3 * 3
    assert cli.main(["compare", "maxpool2d", "--rounds", "0", "--no-torch"]) == 2
    assert "rounds" in capsys.readouterr().out


def test_vs_torch_ratios_and_summary():
    """vs_torch pairs each row with PyTorch's row of the same workload and device (torch for
    CPU rows, torch-cuda for GPU rows); the summary gives median and worst per op and impl."""
    def row(w, impl, ms, device="cpu", op="lstm"):
        return {"workload": w, "op": op, "impl": impl, "ms": ms, "device": device}
    rows = [row("a", "numba/v5", 50.0), row("a", "torch", 100.0),
            row("a", "cuda/v1", 2.0, "cuda"), row("a", "torch-cuda", 1.0, "cuda"),
            row("b", "numba/v5", 200.0), row("b", "torch", 100.0),
            row("c", "numba/v5", 10.0), row("c", "torch", 40.0),
            row("d", "numba/v5", 10.0)]                     # no PyTorch row: no ratio
    cli._add_vs_torch(rows)
    assert [r["vs_torch"] for r in rows] == [2.0, 1.0, 0.5, 1.0, 0.5, 1.0, 4.0, 1.0, None]
    summary = {(g["op"], g["impl"]): g for g in cli.vs_torch_summary(rows)}
    assert set(summary) == {("lstm", "numba/v5"), ("lstm", "cuda/v1")}
    g = summary[("lstm", "numba/v5")]
    assert g["workloads"] == 3 and g["median_vs_torch"] == 2.0
    assert g["min_vs_torch"] == 0.5 and g["min_workload"] == "b"


def test_mismatch_exits_nonzero_and_names_the_tensor(capsys):
    good = registry.get("maxpool2d_backward", "numba")

    def wrong_backward(dout, argmax, x_shape):
        dx = good(dout, argmax, x_shape)
        dx.reshape(-1)[0] += 1.0          # one wrong element is enough
        return dx

    ver = 999
    registry.register("maxpool2d_forward", "numba", ver)(registry.get("maxpool2d_forward", "numba").fn)
    registry.register("maxpool2d_backward", "numba", ver)(wrong_backward)
    try:
        code, out = run_cli(capsys, "compare", "maxpool2d", "--workload", "seeds", "--scale",
                            "0.25", "--backends", "numba", "--versions", f"1,{ver}",
                            "--no-torch", "--budget", "0.01", "--json")
    finally:
        for op in ("maxpool2d_forward", "maxpool2d_backward"):
            registry._KERNELS.pop((op, "numba", ver))
    assert code == 1
    data = json.loads(out)
    names = [w.name for w in get_set("seeds", scale=0.25, ops=["maxpool2d"])]
    assert len(names) > 1
    # the wrong kernel fails on every workload and is never timed; the correct one is timed
    # on every workload, the ones after a failure included
    assert [(f["workload"], f["impl"], f["tensor"]) for f in data["failures"]] == [
        (n, f"numba/v{ver}", "dx") for n in names]
    assert [(r["workload"], r["impl"]) for r in data["rows"]] == [(n, "numba/v1") for n in names]


def test_unknown_version_and_backend_are_errors(capsys):
    assert cli.main(["compare", "conv2d", "--backends", "numba", "--versions", "77", "--no-torch"]) == 2
    assert "versions" in capsys.readouterr().out
    assert cli.main(["compare", "conv2d", "--backends", "tpu", "--no-torch"]) == 2
    assert "unknown backend 'tpu'" in capsys.readouterr().out


def test_info_json(capsys):
    code, out = run_cli(capsys, "info", "--json", "--budget", "0.05")
    assert code == 0
    data = json.loads(out)
    assert data["backends"]["numpy"]["available"]
    assert data["peaks"]["cpu"]["sgemm_gflops"] > 0
    assert any(k["op"] == "conv2d_forward" for k in data["kernels"])


def test_validate_catches_nan_and_shape():
    ref = {"out": np.ones((2, 2))}
    assert runners.validate({"out": np.full((2, 2), np.nan)}, ref, np.float32).tensor == "out"
    assert runners.validate({"out": np.ones((2, 3))}, ref, np.float32).tensor == "out"
    assert runners.validate({"out": np.ones((2, 2)) + 1e-5}, ref, np.float32) is None


@pytest.mark.parametrize("family", ["rnn_tanh", "lstm", "gru"])
def test_recurrent_runners_validate(family):
    if not registry.versions(f"{family}_sequence_forward", "numba"):
        pytest.skip("recurrent kernels not registered")
    w = get_set("quick", ops=[family])[0]
    ref = runners.reference_outputs(w)
    for impl in runners.implementations(family, ["numba"], with_torch=runners.torch_available()):
        assert runners.validate(runners.make_runner(w, impl).outputs(), ref, w.dtype) is None, impl
