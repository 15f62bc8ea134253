"""One-call GPU report: every CUDA kernel version beside PyTorch (cuDNN / cuBLAS, TF32 off).

Meant for a short session on a lent GPU (``python -m bench.gpu_report --out FILE.json``): it
measures the device's ceilings once (cuBLAS sgemm, device-to-device copy), then for each
section times seqgrid's ``cuda`` versions and ``torch-cuda`` on the same inputs, checks every
seqgrid output against PyTorch computed in float64 on the GPU (relative error
``max|got - ref| / max(1, max|ref|)``, float32 must stay under 1e-3, the same rule as
``seqgrid compare``), and writes one JSON file plus a table of ratios.

Sections
--------
conv     DeepBench training conv shapes (``deepbench-train``): forward alone (the issue's
         target: >= 0.5x cuDNN FP32) and forward + both backwards.
pool     max / avg pooling, 2x2/2 and 3x3/2, on a 64x64x112x112 input: forward GB/s against the
         measured copy bandwidth (target >= 70%) and the forward + backward step vs PyTorch.
rnn      rnn_relu / lstm / gru: the speech shape (T=100, I=160, Hd=1000) at N in {1, 4, 8, 16,
         64} and one DeepBench training shape per cell; forward alone and forward + backward for
         every ``cuda`` version (v3 = the persistent kernel, recorded as "does not fit" where
         it refuses a shape) vs ``torch.nn.{RNN,LSTM,GRU}`` on cuDNN.

Times are medians of CUDA-event timings after a warm-up (NVRTC compile and cuDNN autotune
excluded). ``forward_ms`` times one call between two events, so it includes the host's launch
overhead before the first kernel starts (Python argument checks, allocations, the launch:
~0.1 ms for a seqgrid pooling call on an H100 host, more than the kernel's own time on the
64x64x112x112 rows); ``forward_stream_ms`` is the per-call time of many calls enqueued back to
back between two events (the host runs ahead, so this is the GPU's own time: the throughput of
a model's forward pass). The ratios and the pooling bandwidth are given for both. Forward-only rows run PyTorch under ``torch.no_grad()`` (cuDNN's inference path);
seqgrid's forward always saves its activations for backward.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np

from kernels import registry

from . import runners, workloads
from .asv_suite._common import forward_call
from .timer import time_call

REL_TOL = 1e-3


def _rel_err(got: dict, ref: dict) -> tuple[float, str]:
    """Worst relative error over the tensors of ``ref`` and the tensor it occurs in."""
    worst, where = 0.0, ""
    for name, r in ref.items():
        if name not in got:
            return float("inf"), name
        g = np.asarray(got[name], dtype=np.float64)
        if g.shape != r.shape:
            return float("inf"), name
        scale = max(1.0, float(np.max(np.abs(r)))) if r.size else 1.0
        err = float(np.max(np.abs(g - r))) / scale if r.size else 0.0
        if not np.isfinite(err):
            return float("inf"), name
        if err > worst:
            worst, where = err, name
    return worst, where


def _median_ms(fn, budget_s: float) -> float:
    return time_call(fn, budget_s=budget_s, device="cuda", min_repeats=3).median * 1e3


def _stream_ms(fn, single_ms: float, rounds: int = 5) -> float:
    """Median per-call ms of ``fn`` over ``rounds`` rounds of back-to-back calls between two
    CUDA events (each round ~3 ms of GPU work, 5 to 50 calls)."""
    import cupy
    calls = int(min(50, max(5, 3.0 / max(single_ms, 1e-3))))
    fn()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    per_call = []
    for _ in range(rounds):
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        per_call.append(cupy.cuda.get_elapsed_time(start, end) / calls)
    return float(np.median(per_call))


def _device_info() -> dict:
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    info = {"name": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
            "sms": int(props["multiProcessorCount"]), "cupy": cupy.__version__,
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(), "python": sys.version.split()[0],
            "host": platform.node()}
    try:
        import torch
        info["torch"] = torch.__version__
        info["cudnn"] = torch.backends.cudnn.version()
    except Exception as exc:           # the report still times seqgrid alone
        info["torch"] = f"unavailable ({exc})"
    return info


def _copy_bandwidth(budget_s: float) -> float:
    """Device-to-device copy, bytes read + written per second (GB/s) on 1 GiB."""
    import cupy
    a = cupy.random.random(2**28, dtype=cupy.float32)
    b = cupy.empty_like(a)
    ms = _median_ms(lambda: cupy.copyto(b, a), budget_s)
    return 2 * a.nbytes / (ms * 1e-3) / 1e9


def _forward_only(w, impl, inp):
    """A callable running only the forward op of ``w`` on ``impl`` (inputs on the GPU); the
    seqgrid side is the asv suite's ``forward_call``, so both time the same call."""
    if impl.backend == "torch-cuda":
        import torch
        import torch.nn.functional as F
        T = {k: torch.from_numpy(np.ascontiguousarray(v)).cuda() for k, v in inp.items()}
        if w.op == "conv2d":
            s = w.shape

            def run():
                with torch.no_grad():
                    return F.conv2d(T["x"], T["weight"], T["bias"], s["stride"], s["padding"],
                                    s["dilation"])
            return run
        if w.op in ("maxpool2d", "avgpool2d"):
            kw = runners.pool_kwargs(w)
            fn = F.max_pool2d if w.op == "maxpool2d" else F.avg_pool2d

            def run():
                with torch.no_grad():
                    return fn(T["x"], kw["kernel_size"], kw["stride"], kw["padding"])
            return run
        mod = runners.torch_recurrent_module(w, T)
        h0 = T["h0"][None]
        state = (h0, T["c0"][None]) if w.op == "lstm" else h0

        def run():
            with torch.no_grad():
                return mod(T["x"], state)
        return run

    return forward_call(w, impl)


def _conv_backward_calls(w, impl, inp) -> dict:
    """conv2d's two backward passes alone, as zero-argument calls on the GPU: ``bwd_data``
    (dL/dx) and ``bwd_weight`` (dL/dW, no bias; seqgrid's accumulates into one buffer, which
    is as fast as PyTorch's fresh one), for ``impl`` (a ``cuda`` version or ``torch-cuda``)."""
    s = w.shape
    hp = (s["stride"], s["padding"], s["dilation"])
    rng = np.random.default_rng(1)
    dout = rng.standard_normal(w.output_shape).astype(inp["x"].dtype)
    if impl.backend == "torch-cuda":
        import torch
        from torch.nn.grad import conv2d_input, conv2d_weight
        x, wt, d = (torch.from_numpy(np.ascontiguousarray(a)).cuda()
                    for a in (inp["x"], inp["weight"], dout))
        return {"bwd_data": lambda: conv2d_input(x.shape, wt, d, *hp),
                "bwd_weight": lambda: conv2d_weight(x, wt.shape, d, *hp)}
    import cupy
    x, wt, d = (cupy.asarray(a) for a in (inp["x"], inp["weight"], dout))
    data = registry.get("conv2d_backward_data", "cuda", impl.version)
    weight = registry.get("conv2d_backward_weight", "cuda", impl.version)
    dw = cupy.zeros_like(wt)
    return {"bwd_data": lambda: data(d, wt, x.shape, *hp),
            "bwd_weight": lambda: weight(dw, None, d, x, *hp)}


def _measure(w, impls, budget_s, log) -> list[dict]:
    """Validate and time every implementation of one workload; one row per implementation."""
    import cupy
    ref = runners.make_runner(w, runners.Impl("torch-cuda"), dtype=np.float64).outputs()
    inp = workloads.make_inputs(w, np.random.default_rng(0), w.dtype)
    rows = []
    for impl in impls:
        row = {"workload": w.name, "op": w.op, "shape": w.describe(), "impl": impl.label,
               "training_gflop": w.training_flops / 1e9, "forward_gflop": w.flops / 1e9,
               # max pooling also writes its int64 argmax: count it as moved bytes
               "bytes": w.bytes + (8 * int(np.prod(w.output_shape)) if w.op == "maxpool2d" else 0)}
        try:
            r = runners.make_runner(w, impl)
            err, where = _rel_err(r.outputs(), ref)
            row.update(rel_err=err, worst_tensor=where, ok=bool(err <= REL_TOL))
            row["train_ms"] = _median_ms(r.run, budget_s)
            fwd = _forward_only(w, impl, inp)
            row["forward_ms"] = _median_ms(fwd, budget_s)
            row["forward_stream_ms"] = _stream_ms(fwd, row["forward_ms"])
            if w.op == "conv2d":
                for name, call in _conv_backward_calls(w, impl, inp).items():
                    row[f"{name}_ms"] = _median_ms(call, budget_s)
        except ValueError as exc:         # e.g. the persistent kernel refusing a shape
            row.update(ok=None, skipped=str(exc))
        except Exception as exc:          # record and go on: one broken row must not end the call
            row.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        finally:
            cupy.get_default_memory_pool().free_all_blocks()
        rows.append(row)
        log(_row_text(row))
    return rows


def _row_text(row: dict) -> str:
    if "train_ms" in row:
        return (f"{row['workload']:<34} {row['impl']:<11} fwd {row['forward_ms']:9.3f} ms  "
                f"(stream {row['forward_stream_ms']:8.3f})  "
                f"train {row['train_ms']:9.3f} ms  err {row['rel_err']:.1e}"
                f"{_backward_text(row)}"
                f"{'' if row['ok'] else ' MISMATCH in ' + row['worst_tensor']}")
    return f"{row['workload']:<34} {row['impl']:<11} {row.get('skipped') or row.get('error')}"


def _backward_text(row: dict) -> str:
    if "bwd_data_ms" not in row:
        return ""
    return f"  dx {row['bwd_data_ms']:.3f} dW {row['bwd_weight_ms']:.3f} ms"


def _backward_ratio_text(s: dict) -> str:
    if "bwd_data_vs_torch" not in s:
        return ""
    return f"  dx x{s['bwd_data_vs_torch']:5.2f} dW x{s['bwd_weight_vs_torch']:5.2f}"


def _impls(op: str, only=None) -> list:
    """The ``cuda`` versions of ``op`` (those in ``only`` when given) and ``torch-cuda``."""
    vs = [v for v in registry.versions(op, "cuda") if only is None or v in only]
    return [runners.Impl("cuda", v) for v in vs] + [runners.Impl("torch-cuda")]


def conv_section(budget_s, log, quick=False, only=None):
    ws = workloads.get_set("deepbench-train", ops="conv2d")
    if quick:
        ws = ws[::4]
    rows = []
    for w in ws:
        rows += _measure(w, _impls("conv2d_forward", only), budget_s, log)
    return rows


def pool_section(budget_s, log, quick=False, only=None):
    rows = []
    n = 16 if quick else 64
    for op in ("maxpool2d", "avgpool2d"):
        for k, s in ((2, 2), (3, 2)):
            w = workloads.Workload(name=f"{op}-{k}x{k}s{s}-n{n}-c64-112", op=op,
                                   shape={"N": n, "C": 64, "H": 112, "W": 112, "kernel": (k, k),
                                          "stride": (s, s), "padding": (0, 0)})
            rows += _measure(w, _impls(f"{op}_forward", only), budget_s, log)
    return rows


def rnn_section(budget_s, log, quick=False, only=None):
    rows = []
    batches = (1, 8, 64) if quick else (1, 4, 8, 16, 64)
    db = {"rnn_relu": "db-vanilla-h1760-t50-n64", "lstm": "db-lstm-h1024-t25-n64",
          "gru": "db-gru-h1536-t187-n32"}
    train = {w.name: w for w in workloads.get_set("deepbench-train", ops="rnn")}
    for cell in ("rnn_relu", "lstm", "gru"):
        shapes = [workloads.Workload(name=f"speech-{cell}-n{n}", op=cell,
                                     shape={"T": 100, "N": n, "I": 160, "Hd": 1000})
                  for n in batches]
        if not quick:
            shapes.append(train[db[cell]])
        for w in shapes:
            rows += _measure(w, _impls(f"{cell}_sequence_forward", only), budget_s, log)
    return rows


def summarize(rows: list[dict], copy_gbs: float) -> list[dict]:
    """Per workload: each seqgrid version's speed relative to torch-cuda (> 1: faster)."""
    out = []
    by_w: dict[str, dict] = {}
    for r in rows:
        by_w.setdefault(r["workload"], {})[r["impl"]] = r
    for name, impls in by_w.items():
        t = impls.get("torch-cuda")
        for label, r in impls.items():
            if label == "torch-cuda" or "train_ms" not in r:
                continue
            s = {"workload": name, "impl": label, "ok": r["ok"]}
            if t and "train_ms" in t:
                s["forward_vs_torch"] = t["forward_ms"] / r["forward_ms"]
                s["forward_stream_vs_torch"] = t["forward_stream_ms"] / r["forward_stream_ms"]
                s["train_vs_torch"] = t["train_ms"] / r["train_ms"]
                for key in ("bwd_data", "bwd_weight"):
                    if f"{key}_ms" in r and f"{key}_ms" in t:
                        s[f"{key}_vs_torch"] = t[f"{key}_ms"] / r[f"{key}_ms"]
            if r["op"] in ("maxpool2d", "avgpool2d"):
                for key, ms in (("forward", r["forward_ms"]),
                                ("forward_stream", r["forward_stream_ms"])):
                    gbs = r["bytes"] / (ms * 1e-3) / 1e9
                    s[f"{key}_gbs"] = gbs
                    s[f"{key}_pct_copy"] = 100 * gbs / copy_gbs
            out.append(s)
    return out


def _parse_versions(p, specs) -> dict[str, set[int]]:
    only = {}
    for spec in specs:
        name, _, vs = spec.partition("=")
        try:
            only[name.strip()] = {int(v.strip().lstrip("v")) for v in vs.split(",")}
        except ValueError:
            p.error(f"--versions: expected SECTION=V,V (e.g. conv=2,3), got {spec!r}")
        if name.strip() not in ("conv", "pool", "rnn"):
            p.error(f"--versions: unknown section {name!r}; expected conv, pool or rnn")
    return only


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_report", description=__doc__.split("\n")[0])
    p.add_argument("--out", help="write the JSON report here")
    p.add_argument("--sections", default="conv,pool,rnn", help="comma-separated: conv,pool,rnn")
    p.add_argument("--budget", type=float, default=0.15, help="seconds of timing per row")
    p.add_argument("--quick", action="store_true", help="fewer shapes (a smoke run)")
    p.add_argument("--versions", action="append", default=[], metavar="SECTION=V,V",
                   help="time only these cuda versions in SECTION, e.g. conv=2,3 (repeatable; "
                        "default: every version)")
    args = p.parse_args(argv)
    only = _parse_versions(p, args.versions)
    ok, why = registry.backend_status()["cuda"]
    if not ok:
        print(f"bench.gpu_report: the cuda backend is unavailable: {why}", file=sys.stderr)
        return 2
    if not runners.torch_cuda_available():
        print("bench.gpu_report: PyTorch with CUDA is needed for the comparison rows",
              file=sys.stderr)
        return 2

    def log(msg):
        print(msg, flush=True)

    t0 = time.time()
    report = {"device": _device_info(), "tf32": False}
    from .roofline import gpu_peaks
    peaks, _ = gpu_peaks(budget_s=1.0, refresh=True)
    report["peaks"] = peaks
    report["copy_gbs"] = _copy_bandwidth(0.3)
    log(f"device {report['device']['name']}: copy {report['copy_gbs']:.0f} GB/s, "
        f"sgemm {peaks.get('sgemm_gflops', float('nan')) if peaks else float('nan'):.0f} GFLOP/s")
    sections = {"conv": conv_section, "pool": pool_section, "rnn": rnn_section}
    rows = []
    for name in args.sections.split(","):
        if name not in sections:
            p.error(f"--sections: unknown section {name!r}; expected some of {list(sections)}")
        log(f"== {name}")
        rows += sections[name](args.budget, log, args.quick, only.get(name))
    report["rows"] = rows
    report["summary"] = summarize(rows, report["copy_gbs"])
    report["seconds"] = time.time() - t0
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1, default=str)
    log("== ratios (torch-cuda time / seqgrid time; > 1 means seqgrid is faster)")
    for s in report["summary"]:
        extra = (f"  fwd {s['forward_pct_copy']:.0f}% of copy"
                 f" (stream {s['forward_stream_gbs']:.0f} GB/s = "
                 f"{s['forward_stream_pct_copy']:.0f}%)" if "forward_gbs" in s else "")
        nan = float("nan")
        log(f"{s['workload']:<34} {s['impl']:<8} fwd x{s.get('forward_vs_torch', nan):6.2f}"
            f" (stream x{s.get('forward_stream_vs_torch', nan):5.2f})"
            f"  train x{s.get('train_vs_torch', nan):6.2f}"
            f"{_backward_ratio_text(s)}"
            f"{'' if s['ok'] else '  MISMATCH'}{extra}")
    bad = [r for r in rows if r.get("ok") is False]
    log(f"{len(rows)} rows, {len(bad)} failed, {report['seconds']:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
