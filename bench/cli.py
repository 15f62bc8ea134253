"""The ``seqgrid`` command line.

    seqgrid info                      backends (and why one is unavailable), kernels, machine peaks
    seqgrid compare OP [OP ...]       validate every implementation against the reference,
                                      then time forward+backward on a workload set
    seqgrid sweep OP                  one implementation over a batch sweep: GFLOP/s vs N,
                                      Hockney's r_inf and n_1/2
    seqgrid gap                       CNN vs RNN: throughput vs N, r_inf, n_1/2, gap ratio,
                                      per-step latency, thread scaling, conv1d-vs-RNN pair

Every command takes ``--json`` to print machine-readable output instead of tables.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from rich.console import Console
from rich.table import Table

from kernels import registry

from . import gap as gapm
from . import roofline, runners, workloads
from .timer import Timing, time_call

EXIT_USAGE = 2          # bad input (names listed in the message), too large for memory
EXIT_INTERRUPTED = 130  # Ctrl-C: rows measured so far are still printed


def _console(args) -> Console:
    # in --json mode tables/progress go to stderr so stdout stays parseable
    con = Console(stderr=bool(getattr(args, "json", False)), highlight=False)
    if not con.is_terminal:
        con.width = max(con.width, 160)   # piped output: don't wrap tables at 80 columns
    return con


# ----------------------------------------------------------------------------
# info
# ----------------------------------------------------------------------------
def cmd_info(args) -> int:
    status = registry.backend_status()
    kern = registry.kernels()
    peaks = roofline.cpu_peaks(budget_s=args.budget, refresh=args.remeasure)
    gpu, gpu_reason = roofline.gpu_peaks() if status["cuda"][0] else (None, status["cuda"][1])
    if args.json:
        print(json.dumps({
            "backends": {b: {"available": ok, "reason": why} for b, (ok, why) in status.items()},
            "kernels": [{"op": k.op, "backend": k.backend, "version": k.version, "doc": k.doc,
                         "default": k.version == registry.default_version(k.op, k.backend)}
                        for k in kern],
            "peaks": {"cpu": peaks, "gpu": gpu, "gpu_reason": None if gpu else gpu_reason},
        }, indent=2, default=str))
        return 0
    con = _console(args)
    t = Table(title="backends")
    t.add_column("backend")
    t.add_column("available")
    t.add_column("detail")
    for b, (ok, why) in status.items():
        t.add_row(b, "[green]yes[/]" if ok else "[red]no[/]", why)
    con.print(t)
    t = Table(title="kernels (* = default version)")
    t.add_column("op")
    for b in registry.BACKENDS:
        t.add_column(b)
    for op in registry.ops():
        row = [op]
        for b in registry.BACKENDS:
            vs = registry.versions(op, b)
            d = registry.default_version(op, b) if vs else None
            row.append(" ".join(f"v{v}{'*' if v == d else ''}" for v in vs))
        t.add_row(*row)
    con.print(t)
    t = Table(title="measured peaks (roofline)")
    t.add_column("machine")
    t.add_column("sgemm GFLOP/s", justify="right")
    t.add_column("copy GB/s", justify="right")
    t.add_row(f"CPU ({peaks.get('threads')} threads)", f"{peaks['sgemm_gflops']:.1f}",
              f"{peaks['copy_gbs']:.1f}")
    if gpu:
        t.add_row("GPU", f"{gpu['sgemm_gflops']:.1f}", f"{gpu['copy_gbs']:.1f}")
    else:
        t.add_row("GPU", "-", "-", end_section=False)
    con.print(t)
    if not gpu:
        con.print(f"GPU: {gpu_reason}")
    if peaks.get("suspect"):
        by = ", ".join(f"{k} thread(s) {v:.1f}" for k, v in peaks["sgemm_gflops_by_threads"].items())
        con.print(f"[yellow]warning:[/] threaded sgemm measured below half of serial ({by} "
                  "GFLOP/s): the machine was busy; run `seqgrid info --remeasure` when it is "
                  "quiet (% of roofline uses these peaks)")
    return 0


# ----------------------------------------------------------------------------
# compare
# ----------------------------------------------------------------------------
def _list(value: str | None):
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def compare(families, set_name="quick", scale=1.0, backends=None, versions=None,
            with_torch=True, budget_s=0.5, dtype="float32", progress=None, rounds=1):
    """Validate, then time, every implementation of each family on ``set_name``.

    With ``rounds`` > 1 the implementations of a workload are timed in turn ``rounds`` times
    (each time for ``budget_s``) and each row pools its repeats over the rounds: a slow phase
    of a shared machine then hits every implementation alike, which one pass per row does not
    guarantee.

    Returns
    -------
    rows : list of dict
        one per (workload, implementation): ms, GFLOP/s, GB/s, % of roofline, speedup.
    failures : list of dict
        implementations whose outputs differ from the reference on a workload: those are not
        timed there; the other implementations and the other workloads still are (the
        command then exits 1).
    """
    if int(rounds) != rounds or rounds < 1:
        raise ValueError(f"rounds: expected a positive integer, got {rounds!r}")
    peaks = roofline.cpu_peaks()
    rows, failures = [], []
    for family in families:
        runners.forward_op(family)      # validates the name
        impls = runners.implementations(family, backends, versions, with_torch)
        for w in workloads.get_set(set_name, scale=scale, ops=[family], dtype=dtype):
            gapm.check_memory([w])
            ref = runners.reference_outputs(w)
            prepared = []
            for impl in impls:   # llm.c style: validated before anything is timed
                r = runners.make_runner(w, impl)
                bad = runners.validate(r.outputs(), ref, w.dtype)
                if bad:          # a wrong kernel gets no time; the others still do
                    failures.append({"workload": w.name, "impl": impl.label, "tensor": bad.tensor,
                                     "worst_error": bad.worst_error, "scale": bad.scale})
                else:
                    prepared.append((impl, r))
            if not prepared:
                continue
            times = {impl.label: [] for impl, _ in prepared}
            first = {}
            for rnd in range(int(rounds)):
                for impl, r in prepared:
                    if progress:
                        progress(f"{w.name} {impl.label}"
                                 + (f" (round {rnd + 1}/{rounds})" if rounds > 1 else ""))
                    t = time_call(r.run, budget_s=budget_s, warmup=1 if rnd == 0 else 0,
                                  device=runners.impl_device(impl))
                    times[impl.label] += t.times
                    first.setdefault(impl.label, t.first_call_s)
            base = None
            for impl, r in prepared:
                t = Timing(times[impl.label], first_call_s=first[impl.label])
                flops = w.training_flops
                gflops = t.gflops(flops)
                nbytes = 2 * w.bytes   # forward and backward each move about the forward's bytes
                base = base or t.median
                rows.append({
                    "workload": w.name, "op": family, "shape": w.describe(), "impl": impl.label,
                    "ms": t.median * 1e3, "ms_min": t.min * 1e3, "spread": t.spread, "n": t.n,
                    "rounds": int(rounds),
                    "first_call_s": t.first_call_s, "gflops": gflops,
                    "gbs": nbytes / t.median / 1e9,
                    "pct_roofline": roofline.percent_of_roofline(gflops, nbytes, flops, peaks),
                    "speedup": base / t.median, "device": runners.impl_device(impl),
                })
    _add_vs_torch(rows)
    return rows, failures


def _add_vs_torch(rows: list[dict]) -> None:
    """Set ``vs_torch`` = PyTorch's ms / the row's ms on every row whose workload has a PyTorch
    row on the same device (``torch`` for CPU rows, ``torch-cuda`` for GPU rows); None
    otherwise. > 1: faster than PyTorch."""
    torch_ms = {(r["workload"], r["device"]): r["ms"] for r in rows
                if r["impl"] in ("torch", "torch-cuda")}
    for r in rows:
        ref = torch_ms.get((r["workload"], r["device"]))
        r["vs_torch"] = ref / r["ms"] if ref else None


def vs_torch_summary(rows: list[dict]) -> list[dict]:
    """Per (op, implementation): median and minimum ``vs_torch`` over the workloads that have
    one (the form the performance targets take: ">= 1.0x on each shape, median >= 1.5x")."""
    groups: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for r in rows:
        if r.get("vs_torch") is not None and r["impl"] not in ("torch", "torch-cuda"):
            groups.setdefault((r["op"], r["impl"]), []).append((r["vs_torch"], r["workload"]))
    out = []
    for (op, impl), vals in groups.items():
        ratios = [v for v, _ in vals]
        worst = min(vals)
        out.append({"op": op, "impl": impl, "workloads": len(vals),
                    "median_vs_torch": float(np.median(ratios)), "min_vs_torch": worst[0],
                    "min_workload": worst[1]})
    return out


def cmd_compare(args) -> int:
    con = _console(args)
    versions = [int(v.lstrip("v")) for v in _list(args.versions)] if args.versions else None
    try:
        with con.status("validating and timing ...") as status:
            rows, failures = compare(
                args.ops, args.workload, args.scale, _list(args.backends), versions,
                not args.no_torch, args.budget, args.dtype,
                progress=lambda msg: status.update(f"timing {msg}"), rounds=args.rounds)
    except (registry.KernelNotFoundError, registry.BackendUnavailableError, ValueError) as exc:
        con.print(f"[red]error:[/] {exc}")
        return EXIT_USAGE
    summary = vs_torch_summary(rows)
    if args.json:
        print(json.dumps({"rows": rows, "failures": failures, "vs_torch": summary}, indent=2))
    else:
        for f in failures:
            con.print(f"[red]MISMATCH[/] {f['workload']} {f['impl']}: tensor {f['tensor']!r} "
                      f"worst |error| {f['worst_error']:.3g} (tensor max {f['scale']:.3g})")
        if rows:
            t = Table(title=f"forward+backward, {args.dtype}, workload set {args.workload!r}"
                            f"{'' if args.scale == 1 else f' x{args.scale}'}")
            for c, j in (("workload", "left"), ("shape", "left"), ("impl", "left"),
                         ("ms", "right"), ("GFLOP/s", "right"), ("GB/s", "right"),
                         ("% roofline", "right"), ("speedup", "right"), ("vs torch", "right"),
                         ("1st call s", "right")):
                t.add_column(c, justify=j, no_wrap=True)
            last = None
            for r in rows:
                t.add_row(r["workload"] if r["workload"] != last else "",
                          r["shape"] if r["workload"] != last else "", r["impl"],
                          f"{r['ms']:.3f}", f"{r['gflops']:.2f}", f"{r['gbs']:.2f}",
                          f"{r['pct_roofline']:.1f}", f"{r['speedup']:.2f}x",
                          "" if r["vs_torch"] is None else f"{r['vs_torch']:.2f}x",
                          f"{r['first_call_s']:.2f}", end_section=False)
                last = r["workload"]
            con.print(t)
            con.print("GFLOP/s counts forward + backward (3x forward for conv/RNN, 2x for "
                      "pooling); % roofline is against the measured sgemm and copy peaks "
                      "(`seqgrid info`). speedup is against the first row of each workload; "
                      "vs torch = PyTorch's time / the row's time on the same device.")
            for g in summary:
                con.print(f"{g['op']} {g['impl']} vs PyTorch over {g['workloads']} workloads: "
                          f"median {g['median_vs_torch']:.2f}x, min {g['min_vs_torch']:.2f}x "
                          f"({g['min_workload']})")
    return 1 if failures else 0


# ----------------------------------------------------------------------------
# sweep and gap
# ----------------------------------------------------------------------------
def _batches(value: str) -> list[int]:
    try:
        out = sorted({int(v) for v in _list(value)})
    except ValueError:
        raise ValueError(f"--batches: expected comma-separated positive ints, got {value!r}") from None
    if not out or out[0] < 1:
        raise ValueError(f"--batches: expected comma-separated positive ints, got {value!r}")
    return out


_TORCH_BACKENDS = ("torch", "torch-cuda")


def _torch_impl(backend: str, version: str | None) -> runners.Impl:
    """PyTorch as the swept implementation (CPU, or cuDNN/cuBLAS with ``torch-cuda``)."""
    if version is not None:
        raise ValueError(f"version: {backend!r} has no kernel versions, got {version!r}")
    if not runners.torch_available():
        raise registry.BackendUnavailableError(
            f"backend: {backend!r} needs PyTorch, which is not importable here")
    if backend == "torch-cuda" and not runners.torch_cuda_available():
        raise registry.BackendUnavailableError(
            "backend: 'torch-cuda' needs a CUDA build of PyTorch and a visible GPU")
    return runners.Impl(backend)


def _impl(family: str, backend: str, version: str | None) -> runners.Impl:
    """Validate backend (and version) names for ``family``; errors list the valid names."""
    if backend in _TORCH_BACKENDS:
        return _torch_impl(backend, version)
    if backend not in registry.BACKENDS:
        raise registry.KernelNotFoundError(
            f"backend: unknown backend {backend!r}; expected one of "
            f"{list(registry.BACKENDS) + list(_TORCH_BACKENDS)}")
    op = runners.forward_op(family)
    registry.check_backend(backend)
    vs = registry.versions(op, backend)
    if not vs:
        have = [b for b in registry.BACKENDS if registry.versions(op, backend=b)]
        raise registry.KernelNotFoundError(
            f"backend: {family!r} has no {backend!r} implementation; backends with one: {have}")
    if version is None:
        return runners.Impl(backend, registry.default_version(op, backend))
    try:
        v = int(str(version).lstrip("v"))
    except ValueError:
        v = None
    if v not in vs:
        raise registry.KernelNotFoundError(
            f"version: {family!r} on {backend!r} has versions {['v%d' % x for x in vs]}, "
            f"not {version!r}")
    return runners.Impl(backend, v)


def _peaks(backend: str):
    if backend in ("cuda", "torch-cuda"):
        return roofline.gpu_peaks()[0]
    return roofline.cpu_peaks()


def _progress(con: Console):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=con, transient=True)


def _fmt(x, spec=".3g"):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return format(x, spec)


def cmd_sweep(args) -> int:
    con = _console(args)
    try:
        impl = _impl(args.op, args.backend, args.version)
        batches = _batches(args.batches)
        ws = workloads.get_set(args.workload, scale=args.scale, ops=[args.op], dtype=args.dtype,
                               scale_batch=False)
        if not ws:
            raise ValueError(f"workload set {args.workload!r} has no {args.op!r} workload")
        fam = (gapm.pick_family(ws, "any", args.family) if args.family else ws[0])
        if fam.op != args.op:
            raise ValueError(f"--family {args.family!r} is a {fam.op!r} workload, not {args.op!r}")
        gapm.check_memory([fam.with_batch(n) for n in batches])
    except (registry.KernelNotFoundError, registry.BackendUnavailableError, ValueError) as exc:
        con.print(f"[red]error:[/] {exc}")
        return EXIT_USAGE
    peaks = _peaks(impl.backend)
    rows: list[dict] = []

    def on_row(r):
        d = r.to_dict()
        w = fam.with_batch(r.N)
        d["ms"] = r.seconds * 1e3
        if peaks:
            d["pct_roofline"] = roofline.percent_of_roofline(r.gflops, 2 * w.bytes,
                                                             w.training_flops, peaks)
        rows.append(d)
        if progress is not None:
            progress.update(task, advance=1, description=f"{fam.family} {impl.label} N={r.N}")

    interrupted, error = False, None
    timer = gapm.make_timer(impl, budget_s=args.budget)
    progress = _progress(con)
    try:
        with progress:
            task = progress.add_task(f"{fam.family} {impl.label}", total=len(batches))
            gapm.sweep(fam, batches, timer, on_row)
    except KeyboardInterrupt:
        interrupted = True
    except AssertionError as exc:   # the implementation disagrees with the reference
        error = str(exc)
    fit = gapm.fit_rows(fam, rows)
    if args.json:
        print(json.dumps({"op": args.op, "family": fam.family, "shape": fam.describe(),
                          "impl": impl.label, "workload": args.workload, "scale": args.scale,
                          "rows": rows, "fit": fit.to_dict() if fit else None,
                          "interrupted": interrupted, "error": error}, indent=2))
    else:
        t = Table(title=f"batch sweep: {fam.family} on {impl.label} (forward+backward, "
                        f"{args.dtype}){'  [interrupted]' if interrupted else ''}")
        for c in ("N", "ms", "GFLOP/s", "items/s", "% roofline"):
            t.add_column(c, justify="right")
        for r in rows:
            t.add_row(str(r["N"]), f"{r['ms']:.3f}", f"{r['gflops']:.3f}",
                      f"{r['items_per_s']:.1f}", _fmt(r.get("pct_roofline"), ".1f"))
        con.print(f"{fam.describe()} (N varies)")
        con.print(t)
        if fit:
            con.print(f"Hockney fit t = a + b·N: r∞ = {_fmt(fit.r_inf_gflops)} GFLOP/s "
                      f"({_fmt(fit.r_inf)} items/s), n½ = {_fmt(fit.n_half)} (fit), "
                      f"{fit.n_half_measured} (smallest measured N with ≥ ½ of the best), "
                      f"r² = {fit.r2:.3f}")
        if interrupted:
            con.print(f"[yellow]interrupted[/] after {len(rows)} of {len(batches)} batches")
        if error:
            con.print(f"[red]MISMATCH[/] {error}")
    if error:
        return 1
    return EXIT_INTERRUPTED if interrupted else 0


def cmd_gap(args) -> int:
    con = _console(args)
    if args.scale is None:
        args.scale = 1.0 if args.workload == "quick" else 0.25
    try:
        batches = _batches(args.batches)
        ws = workloads.get_set(args.workload, scale=args.scale, dtype=args.dtype,
                               scale_batch=False)
        cnn = gapm.pick_family(ws, "cnn", args.cnn)
        rnn = gapm.pick_family(ws, "rnn", args.rnn)
        if args.backend in _TORCH_BACKENDS:
            raise ValueError(f"backend: 'gap' times seqgrid's kernels, expected one of "
                             f"{list(registry.BACKENDS)}; for PyTorch's r_inf and n_1/2 use "
                             f"'seqgrid sweep OP --backend {args.backend}'")
        impl_c = _impl(cnn.op, args.backend, None)
        impl_r = _impl(rnn.op, args.backend, None)
        conv1d, _ = gapm.conv1d_pair(rnn, args.k)
        if args.plot:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                raise ValueError("--plot needs matplotlib: pip install -e \".[bench]\"") from None
        gapm.check_memory([f.with_batch(n) for f in (cnn, rnn, conv1d) for n in batches])
    except (registry.KernelNotFoundError, registry.BackendUnavailableError, ValueError) as exc:
        con.print(f"[red]error:[/] {exc}")
        return EXIT_USAGE
    cnn_timer = gapm.make_timer(impl_c, args.budget)
    rnn_timer = gapm.make_timer(impl_r, args.budget)
    conv1d_timer = gapm.pair_timer(impl_c, rnn, args.budget)
    n_pts = (2 * len(batches) + (0 if args.no_threads else 4)
             + (0 if args.no_pair else len(batches)))
    progress = _progress(con)
    done = {"n": 0}

    def counted(cnn_t):
        def timer(w):
            out = (cnn_t if w.op in workloads.CNN_OPS else rnn_timer)(w)
            done["n"] += 1
            progress.update(task, completed=done["n"], description=w.name)
            return out
        return timer

    try:
        with progress:
            task = progress.add_task("gap", total=n_pts)
            report = gapm.gap_report(cnn, rnn, batches, counted(cnn_timer), pair=not args.no_pair,
                                     pair_k=args.k, pair_timer_=counted(conv1d_timer),
                                     scaling=not args.no_threads)
    except KeyboardInterrupt:
        con.print("[yellow]interrupted[/]")
        return EXIT_INTERRUPTED
    except AssertionError as exc:
        con.print(f"[red]MISMATCH[/] {exc}")
        return 1
    peaks = _peaks(args.backend)
    report.update(backend=args.backend, impl={"cnn": impl_c.label, "rnn": impl_r.label},
                  workload=args.workload, scale=args.scale, dtype=args.dtype,
                  peak_sgemm_gflops=peaks["sgemm_gflops"] if peaks else None)
    if args.plot:
        title = (f"CNN vs RNN parallelism gap — {args.backend} ({impl_c.label}, {impl_r.label}), "
                 f"set {args.workload!r} x{args.scale}, forward+backward {args.dtype}")
        gapm.plot_gap(report, args.plot, title)
        report["plot"] = str(args.plot)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_gap(con, report)
    return 0


def _print_gap(con: Console, rep: dict) -> None:
    c, r = rep["cnn"], rep["rnn"]
    pair = rep.get("pair")
    con.print(f"CNN: {c['family']}  {c['shape']} (N varies)  [{rep['impl']['cnn']}]")
    con.print(f"RNN: {r['family']}  {r['shape']} (N varies)  [{rep['impl']['rnn']}]")
    if pair:
        con.print(f"like-for-like: {pair['conv']} on the RNN's own (T, N, I) input; "
                  f"FLOPs conv/RNN = {pair['flop_match']:.4f}")
    t = Table(title=f"throughput vs batch (forward+backward, {rep['dtype']}, {rep['backend']})")
    cols = ["N", "CNN ms", "CNN GFLOP/s", "RNN ms", "RNN GFLOP/s", "gap CNN/RNN"]
    if pair:
        cols += ["conv1d GFLOP/s", "gap conv1d/RNN"]
    for col in cols:
        t.add_column(col, justify="right")
    cr = {x["N"]: x for x in c["rows"]}
    rr = {x["N"]: x for x in r["rows"]}
    pr = {x["N"]: x for x in pair["conv_rows"]} if pair else {}
    for n in rep["batches"]:
        row = [str(n), _fmt(cr[n]["seconds"] * 1e3, ".3f"), _fmt(cr[n]["gflops"], ".2f"),
               _fmt(rr[n]["seconds"] * 1e3, ".3f"), _fmt(rr[n]["gflops"], ".2f"),
               _fmt(rep["gap"].get(str(n)), ".2f")]
        if pair:
            row += [_fmt(pr[n]["gflops"], ".2f"), _fmt(pair["gap"].get(str(n)), ".2f")]
        t.add_row(*row)
    con.print(t)
    t = Table(title="gap metrics")
    t.add_column("metric")
    t.add_column("CNN", justify="right")
    t.add_column("RNN", justify="right")
    fc, fr = c["fit"] or {}, r["fit"] or {}
    pk = rep.get("peak_sgemm_gflops")
    t.add_row("r∞ GFLOP/s (fit t = a + b·N)", _fmt(fc.get("r_inf_gflops")), _fmt(fr.get("r_inf_gflops")))
    if pk:
        t.add_row("r∞ % of sgemm peak", _fmt(100 * (fc.get("r_inf_gflops") or np.nan) / pk, ".1f"),
                  _fmt(100 * (fr.get("r_inf_gflops") or np.nan) / pk, ".1f"))
    t.add_row("n½ (fit, a/b)", _fmt(fc.get("n_half")), _fmt(fr.get("n_half")))
    t.add_row("n½ (read off: smallest N ≥ ½ best)", _fmt(fc.get("n_half_measured")),
              _fmt(fr.get("n_half_measured")))
    t.add_row("fit r²", _fmt(fc.get("r2"), ".3f"), _fmt(fr.get("r2"), ".3f"))
    ts = rep.get("thread_scaling")
    if ts:
        nt = ts["cnn"]["threads"]
        t.add_row(f"thread speedup {nt[0]}→{nt[-1]} (N={rep['batches'][-1]})",
                  f"{ts['cnn']['speedup']:.2f}x", f"{ts['rnn']['speedup']:.2f}x")
    t.add_row(f"RNN per-step latency (N={rep['step_latency_N']}, time/T)", "",
              f"{rep['step_latency_s'] * 1e6:.1f} µs")
    con.print(t)
    con.print("gap = GFLOP/s(CNN) / GFLOP/s(RNN) at equal batch (> 1: the CNN uses the machine "
              "better). Times are medians of one forward+backward step.")
    if rep.get("plot"):
        con.print(f"figure: {rep['plot']}")


# ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seqgrid", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    q = sub.add_parser("info", help="backends, kernel versions, measured machine peaks")
    q.add_argument("--json", action="store_true")
    q.add_argument("--budget", type=float, default=1.2, help="seconds for measuring peaks")
    q.add_argument("--remeasure", action="store_true", help="ignore cached peaks")
    q.set_defaults(func=cmd_info)

    q = sub.add_parser("compare", help="validate then time implementations of ops")
    q.add_argument("ops", nargs="+", metavar="OP", choices=list(runners.FAMILIES),
                   help=f"one or more of {', '.join(runners.FAMILIES)}")
    q.add_argument("--workload", default="quick",
                   help=f"workload set: {', '.join(workloads.set_names())} (default quick)")
    q.add_argument("--scale", type=float, default=1.0, help="shrink the set (e.g. 0.25)")
    q.add_argument("--backends", help="comma-separated, e.g. numpy,numba (default: all available)")
    q.add_argument("--versions", help="comma-separated version numbers, e.g. 1,2")
    q.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    q.add_argument("--budget", type=float, default=0.5, help="seconds of timing per row")
    q.add_argument("--rounds", type=int, default=1,
                   help="time the implementations of a workload in turn this many times and "
                        "pool the repeats (fairer ratios on a shared, noisy machine)")
    q.add_argument("--no-torch", action="store_true", help="leave out the PyTorch row")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_compare)

    batches = ",".join(map(str, gapm.DEFAULT_BATCHES))
    q = sub.add_parser("sweep", help="one implementation over a batch sweep (r_inf, n_1/2)")
    q.add_argument("op", metavar="OP", choices=list(runners.FAMILIES),
                   help=f"one of {', '.join(runners.FAMILIES)}")
    q.add_argument("--batches", default=batches, help=f"comma-separated N (default {batches})")
    q.add_argument("--backend", default="numba",
                   help=f"one of {', '.join(registry.BACKENDS + _TORCH_BACKENDS)} (torch: "
                        f"PyTorch's own kernels, for comparing r_inf and n_1/2)")
    q.add_argument("--version", help="kernel version, e.g. 2 (default: the backend's default)")
    q.add_argument("--workload", default="quick",
                   help=f"workload set the shape comes from: {', '.join(workloads.set_names())}")
    q.add_argument("--scale", type=float, default=1.0, help="shrink the set (N is kept)")
    q.add_argument("--family", help="workload family within the set (default: the op's first)")
    q.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    q.add_argument("--budget", type=float, default=0.2, help="seconds of timing per batch")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_sweep)

    q = sub.add_parser("gap", help="CNN vs RNN parallelism gap: r_inf, n_1/2, gap ratio, ...")
    q.add_argument("--workload", default="seeds",
                   help=f"workload set: {', '.join(workloads.set_names())} (default seeds)")
    q.add_argument("--scale", type=float, default=None,
                   help="shrink the set, N is kept (default 0.25, or 1 for the quick set: "
                        "< 1 min on 2 cores)")
    q.add_argument("--cnn", help="conv2d family of the set (default: its first)")
    q.add_argument("--rnn", help="recurrent family of the set (default: its first)")
    q.add_argument("--batches", default=batches, help=f"comma-separated N (default {batches})")
    q.add_argument("--backend", default="numba", help=f"one of {', '.join(registry.BACKENDS)}")
    q.add_argument("--k", type=int, default=3, help="conv1d width of the like-for-like pair (odd)")
    q.add_argument("--no-pair", action="store_true", help="skip the conv1d-vs-RNN pair")
    q.add_argument("--no-threads", action="store_true", help="skip thread scaling")
    q.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    q.add_argument("--budget", type=float, default=0.1, help="seconds of timing per point")
    q.add_argument("--plot", metavar="PNG", help="write the figure here (matplotlib, Agg)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_gap)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
