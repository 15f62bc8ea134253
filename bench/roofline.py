"""Roofline peaks measured on this machine (not quoted from a datasheet), and % of roofline.

Two numbers place a kernel on a roofline: the compute peak and the memory
bandwidth. Both are measured with the best available library routine:

* CPU: ``sgemm_gflops`` = float32 NumPy matmul (BLAS) of large square matrices,
  ``2 n^3`` FLOPs per call, best of a few, at ``threads`` BLAS threads and at 1; ``copy_gbs`` = ``np.copyto`` of an
  array larger than the last-level cache, counting read + write bytes
  (``2 x nbytes``; the write-allocate read is not counted), best of one thread
  and of ``threads`` threads copying disjoint chunks.
* GPU (CuPy): cuBLAS sgemm via ``cupy.matmul`` and a device-to-device copy, both
  timed with CUDA events. CuPy is imported only inside :func:`gpu_peaks`.

Results are cached in ``$XDG_CACHE_HOME/seqgrid/peaks.json`` (default
``~/.cache/seqgrid/peaks.json``), keyed by host name, device and numba's thread
count (BLAS is limited to the same count while measuring, when threadpoolctl is
installed), so a thread-scaling run compares against the matching roofline. A
cached entry is reused when it was measured with at least the requested budget;
``refresh=True`` re-measures.

``percent_of_roofline(gflops, bytes, flops, peaks)``: achieved GFLOP/s over the
attainable ``min(peak_gflops, AI x bandwidth)`` with ``AI = flops / bytes``.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["cpu_peaks", "gpu_peaks", "percent_of_roofline", "attainable_gflops",
           "ridge_point", "cache_path"]


# ----------------------------------------------------------------------------
# cache
# ----------------------------------------------------------------------------
def cache_path() -> Path:
    """``$XDG_CACHE_HOME/seqgrid/peaks.json``, default ``~/.cache/seqgrid/peaks.json``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "seqgrid" / "peaks.json"


def _resolve_cache(cache) -> Path | None:
    if cache is False:
        return None
    if cache is None or cache is True:
        return cache_path()
    return Path(cache)


def _load(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # missing or corrupt: measure again


def _store(path: Path | None, key: str, entry: dict) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _load(path)
        data[key] = entry
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)  # atomic: concurrent runs never see half a file
    except OSError:
        pass  # a read-only home must not break a benchmark


def _cached(path: Path | None, key: str, budget_s: float, refresh: bool) -> dict | None:
    if refresh:
        return None
    entry = _load(path).get(key)
    if isinstance(entry, dict) and entry.get("budget_s", 0) >= budget_s:
        return dict(entry, cached=True)
    return None


def _numba_threads() -> int:
    try:
        import numba
        return int(numba.get_num_threads())
    except Exception:  # pragma: no cover - numba is a dependency
        return os.cpu_count() or 1


@contextlib.contextmanager
def _blas_threads(n: int):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS uses its own default
        yield False
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield True


# ----------------------------------------------------------------------------
# CPU
# ----------------------------------------------------------------------------
def _best_time(fn, budget_s: float, min_reps: int = 3, max_reps: int = 50) -> float:
    fn()  # warm-up: page faults, BLAS thread start-up
    best, spent, reps = float("inf"), 0.0, 0
    while reps < min_reps or (spent < budget_s and reps < max_reps):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return best


def _cpu_sgemm(budget_s: float, rng) -> tuple[float, int]:
    # grow n until one call is long enough to be timed well but still leaves
    # room for several repeats within the budget
    # (512 is the smallest "large" size: 256^2 floats sit in L2 and flatter BLAS)
    n, nmax = (512 if budget_s >= 0.1 else 256), 4096
    while True:
        a = rng.random((n, n), dtype=np.float32)
        b = rng.random((n, n), dtype=np.float32)
        c = np.empty((n, n), dtype=np.float32)
        dt = float("inf")
        for _ in range(2):  # best of 2: the first call at a size pays page faults
            t0 = time.perf_counter()
            np.matmul(a, b, out=c)
            dt = min(dt, time.perf_counter() - t0)
        # the next size costs ~8x; grow only if warm-up + 3 repeats of it still fit
        if n >= nmax or dt * 8 * 4 > budget_s * 0.75:
            break
        n *= 2
    t = _best_time(lambda: np.matmul(a, b, out=c), budget_s * 0.75)
    return 2.0 * n ** 3 / t / 1e9, n


def _cpu_copy(budget_s: float, threads: int) -> tuple[float, float, int]:
    # 64 MiB per array: src + dst well beyond a typical last-level cache
    nbytes = (64 if budget_s >= 0.2 else 32) << 20
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.zeros_like(src)
    t1 = _best_time(lambda: np.copyto(dst, src), budget_s / 2)
    tn = t1
    if threads > 1:
        chunks = np.array_split(np.arange(src.size), threads)
        bounds = [(int(c[0]), int(c[-1]) + 1) for c in chunks if c.size]
        with ThreadPoolExecutor(threads) as pool:
            def par():  # np.copyto releases the GIL, so chunks copy concurrently
                list(pool.map(lambda ab: np.copyto(dst[ab[0]:ab[1]], src[ab[0]:ab[1]]), bounds))
            tn = _best_time(par, budget_s / 2)
    return 2 * nbytes / min(t1, tn) / 1e9, 2 * nbytes / t1 / 1e9, nbytes


# threaded sgemm below this share of the 1-thread rate is taken for a stall of the machine
# (another process, a spinning thread pool) rather than its peak, and measured again, up to
# SGEMM_ATTEMPTS times in all: one stalled 2-thread measurement (6 GFLOP/s against 80 on one
# thread) once stayed in the cache and halved every % of roofline quoted from it
PLAUSIBLE_THREADED_SHARE = 0.5
SGEMM_ATTEMPTS = 3


def _threads_plausible(by_threads: dict, threads: int) -> bool:
    """Whether threaded BLAS measured at least PLAUSIBLE_THREADED_SHARE of serial BLAS."""
    if threads <= 1 or str(threads) not in by_threads or "1" not in by_threads:
        return True
    return by_threads[str(threads)] >= PLAUSIBLE_THREADED_SHARE * by_threads["1"]


def cpu_peaks(budget_s: float = 1.2, refresh: bool = False, cache=None) -> dict:
    """Measure (or load from the cache) this CPU's sgemm and copy peaks.

    Parameters
    ----------
    budget_s : float
        approximate seconds to spend measuring (about 60% sgemm, 40% copy); a
        tiny budget (e.g. 0.05) gives quick, rougher numbers from smaller sizes.
    refresh : bool
        re-measure even if the cache has an entry.
    cache : path, None or False
        cache file; None = :func:`cache_path`, False = neither read nor write.

    Returns
    -------
    dict
        ``device="cpu"``, ``sgemm_gflops`` (best of BLAS at ``threads`` threads and
        at 1), ``sgemm_gflops_by_threads``, ``copy_gbs`` (best of 1 and ``threads``
        threads), ``copy_gbs_1thread``, ``sgemm_n``, ``copy_bytes`` (per array),
        ``threads`` (numba's), ``blas_limited`` (BLAS threads set to ``threads``),
        ``suspect`` (threaded BLAS still below half of serial BLAS after
        ``SGEMM_ATTEMPTS`` tries: a busy machine; re-measure later with
        ``seqgrid info --remeasure``), ``host``, ``key``, ``budget_s``, ``measured_at``
        (Unix time), ``cached``.
    """
    threads = _numba_threads()
    host = socket.gethostname()
    key = f"{host}|cpu|numba_threads={threads}"
    path = _resolve_cache(cache)
    hit = _cached(path, key, budget_s, refresh)
    if hit is not None:
        return hit
    rng = np.random.default_rng(0)
    # BLAS at ``threads`` threads and at 1: the peak is the better of the two (a
    # shared or oversubscribed machine can make threaded BLAS slower than serial)
    by_threads, limited, n = {}, False, 0
    counts = sorted({1, threads}, reverse=True)
    for _attempt in range(SGEMM_ATTEMPTS):
        for nt in counts:
            with _blas_threads(nt) as limited:
                g, size = _cpu_sgemm(budget_s * 0.6 / len(counts), rng)
            if g >= max(by_threads.values(), default=0.0):
                n = size
            by_threads[str(nt)] = max(g, by_threads.get(str(nt), 0.0))
            if not limited:  # cannot change BLAS threads: one measurement is all we get
                break
        if _threads_plausible(by_threads, threads):
            break
    gflops = max(by_threads.values())
    gbs, gbs1, nbytes = _cpu_copy(budget_s * 0.4, threads)
    entry = dict(device="cpu", sgemm_gflops=gflops, copy_gbs=gbs, copy_gbs_1thread=gbs1,
                 sgemm_gflops_by_threads=by_threads, sgemm_n=n, copy_bytes=nbytes, threads=threads, blas_limited=bool(limited),
                 suspect=not _threads_plausible(by_threads, threads),
                 host=host, key=key, budget_s=float(budget_s), measured_at=time.time())
    _store(path, key, entry)
    return dict(entry, cached=False)


# ----------------------------------------------------------------------------
# GPU
# ----------------------------------------------------------------------------
def _gpu_best(cupy, fn, budget_s: float, min_reps: int = 3, max_reps: int = 50) -> float:
    fn()
    cupy.cuda.get_current_stream().synchronize()
    best, spent, reps = float("inf"), 0.0, 0
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    while reps < min_reps or (spent < budget_s and reps < max_reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        dt = cupy.cuda.get_elapsed_time(start, end) / 1e3
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return best


def gpu_peaks(budget_s: float = 1.0, refresh: bool = False, cache=None,
              device: int = 0) -> tuple[dict | None, str]:
    """Measure (or load) the GPU's cuBLAS sgemm and device-to-device copy peaks.

    Parameters
    ----------
    budget_s : float
        approximate seconds of GPU time to spend (sgemm ~60%, copy ~40%).
    refresh, cache :
        as for :func:`cpu_peaks`.
    device : int
        CUDA device ordinal.

    Returns
    -------
    (dict or None, str)
        the peaks (keys as for :func:`cpu_peaks`, ``device="cuda"``, plus ``name``
        and ``tf32``) and a one-line description; ``(None, reason)`` when CuPy or a
        GPU is missing.
    """
    try:
        import cupy
    except Exception as exc:
        return None, f"CuPy is not installed ({type(exc).__name__}: {exc})"
    try:
        if cupy.cuda.runtime.getDeviceCount() <= device:
            return None, f"CuPy {cupy.__version__} sees no CUDA device {device}"
        props = cupy.cuda.runtime.getDeviceProperties(device)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    except Exception as exc:
        return None, f"CuPy {cupy.__version__} found but no usable CUDA driver/device ({exc})"
    host = socket.gethostname()
    key = f"{host}|cuda:{device}|{name}"
    path = _resolve_cache(cache)
    hit = _cached(path, key, budget_s, refresh)
    if hit is not None:
        return hit, f"{name} (cached)"
    tf32 = os.environ.get("CUPY_TF32", "0") == "1"  # TF32 would inflate the fp32 peak
    with cupy.cuda.Device(device):
        n = 4096 if budget_s >= 0.2 else 1024
        a = cupy.random.random((n, n), dtype=cupy.float32)
        b = cupy.random.random((n, n), dtype=cupy.float32)
        c = cupy.empty((n, n), dtype=cupy.float32)
        t = _gpu_best(cupy, lambda: cupy.matmul(a, b, out=c), budget_s * 0.6)
        if n == 4096 and t < 2e-3:  # a fast GPU: a bigger GEMM gets closer to peak
            n = 8192
            a = cupy.random.random((n, n), dtype=cupy.float32)
            b = cupy.random.random((n, n), dtype=cupy.float32)
            c = cupy.empty((n, n), dtype=cupy.float32)
            t = _gpu_best(cupy, lambda: cupy.matmul(a, b, out=c), budget_s * 0.6)
        gflops = 2.0 * n ** 3 / t / 1e9
        del a, b, c
        nbytes = 512 << 20 if budget_s >= 0.2 else 64 << 20
        src = cupy.ones(nbytes // 4, dtype=cupy.float32)
        dst = cupy.empty_like(src)
        tc = _gpu_best(cupy, lambda: cupy.copyto(dst, src), budget_s * 0.4)
        gbs = 2 * nbytes / tc / 1e9
        del src, dst
    entry = dict(device="cuda", name=name, sgemm_gflops=gflops, copy_gbs=gbs, sgemm_n=n,
                 copy_bytes=nbytes, tf32=tf32, host=host, key=key, budget_s=float(budget_s),
                 measured_at=time.time())
    _store(path, key, entry)
    return dict(entry, cached=False), f"{name}"


# ----------------------------------------------------------------------------
# roofline arithmetic
# ----------------------------------------------------------------------------
def ridge_point(peaks: dict) -> float:
    """Arithmetic intensity (FLOP/byte) where the roofline turns flat: ``peak / bandwidth``."""
    return peaks["sgemm_gflops"] / peaks["copy_gbs"]


def attainable_gflops(flops: float, nbytes: float, peaks: dict) -> float:
    """Roofline bound ``min(peak_gflops, AI x copy_gbs)`` with ``AI = flops / nbytes``."""
    if nbytes <= 0:
        return float(peaks["sgemm_gflops"])
    return min(float(peaks["sgemm_gflops"]), flops / nbytes * float(peaks["copy_gbs"]))


def percent_of_roofline(gflops: float, bytes: float, flops: float, peaks: dict) -> float:
    """Achieved GFLOP/s as a percentage of the roofline bound for this workload.

    Parameters
    ----------
    gflops : float
        measured throughput, GFLOP/s.
    bytes : float
        compulsory bytes moved by one call (e.g. :attr:`Workload.bytes`).
    flops : float
        FLOPs of one call (e.g. :attr:`Workload.flops`).
    peaks : dict
        from :func:`cpu_peaks` / :func:`gpu_peaks` (``sgemm_gflops``, ``copy_gbs``).

    Returns
    -------
    float
        ``100 * gflops / min(sgemm_gflops, flops / bytes * copy_gbs)``.
    """
    return 100.0 * gflops / attainable_gflops(flops, bytes, peaks)
