"""The CNN-vs-RNN parallelism gap as asv ``track_*`` numbers (all smaller-is-better).

``setup_cache`` runs ONE small batch sweep per backend (the ``quick`` set's conv3x3 and tanh-RNN
families, N = 1..16, a few seconds on a CPU) with :func:`bench.gap.gap_report` when the commit
has it, and with a local least-squares fit of ``t = a + b N`` otherwise; the track methods read
that cache, so the sweep is not repeated per number.

* ``track_gap_ratio``       GFLOP/s(CNN) / GFLOP/s(RNN) at batch N (a kernel change that helps the
                            RNN shrinks it)
* ``track_n_half``          Hockney's n_1/2 of each family (batch for half of r_inf; the n_1/2
                            read off the sweep where the fit has none)
* ``track_rnn_step_latency`` RNN training-step time at N = 1 divided by T
* ``track_seconds_per_gflop_{cnn,rnn}``  seconds per GFLOP at the largest batch (measured, not
                            fitted: a fit's r_inf is too noisy to gate on)
"""
from __future__ import annotations

from . import _common as C

np = C.np    # imported (guarded) by _common
BATCHES = [1, 2, 4, 8, 16]
CNN_FAMILY = "quick-conv3x3"
RNN_FAMILY = "quick-rnn_tanh"


def _sweep(backend: str) -> dict:
    import numpy as np
    ws = C.workloads.get_set("quick", scale_batch=False) if C.workloads else []
    cnn = next(w for w in ws if w.family == CNN_FAMILY)
    rnn = next(w for w in ws if w.family == RNN_FAMILY)
    impls = {}
    for fam in (cnn, rnn):
        op = C.runners.forward_op(fam.op)
        impls[fam.op] = C.runners.Impl(backend, C.registry.default_version(op, backend))
    try:
        from bench import gap as G
    except Exception:
        G = None
    if G is not None:
        timers = {op: G.make_timer(impl, budget_s=0.05, validate=False)
                  for op, impl in impls.items()}
        rep = G.gap_report(cnn, rnn, BATCHES, lambda w: timers[w.op](w), pair=False,
                           scaling=False)
        return {"gap": {int(n): g for n, g in rep["gap"].items()},
                "n_half": {k: _n_half(rep[k]["fit"]) for k in ("cnn", "rnn")},
                "gflops_nmax": {k: rep[k]["rows"][-1]["gflops"] for k in ("cnn", "rnn")},
                "step_latency": rep["step_latency_s"]}
    # an older commit without bench.gap: the same numbers from runners + a local fit
    out = {"gap": {}, "n_half": {}, "gflops_nmax": {}}
    gflops = {}
    for kind, fam in (("cnn", cnn), ("rnn", rnn)):
        ts = []
        for n in BATCHES:
            w = fam.with_batch(n)
            r = C.runners.make_runner(w, impls[fam.op])
            ts.append(C.measure_median(r.run, impls[fam.op], 0.05))
        b, a = np.polyfit(BATCHES, ts, 1)
        out["n_half"][kind] = max(0.0, a / b) if b > 0 else float("nan")
        gflops[kind] = {n: fam.with_batch(n).training_flops / t / 1e9 for n, t in zip(BATCHES, ts)}
        out["gflops_nmax"][kind] = gflops[kind][BATCHES[-1]]
        if kind == "rnn":
            out["step_latency"] = ts[0] / fam.shape["T"]
    out["gap"] = {n: gflops["cnn"][n] / gflops["rnn"][n] for n in BATCHES}
    return out


def _n_half(fit: dict) -> float:
    """Hockney's fitted n½; where the fit has none (time not growing with N over the sweep,
    e.g. a tiny shape on a loaded machine) the n½ read off the sweep, so the tracked number
    stays defined."""
    n_half = fit["n_half"]
    if np.isfinite(n_half) or fit.get("n_half_measured") is None:
        return n_half
    return float(fit["n_half_measured"])


class Gap:
    """CNN (quick-conv3x3) vs RNN (quick-rnn_tanh) on one backend."""
    params = [["numba", "cuda"]]
    param_names = ["backend"]
    timeout = 180

    def setup_cache(self):
        out = {}
        if C.runners is None:
            return out
        for backend in self.params[0]:
            try:
                out[backend] = _sweep(backend)
            except Exception as exc:   # backend missing / lacking an op at this commit
                out[backend] = f"{type(exc).__name__}: {exc}"
        return out

    def setup(self, cache, backend):
        got = cache.get(backend)
        if not isinstance(got, dict):
            C.skip(f"no gap sweep on {backend!r}: {got or C._IMPORT_ERROR}")
        self.r = got

    def track_gap_ratio_n1(self, cache, backend):
        return self.r["gap"][1]
    track_gap_ratio_n1.unit = "ratio"

    def track_gap_ratio_n16(self, cache, backend):
        return self.r["gap"][BATCHES[-1]]
    track_gap_ratio_n16.unit = "ratio"

    def track_n_half_cnn(self, cache, backend):
        return self.r["n_half"]["cnn"]
    track_n_half_cnn.unit = "images"

    def track_n_half_rnn(self, cache, backend):
        return self.r["n_half"]["rnn"]
    track_n_half_rnn.unit = "sentences"

    def track_rnn_step_latency(self, cache, backend):
        return self.r["step_latency"]
    track_rnn_step_latency.unit = "seconds"

    def track_seconds_per_gflop_cnn(self, cache, backend):
        return 1.0 / self.r["gflops_nmax"]["cnn"]
    track_seconds_per_gflop_cnn.unit = "s/GFLOP"

    def track_seconds_per_gflop_rnn(self, cache, backend):
        return 1.0 / self.r["gflops_nmax"]["rnn"]
    track_seconds_per_gflop_rnn.unit = "s/GFLOP"
