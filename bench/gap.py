"""The parallelism gap between CNN and RNN workloads: batch sweeps and Hockney's (r_inf, n_1/2).

# N batch, C in-ch, K out-ch, H W in, P Q out, R S filter, T steps, I input, Hd hidden

A CNN layer is parallel across images *and* across space; an RNN is sequential across its ``T``
steps and parallel only across the ``N`` sentences of a batch (at ``N = 1`` each step is a GEMV).
This module measures how much that costs, on one machine, with one backend:

``hockney_fit(batches, seconds)``
    Hockney's model ``t(N) = a + b N = (N + n_1/2) / r_inf`` fitted by least squares over a batch
    sweep: ``r_inf = 1 / b`` items/s (x FLOPs per item -> GFLOP/s) is the asymptotic throughput,
    ``n_1/2 = a / b`` the batch at which half of it is reached. The sweep is also *read off*:
    ``measured_n_half`` is the smallest measured ``N`` whose throughput reaches half of the best
    measured throughput (model-free; robust when t(N) is not linear).
``gap_ratios(cnn, rnn)``
    GFLOP/s(CNN) / GFLOP/s(RNN) at every batch both sweeps measured (> 1: the CNN uses the
    machine better).
``step_latency``
    the RNN per-step latency floor: the training step's time at ``N = 1`` divided by ``T``.
``thread_scaling``
    time at 1 thread / time at all threads (``numba.set_num_threads`` and, with threadpoolctl,
    the BLAS pool too: several numba RNN versions call NumPy's BLAS per step).
``conv1d_pair``
    a like-for-like pair on identical input: a temporal convolution (``layers.Conv1d``'s kernels:
    conv2d with height 1) sliding over the same ``(T, N, I)`` sequence the RNN reads, ``k`` wide
    (odd, padding ``(k-1)/2`` so the output has ``T`` steps), ``I -> K`` channels with ``K``
    chosen so its FLOPs match the RNN's: ``2 N T K I k = 2 N T G Hd (I + Hd)`` ->
    ``K = round(G Hd (I + Hd) / (I k))`` (mismatch <= ``1 / (2K)``, reported as ``flop_match``).

Every time is one *training step* (forward + complete backward, :mod:`bench.runners`), counted
with :attr:`Workload.training_flops`; implementations are validated against the float64 NumPy
reference before anything is timed. The timing function is injectable (``timer=``), so the maths
is tested on synthetic timings with known answers.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Callable, Iterable, Sequence

import numpy as np

from . import flops as _f
from . import runners, workloads
from .timer import time_call

__all__ = ["HockneyFit", "hockney_fit", "measured_n_half", "gap_ratios", "SweepRow",
           "sweep", "make_timer", "thread_scaling", "threads", "conv1d_pair", "pair_sweep",
           "training_bytes", "available_bytes", "check_memory", "MemoryTooLarge", "gap_report",
           "pick_family", "DEFAULT_BATCHES"]

DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64)

Timer = Callable[[workloads.Workload], float]


# ----------------------------------------------------------------------------
# Hockney's model
# ----------------------------------------------------------------------------
@dataclasses.dataclass
class HockneyFit:
    """``t(N) = a + b N`` fitted to a batch sweep (seconds, items = images or sentences).

    Attributes
    ----------
    a, b : float
        intercept (s) and slope (s per item).
    r_inf : float
        ``1 / b``, asymptotic items per second (``nan`` when ``b <= 0``).
    n_half : float
        ``a / b`` clamped at 0 (a negative intercept means no measurable start-up cost).
    r_inf_gflops : float or None
        ``r_inf * flops_per_item / 1e9`` when FLOPs per item were given.
    n_half_measured : int or None
        smallest measured N whose throughput reaches half the best measured throughput.
    r2 : float
        coefficient of determination of the linear fit (1 = exactly linear).
    """

    a: float
    b: float
    r_inf: float
    n_half: float
    r_inf_gflops: float | None
    n_half_measured: int | None
    r2: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def hockney_fit(batches: Sequence[float], seconds: Sequence[float],
                flops_per_item: float | None = None, weights: str | None = None) -> HockneyFit:
    """Fit ``t = a + b N`` by least squares and derive ``r_inf = 1/b``, ``n_1/2 = a/b``.

    Parameters
    ----------
    batches, seconds : sequences of equal length (>= 2 distinct batches)
        the sweep: batch ``N`` and time of one call at that batch.
    flops_per_item : float, optional
        FLOPs of one item (image or sentence); gives ``r_inf_gflops``.
    weights : {None, "relative"}
        None: ordinary least squares (absolute residuals; the largest batches dominate).
        ``"relative"``: minimise relative residuals ``(t_i - a - b N_i) / t_i``, which lets the
        small batches of a geometric sweep weigh as much as the large ones.

    Raises
    ------
    ValueError
        fewer than two distinct batches, mismatched lengths, or non-positive times.
    """
    n = np.asarray(batches, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    if n.shape != t.shape or n.ndim != 1:
        raise ValueError(f"batches and seconds must be 1-D of equal length, got {n.shape}, {t.shape}")
    if len(np.unique(n)) < 2:
        raise ValueError(f"hockney_fit needs at least two distinct batches, got {list(n)}")
    if np.any(t <= 0) or not np.all(np.isfinite(t)):
        raise ValueError(f"times must be positive and finite, got {list(t)}")
    if weights not in (None, "relative"):
        raise ValueError(f"weights must be None or 'relative', got {weights!r}")
    w = 1.0 / t if weights == "relative" else np.ones_like(t)
    A = np.stack([np.ones_like(n), n], axis=1) * w[:, None]
    (a, b), *_ = np.linalg.lstsq(A, t * w, rcond=None)
    a, b = float(a), float(b)
    resid = t - (a + b * n)
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / ss_tot if ss_tot > 0 else 1.0
    if b * n.max() > 1e-9 * t.max():   # b <= 0 (or rounding noise around 0): no growth
        r_inf, n_half = 1.0 / b, max(0.0, a / b)
    else:   # time does not grow with N: no asymptote inside the model
        r_inf, n_half = float("nan"), float("nan")
    gf = r_inf * flops_per_item / 1e9 if flops_per_item is not None else None
    return HockneyFit(a=a, b=b, r_inf=r_inf, n_half=n_half, r_inf_gflops=gf,
                      n_half_measured=measured_n_half(n, n / t), r2=r2)


def measured_n_half(batches: Sequence[float], throughputs: Sequence[float]) -> int | None:
    """Smallest measured ``N`` whose throughput is at least half the largest measured one."""
    pairs = sorted(zip(batches, throughputs))
    if not pairs:
        return None
    best = max(p for _, p in pairs)
    for n, p in pairs:
        if p >= 0.5 * best:
            return int(n)
    return None  # pragma: no cover - the maximum itself always qualifies


def gap_ratios(cnn_rows: Iterable[dict], rnn_rows: Iterable[dict]) -> dict[int, float]:
    """``{N: gflops_cnn / gflops_rnn}`` for every batch present in both sweeps."""
    c = {r["N"]: r["gflops"] for r in cnn_rows}
    r = {x["N"]: x["gflops"] for x in rnn_rows}
    return {n: c[n] / r[n] for n in sorted(c) if n in r and r[n] > 0}


# ----------------------------------------------------------------------------
# memory guard
# ----------------------------------------------------------------------------
class MemoryTooLarge(ValueError):
    """A workload whose arrays would not fit the machine's available memory."""


def training_bytes(w: workloads.Workload) -> int:
    """Estimated peak bytes of one training step of ``w``: inputs, outputs, saved activations,
    gradients (and a conv's im2col workspace for a few images)."""
    it = np.dtype(w.dtype).itemsize
    s = w.shape
    if w.op in workloads.RNN_OPS:
        T, N, I, Hd = s["T"], s["N"], s["I"], s["Hd"]
        G = _f.gates(w.op)
        states = {"lstm": 2, "gru": 1}.get(w.op, 0)    # cprev + tanh_c / hn
        elems = (2 * T * N * I                      # x, dx
                 + 2 * T * N * Hd                   # y, dy
                 + T * N * Hd * (1 + states)        # hprev (+ cell states)
                 + 2 * T * N * G * Hd               # saved gates, pre-activation grads
                 + 2 * G * Hd * (I + Hd + 2)        # weights, biases and their gradients
                 + 6 * N * Hd)                      # h0, c0, h_n, dh...
        return it * elems
    N, C, H, W = s["N"], s["C"], s["H"], s["W"]
    out = int(np.prod(w.output_shape))
    if w.op in workloads.POOL_OPS:
        return it * (2 * N * C * H * W + 2 * out) + 8 * out   # + int64 argmax
    K, R, S = s["K"], s["R"], s["S"]
    _, _, P, Q = w.output_shape
    workspace = min(N, os.cpu_count() or 1) * C * R * S * P * Q
    return it * (2 * N * C * H * W + 2 * out + 2 * (K * C * R * S + K) + workspace)


def available_bytes() -> int | None:
    """Available physical memory (``os.sysconf``), or None where it cannot be read."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def check_memory(ws: Iterable[workloads.Workload], fraction: float = 0.8,
                 available: int | None = None) -> None:
    """Raise :class:`MemoryTooLarge` (naming the size) for a workload over ``fraction`` of RAM."""
    avail = available_bytes() if available is None else available
    if avail is None:
        return
    for w in ws:
        need = training_bytes(w)
        if need > fraction * avail:
            raise MemoryTooLarge(
                f"workload {w.name} ({w.describe()}) needs about {_fmt_bytes(need)} for inputs, "
                f"outputs, saved activations and gradients; only {_fmt_bytes(avail)} is "
                f"available (limit {fraction:.0%}). Use a smaller --scale or --batches.")


# ----------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------
def make_timer(impl: runners.Impl, budget_s: float = 0.2, validate: bool = True) -> Timer:
    """A ``timer(workload) -> seconds`` (median training step) on ``impl``.

    With ``validate`` the first workload of every family is checked against the float64
    reference before it is timed (a mismatch raises ``AssertionError`` naming the tensor).
    """
    checked: set[str] = set()

    def timer(w: workloads.Workload) -> float:
        r = runners.make_runner(w, impl)
        if validate and w.family not in checked:
            bad = runners.validate(r.outputs(), runners.reference_outputs(w), w.dtype)
            if bad:
                raise AssertionError(f"{impl.label} on {w.name}: tensor {bad.tensor!r} differs "
                                     f"from the reference (worst |error| {bad.worst_error:.3g}, "
                                     f"tensor max {bad.scale:.3g})")
            checked.add(w.family)
        t = time_call(r.run, budget_s=budget_s, min_repeats=3,
                      device=runners.impl_device(impl))
        return t.median

    return timer


@dataclasses.dataclass
class SweepRow:
    """One batch of a sweep."""

    N: int
    seconds: float
    gflops: float
    items_per_s: float
    workload: str
    shape: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def sweep(family: workloads.Workload, batches: Iterable[int], timer: Timer,
          on_row: Callable[[SweepRow], None] | None = None) -> list[SweepRow]:
    """Time ``family`` at every batch; ``on_row`` sees each row as soon as it is measured
    (so an interrupted sweep keeps what it has)."""
    rows = []
    for n in batches:
        w = family.with_batch(int(n))
        t = timer(w)
        row = SweepRow(N=int(n), seconds=t, gflops=w.training_flops / t / 1e9,
                       items_per_s=n / t, workload=w.name, shape=w.describe())
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


def fit_rows(family: workloads.Workload, rows: Sequence[SweepRow | dict],
             weights: str | None = None) -> HockneyFit | None:
    """Hockney fit of a sweep's rows (None with fewer than two distinct batches)."""
    d = [r if isinstance(r, dict) else r.to_dict() for r in rows]
    if len({r["N"] for r in d}) < 2:
        return None
    per_item = family.with_batch(1).training_flops
    return hockney_fit([r["N"] for r in d], [r["seconds"] for r in d], per_item, weights)


@contextlib.contextmanager
def threads(n: int):
    """Run with ``n`` numba threads and (with threadpoolctl) ``n`` BLAS threads."""
    import numba
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:   # pragma: no cover - threadpoolctl is a dependency
            yield
        else:
            with threadpool_limits(limits=n, user_api="blas"):
                yield
    finally:
        numba.set_num_threads(old)


def max_threads() -> int:
    import numba
    return int(numba.config.NUMBA_NUM_THREADS)


def thread_scaling(w: workloads.Workload, timer: Timer, counts: Sequence[int] | None = None) -> dict:
    """Time ``w`` at each thread count (default ``[1, all cores]``); speedup = t(1) / t(max)."""
    counts = sorted(set(counts or (1, max_threads())))
    secs = {}
    for c in counts:
        with threads(c):
            secs[c] = timer(w)
    return {"workload": w.name, "threads": counts, "seconds": {str(c): s for c, s in secs.items()},
            "speedup": secs[counts[0]] / secs[counts[-1]]}


# ----------------------------------------------------------------------------
# the like-for-like pair
# ----------------------------------------------------------------------------
def conv1d_pair(rnn: workloads.Workload, k: int = 3) -> tuple[workloads.Workload, float]:
    """The temporal convolution whose FLOPs match recurrent workload ``rnn``.

    Returns ``(conv workload, flop_match)`` where the conv is conv2d with ``H = 1, W = T``,
    ``C = I``, filter ``1 x k``, padding ``(0, (k-1)/2)`` (output length ``T``) and
    ``K = round(G Hd (I + Hd) / (I k))`` output channels; ``flop_match`` = conv FLOPs / RNN FLOPs.
    """
    if k < 1 or k % 2 == 0:
        raise ValueError(f"k: the conv width must be odd (output length T needs symmetric "
                         f"padding), got {k!r}")
    s = rnn.shape
    T, N, I, Hd = s["T"], s["N"], s["I"], s["Hd"]
    G = _f.gates(rnn.op)
    K = max(1, round(G * Hd * (I + Hd) / (I * k)))
    fam = f"conv1d-k{k}-{I}to{K}-t{T}"
    conv = workloads.Workload(f"{fam}-n{N}", "conv2d",
                              dict(N=N, C=I, H=1, W=T, K=K, R=1, S=k, stride=1,
                                   padding=(0, (k - 1) // 2), dilation=1),
                              dtype=rnn.dtype, family=fam, scale=rnn.scale)
    return conv, conv.flops / rnn.flops


def pair_timer(impl: runners.Impl, rnn_family: workloads.Workload, budget_s: float = 0.2,
               validate: bool = True) -> Timer:
    """Like :func:`make_timer`, but a conv1d workload from :func:`conv1d_pair` reads the SAME
    numbers as the RNN runner of ``rnn_family`` at that batch: the RNN's ``x (T, N, I)`` seen as
    ``(N, I, 1, T)`` (one transpose, outside the timed call)."""
    base = make_timer(impl, budget_s, validate)
    checked: set[str] = set()

    def timer(w: workloads.Workload) -> float:
        if not w.family.startswith("conv1d-"):
            return base(w)
        x_seq = workloads.make_inputs(rnn_family.with_batch(w.batch),
                                      np.random.default_rng(0))["x"]    # = the RNN runner's x
        inp = workloads.make_inputs(w, np.random.default_rng(0))
        inp["x"] = np.ascontiguousarray(x_seq.transpose(1, 2, 0)[:, :, None, :])
        grads = runners.gradient_seeds(w, w.dtype)
        if validate and w.family not in checked:
            ref = runners._conv_runner(
                w, runners.Impl("numpy", 1), {k: v.astype(np.float64) for k, v in inp.items()},
                {k: v.astype(np.float64) for k, v in grads.items()}).outputs()
            got = runners._conv_runner(w, impl, *_on_device(impl, inp, grads)).outputs()
            bad = runners.validate(got, ref, w.dtype)
            if bad:
                raise AssertionError(f"{impl.label} on {w.name}: tensor {bad.tensor!r} differs "
                                     f"from the reference (worst |error| {bad.worst_error:.3g})")
            checked.add(w.family)
        r = runners._conv_runner(w, impl, *_on_device(impl, inp, grads))
        return time_call(r.run, budget_s=budget_s, min_repeats=3,
                         device="cuda" if impl.backend == "cuda" else "cpu").median

    return timer


def _on_device(impl, inp, grads):
    if impl.backend != "cuda":
        return inp, grads
    import cupy
    return ({k: cupy.asarray(v) for k, v in inp.items()},
            {k: cupy.asarray(v) for k, v in grads.items()})


def pair_sweep(rnn_family: workloads.Workload, batches: Iterable[int], timer: Timer, k: int = 3,
               on_row=None, rnn_rows: Sequence[dict] | None = None) -> dict:
    """Sweep the conv1d/RNN pair over ``batches`` on identical input; gap ratio per batch.

    ``rnn_rows`` (dicts of an RNN sweep of ``rnn_family`` already measured on the same input)
    are reused instead of timing the RNN again."""
    batches = list(batches)
    conv_family, match = conv1d_pair(rnn_family, k)
    cr = [r.to_dict() for r in sweep(conv_family, batches, timer, on_row)]
    rr = (list(rnn_rows) if rnn_rows is not None
          else [r.to_dict() for r in sweep(rnn_family, batches, timer, on_row)])
    return {"conv": conv_family.with_batch(1).describe().replace("conv2d", "conv1d"),
            "rnn": rnn_family.with_batch(1).describe(), "k": k, "flop_match": match,
            "conv_rows": cr, "rnn_rows": rr,
            "gap": {str(n): g for n, g in gap_ratios(cr, rr).items()}}


# ----------------------------------------------------------------------------
# the whole report
# ----------------------------------------------------------------------------
def pick_family(set_ws: Sequence[workloads.Workload], kind: str, name: str | None) -> workloads.Workload:
    """The family named ``name`` (or the first conv2d / recurrent family) of a workload set.

    ``kind``: ``"cnn"`` (conv2d families), ``"rnn"`` (recurrent) or ``"any"``."""
    ops = {"cnn": workloads.CONV_OPS, "rnn": workloads.RNN_OPS}.get(kind, workloads.OPS)
    cands = [w for w in set_ws if w.op in ops]
    if name is not None:
        match = [w for w in cands if w.family == name]
        if not match:
            flag = {"cnn": "--cnn", "rnn": "--rnn"}.get(kind, "--family")
            raise ValueError(f"{flag}: unknown family {name!r}; valid: "
                             f"{sorted({w.family for w in cands})}")
        return match[0]
    if not cands:
        raise ValueError(f"the workload set has no {kind} family")
    return cands[0]


def gap_report(cnn: workloads.Workload, rnn: workloads.Workload, batches: Sequence[int],
               timer: Timer, pair: bool = True, pair_k: int = 3, pair_timer_: Timer | None = None,
               scaling: bool = True, scaling_timer: Timer | None = None,
               on_row=None) -> dict:
    """Sweep a CNN and an RNN family over ``batches`` and derive every gap metric.

    Returns a JSON-ready dict: ``cnn``/``rnn`` (family, shape, rows, fit), ``gap`` (ratio per
    batch), ``step_latency_s`` (RNN time at the smallest batch / T; the floor when it is 1),
    ``thread_scaling`` (``cnn``/``rnn``, at the largest batch), ``pair`` (the conv1d-vs-RNN
    like-for-like sweep).
    """
    batches = sorted({int(b) for b in batches})
    out = {"batches": batches}
    for kind, fam in (("cnn", cnn), ("rnn", rnn)):
        rows = sweep(fam, batches, timer, on_row)
        fit = fit_rows(fam, rows)
        out[kind] = {"family": fam.family, "op": fam.op, "shape": fam.with_batch(1).describe(),
                     "flops_per_item": fam.with_batch(1).training_flops,
                     "rows": [r.to_dict() for r in rows], "fit": fit.to_dict() if fit else None}
    out["gap"] = {str(n): g for n, g in gap_ratios(out["cnn"]["rows"], out["rnn"]["rows"]).items()}
    r0 = out["rnn"]["rows"][0]
    out["step_latency_s"] = r0["seconds"] / rnn.shape["T"]
    out["step_latency_N"] = r0["N"]
    if scaling:
        st = scaling_timer or timer
        nmax = batches[-1]
        out["thread_scaling"] = {kind: thread_scaling(fam.with_batch(nmax), st)
                                 for kind, fam in (("cnn", cnn), ("rnn", rnn))}
    if pair:
        out["pair"] = pair_sweep(rnn, batches, pair_timer_ or timer, pair_k, on_row,
                                 rnn_rows=out["rnn"]["rows"])
    return out


def plot_gap(report: dict, path, title: str = "") -> None:
    """Write the gap figure: GFLOP/s vs batch (log-log) with r_inf and n_1/2, the gap ratio, and
    thread scaling; readable without the table."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5), gridspec_kw={"width_ratios": [3, 2, 1.3]})
    ax = axes[0]
    styles = {"cnn": ("tab:blue", "o"), "rnn": ("tab:red", "s")}
    for kind in ("cnn", "rnn"):
        d = report[kind]
        col, mk = styles[kind]
        ns = [r["N"] for r in d["rows"]]
        gf = [r["gflops"] for r in d["rows"]]
        label = f"{kind.upper()}: {d['shape'].replace(' N1 ', ' ')}"
        if kind == "rnn" and "pair" in report:
            label += " (also the like-for-like RNN)"
        ax.plot(ns, gf, marker=mk, color=col, label=label)
        fit = d.get("fit")
        if fit and fit["r_inf_gflops"] and math.isfinite(fit["r_inf_gflops"]):
            ax.axhline(fit["r_inf_gflops"], color=col, ls="--", lw=1,
                       label=f"{kind.upper()} r∞ = {fit['r_inf_gflops']:.3g} GFLOP/s (fit)")
            nh = fit["n_half"]
            if nh and math.isfinite(nh) and nh > 0:
                ax.plot([nh], [fit["r_inf_gflops"] / 2], marker="v", ms=11, color=col, ls="none",
                        label=f"{kind.upper()} n½ = {nh:.3g} (r∞/2)")
    if "pair" in report:
        p = report["pair"]
        ax.plot([r["N"] for r in p["conv_rows"]], [r["gflops"] for r in p["conv_rows"]],
                marker="^", color="tab:cyan", ls=":",
                label=f"like-for-like {p['conv'].replace(' N1 ', ' ')} on the RNN's input")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch N (images for CNN, sentences for RNN)")
    ax.set_ylabel("training-step throughput [GFLOP/s]")
    ax.set_title("throughput vs batch (dashed: Hockney r∞; ▼: n½)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")

    ax = axes[1]
    g = report["gap"]
    ax.plot([int(n) for n in g], list(g.values()), marker="o", color="k",
            label=f"{report['cnn']['family']} / {report['rnn']['family']}")
    if "pair" in report:
        pg = report["pair"]["gap"]
        ax.plot([int(n) for n in pg], list(pg.values()), marker="^", color="tab:purple", ls=":",
                label=f"conv1d / RNN on identical input (FLOPs x{report['pair']['flop_match']:.3f})")
    ax.axhline(1.0, color="gray", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch N")
    ax.set_ylabel("gap ratio = GFLOP/s(CNN) / GFLOP/s(RNN)")
    ax.set_title("parallelism gap at equal batch (>1: CNN uses the machine better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)

    ax = axes[2]
    ts = report.get("thread_scaling")
    if ts:
        kinds = list(ts)
        vals = [ts[k]["speedup"] for k in kinds]
        bars = ax.bar([k.upper() for k in kinds], vals, color=[styles[k][0] for k in kinds])
        for b_, v in zip(bars, vals):
            ax.text(b_.get_x() + b_.get_width() / 2, v, f"{v:.2f}x", ha="center", va="bottom")
        nt = ts[kinds[0]]["threads"]
        ax.axhline(nt[-1], color="gray", ls="--", lw=1, label=f"ideal ({nt[-1]} threads)")
        ax.legend(fontsize=7)
        ax.set_title(f"thread scaling {nt[0]} → {nt[-1]} (N={report['batches'][-1]})")
    ax.set_ylabel("speedup t(1 thread) / t(all)")
    lat = report.get("step_latency_s")
    if lat is not None:
        ax.set_xlabel(f"RNN per-step latency at N={report['step_latency_N']}: {lat * 1e6:.1f} µs")
    from matplotlib.ticker import FormatStrFormatter, NullFormatter
    for a in axes[:2]:      # plain numbers, not 2^k / 6x10^1
        a.set_xticks(report["batches"])
        a.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        a.xaxis.set_minor_formatter(NullFormatter())
        a.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        a.yaxis.set_minor_formatter(NullFormatter())
    fig.suptitle(title or "CNN vs RNN parallelism gap (forward + backward)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
