"""The ``seqgrid`` command line.

    seqgrid info                      backends (and why one is unavailable), kernels, machine peaks
    seqgrid compare OP [OP ...]       validate every implementation against the reference,
                                      then time forward+backward on a workload set

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

from . import roofline, runners, workloads
from .timer import time_call


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
    return 0


# ----------------------------------------------------------------------------
# compare
# ----------------------------------------------------------------------------
def _list(value: str | None):
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def compare(families, set_name="quick", scale=1.0, backends=None, versions=None,
            with_torch=True, budget_s=0.5, dtype="float32", progress=None):
    """Validate, then time, every implementation of each family on ``set_name``.

    Returns
    -------
    rows : list of dict
        one per (workload, implementation): ms, GFLOP/s, GB/s, % of roofline, speedup.
    failures : list of dict
        implementations whose outputs differ from the reference (none of those is timed).
    """
    peaks = roofline.cpu_peaks()
    rows, failures = [], []
    for family in families:
        runners.forward_op(family)      # validates the name
        impls = runners.implementations(family, backends, versions, with_torch)
        for w in workloads.get_set(set_name, scale=scale, ops=[family], dtype=dtype):
            ref = runners.reference_outputs(w)
            prepared = []
            for impl in impls:   # llm.c style: everything must match before anything is timed
                r = runners.make_runner(w, impl)
                bad = runners.validate(r.outputs(), ref, w.dtype)
                if bad:
                    failures.append({"workload": w.name, "impl": impl.label, "tensor": bad.tensor,
                                     "worst_error": bad.worst_error, "scale": bad.scale})
                prepared.append((impl, r))
            if failures:
                continue
            base = None
            for impl, r in prepared:
                if progress:
                    progress(f"{w.name} {impl.label}")
                t = time_call(r.run, budget_s=budget_s,
                              device="cuda" if impl.backend == "cuda" else "cpu")
                flops = w.training_flops
                gflops = t.gflops(flops)
                nbytes = 2 * w.bytes   # forward and backward each move about the forward's bytes
                base = base or t.median
                rows.append({
                    "workload": w.name, "op": family, "shape": w.describe(), "impl": impl.label,
                    "ms": t.median * 1e3, "ms_min": t.min * 1e3, "spread": t.spread, "n": t.n,
                    "first_call_s": t.first_call_s, "gflops": gflops,
                    "gbs": nbytes / t.median / 1e9,
                    "pct_roofline": roofline.percent_of_roofline(gflops, nbytes, flops, peaks),
                    "speedup": base / t.median,
                })
    return rows, failures


def cmd_compare(args) -> int:
    con = _console(args)
    versions = [int(v.lstrip("v")) for v in _list(args.versions)] if args.versions else None
    try:
        with con.status("validating and timing ...") as status:
            rows, failures = compare(
                args.ops, args.workload, args.scale, _list(args.backends), versions,
                not args.no_torch, args.budget, args.dtype,
                progress=lambda msg: status.update(f"timing {msg}"))
    except (registry.KernelNotFoundError, registry.BackendUnavailableError, ValueError) as exc:
        con.print(f"[red]error:[/] {exc}")
        return 2
    if args.json:
        print(json.dumps({"rows": rows, "failures": failures}, indent=2))
    else:
        for f in failures:
            con.print(f"[red]MISMATCH[/] {f['workload']} {f['impl']}: tensor {f['tensor']!r} "
                      f"worst |error| {f['worst_error']:.3g} (tensor max {f['scale']:.3g})")
        if rows:
            t = Table(title=f"forward+backward, {args.dtype}, workload set {args.workload!r}"
                            f"{'' if args.scale == 1 else f' x{args.scale}'}")
            for c, j in (("workload", "left"), ("shape", "left"), ("impl", "left"),
                         ("ms", "right"), ("GFLOP/s", "right"), ("GB/s", "right"),
                         ("% roofline", "right"), ("speedup", "right"), ("1st call s", "right")):
                t.add_column(c, justify=j, no_wrap=True)
            last = None
            for r in rows:
                t.add_row(r["workload"] if r["workload"] != last else "",
                          r["shape"] if r["workload"] != last else "", r["impl"],
                          f"{r['ms']:.3f}", f"{r['gflops']:.2f}", f"{r['gbs']:.2f}",
                          f"{r['pct_roofline']:.1f}", f"{r['speedup']:.2f}x",
                          f"{r['first_call_s']:.2f}", end_section=False)
                last = r["workload"]
            con.print(t)
            con.print("GFLOP/s counts forward + backward (3x forward for conv/RNN, 2x for "
                      "pooling); % roofline is against the measured sgemm and copy peaks "
                      "(`seqgrid info`). speedup is against the first row of each workload.")
    return 1 if failures else 0


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
    q.add_argument("--no-torch", action="store_true", help="leave out the PyTorch row")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_compare)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
