"""Shared helpers of the asv suite: guarded project imports, workload lookup, thread control.

Importable without the project (asv discovers benchmarks of old commits, and CI imports this
without asv): whatever is missing turns into ``NotImplementedError`` in a benchmark's ``setup``.
"""
from __future__ import annotations

import os

try:
    import numpy as np
except Exception:                       # pragma: no cover - numpy is a dependency
    np = None

try:                                    # the project, from the commit's wheel
    from kernels import registry
    from bench import runners, workloads
    from bench import timer as _timer
    _IMPORT_ERROR = None
except Exception as exc:                # an old commit: no bench.runners yet, say
    registry = runners = workloads = _timer = None
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

try:
    import numba
    ALL_THREADS = int(numba.config.NUMBA_NUM_THREADS)
except Exception:                       # pragma: no cover - numba is a dependency
    numba = None
    ALL_THREADS = os.cpu_count() or 1

#: the thread-count dimension: 1 and all cores (just [1] on a one-core machine)
THREADS = sorted({1, ALL_THREADS})

#: CPU-sized workloads (the ``quick`` set): well under a second even on the NumPy reference
CPU_WORKLOADS = {
    "conv2d": ["quick-conv3x3-n2", "quick-conv3x3s2-n2"],
    "pool": ["quick-maxpool-n2", "quick-avgpool-n2"],
    "rnn_tanh": ["quick-rnn_tanh-n4"],
    "lstm": ["quick-lstm-n4"],
    "gru": ["quick-gru-n4"],
}
#: GPU-sized workloads (the ``seeds`` set), added only when CuPy sees a device
GPU_WORKLOADS = {
    "conv2d": ["alexnet-conv2-n8", "alexnet-conv3-n8"],
    "pool": ["alexnet-pool1-n8", "pool16-avg-n8"],
    "rnn_tanh": ["speech-rnn_tanh-n4", "speech-rnn_tanh-n64"],   # n4: the persistent v3 fits
    "lstm": ["speech-lstm-n4", "speech-lstm-n64"],
    "gru": ["speech-gru-n4", "speech-gru-n64"],
}
#: implementations (backend/version); static so results stay comparable across commits
IMPLS = {
    "conv2d": ["numpy/v1", "numba/v1", "numba/v2", "numba/v3", "numba/v4", "numba/v5", "numba/v6",
               "numba/v7", "numba/v8", "numba/v9", "cuda/v1", "cuda/v2", "cuda/v3",
               "cuda/v4", "cuda/v5"],
    "pool": ["numpy/v1", "numba/v1", "numba/v2", "numba/v3", "numba/v4", "numba/v5", "cuda/v1", "cuda/v2"],
    "rnn": ["numpy/v1", "numba/v1", "numba/v2", "numba/v3", "numba/v4", "numba/v5", "numba/v6",
            "numba/v7", "numba/v8", "cuda/v1", "cuda/v2", "cuda/v3", "cuda/v4"],
}


def gpu_visible() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


GPU = gpu_visible()


def workload_params(key: str) -> list[str]:
    return CPU_WORKLOADS[key] + (GPU_WORKLOADS[key] if GPU else [])


def skip(reason: str):
    raise NotImplementedError(reason)


def find_workload(name: str):
    """The workload called ``name`` in the quick or seeds set."""
    if workloads is None:
        skip(f"project not importable at this commit ({_IMPORT_ERROR})")
    for set_name in ("quick", "seeds"):
        try:
            ws = workloads.get_set(set_name)
        except Exception:
            continue
        for w in ws:
            if w.name == name:
                return w
    skip(f"workload {name!r} not defined at this commit")


def resolve(impl_label: str, workload_name: str, threads: int):
    """(Impl, Workload) or NotImplementedError saying why this combination is skipped."""
    if runners is None:
        skip(f"project not importable at this commit ({_IMPORT_ERROR})")
    backend, _, v = impl_label.partition("/v")
    version = int(v)
    w = find_workload(workload_name)
    gpu_sized = any(workload_name in names for names in GPU_WORKLOADS.values())
    if backend == "cuda":
        if threads != THREADS[-1]:
            skip("the thread count only varies CPU backends")
    elif gpu_sized:
        skip(f"{workload_name} is sized for a GPU")
    if backend not in registry.BACKENDS:
        skip(f"backend {backend!r} unknown at this commit")
    ok, why = registry.backend_status()[backend]
    if not ok:
        skip(f"backend {backend!r} unavailable: {why}")
    op = runners.forward_op(w.op)
    if version not in registry.versions(op, backend):
        skip(f"{op} has no {impl_label} at this commit")
    return runners.Impl(backend, version), w


class Threads:
    """Set numba's thread count and (threadpoolctl) BLAS's; ``restore()`` undoes it."""

    def __init__(self, n: int):
        self._old = numba.get_num_threads() if numba is not None else None
        if numba is not None:
            numba.set_num_threads(min(n, ALL_THREADS))
        try:
            from threadpoolctl import threadpool_limits
            self._limits = threadpool_limits(limits=n, user_api="blas")
        except Exception:
            self._limits = None

    def restore(self):
        if self._limits is not None:
            self._limits.restore_original_limits()
        if self._old is not None:
            numba.set_num_threads(self._old)


def forward_call(w, impl, seed: int = 0):
    """A zero-argument forward-only call of ``w`` on ``impl`` (inputs made once, here)."""
    fn = registry.get(runners.forward_op(w.op), impl.backend, impl.version)
    inp = workloads.make_inputs(w, np.random.default_rng(seed))
    if impl.backend == "cuda":
        import cupy
        inp = {k: cupy.asarray(v) for k, v in inp.items()}
    s = w.shape
    if w.op in workloads.CONV_OPS:
        return lambda: fn(inp["x"], inp["weight"], inp["bias"], s["stride"], s["padding"],
                          s["dilation"])
    if w.op in workloads.POOL_OPS:
        kw = runners.pool_kwargs(w)
        return lambda: fn(inp["x"], **kw)
    args = [inp["x"], inp["h0"]] + ([inp["c0"]] if w.op == "lstm" else [])
    args += [inp[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
    return lambda: fn(*args)


def synchronized(fn, impl):
    """``fn`` followed by a device synchronize for the cuda backend (the work is inside the
    timed call)."""
    if impl.backend != "cuda":
        return fn
    import cupy

    def call():
        out = fn()
        cupy.cuda.Device().synchronize()
        return out
    return call


def measure_median(fn, impl, budget_s: float = 0.2) -> float:
    """Median seconds of ``fn()`` (bench.timer: first call apart, CUDA events on a GPU)."""
    return _timer.time_call(fn, budget_s=budget_s, min_repeats=3,
                            device="cuda" if impl.backend == "cuda" else "cpu").median
