"""Wall-clock and CUDA-event timing of one kernel call, with JIT compile time kept apart.

``time_call(fn)`` calls ``fn()`` once and reports that first call separately
(``first_call_s``: it includes Numba/NVRTC compilation and first-touch page
faults), runs the remaining warm-up calls untimed, then repeats the call until a
time budget is spent (but at least ``min_repeats`` and at most ``max_repeats``
times). Statistics (median, min, IQR) cover the repeats only.

CPU calls are timed with :func:`time.perf_counter`. GPU calls (``device="cuda"``
or ``sync`` a CuPy stream) are timed with CUDA events recorded on the stream
around each call, which measure device time without the host's launch jitter;
CuPy is imported only then.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable

__all__ = ["Timing", "time_call", "cuda_event_timer"]


@dataclasses.dataclass
class Timing:
    """Result of :func:`time_call`; all times in seconds.

    Attributes
    ----------
    times : list of float
        one entry per measured repeat (warm-up excluded).
    first_call_s : float
        the very first call, which includes JIT compilation; ``nan`` if none was made.
    device : str
        ``"cpu"`` (perf_counter) or ``"cuda"`` (CUDA events).
    n, median, min, max, mean, q1, q3, iqr : derived from ``times``.
    spread : float
        ``iqr / median``, the relative dispersion (0 for one sample).
    compile_s : float
        ``max(0, first_call_s - median)``: an estimate of the compile time.
    """

    times: list[float]
    first_call_s: float = float("nan")
    device: str = "cpu"
    n: int = dataclasses.field(init=False)
    median: float = dataclasses.field(init=False)
    min: float = dataclasses.field(init=False)
    max: float = dataclasses.field(init=False)
    mean: float = dataclasses.field(init=False)
    q1: float = dataclasses.field(init=False)
    q3: float = dataclasses.field(init=False)
    iqr: float = dataclasses.field(init=False)
    spread: float = dataclasses.field(init=False)
    compile_s: float = dataclasses.field(init=False)

    def __post_init__(self):
        t = sorted(float(x) for x in self.times)
        if not t:
            raise ValueError("Timing needs at least one measured time")
        self.times = [float(x) for x in self.times]
        self.n = len(t)
        self.median = statistics.median(t)
        self.min, self.max = t[0], t[-1]
        self.mean = statistics.fmean(t)
        if len(t) >= 2:
            q = statistics.quantiles(t, n=4, method="inclusive")
            self.q1, self.q3 = q[0], q[2]
        else:
            self.q1 = self.q3 = t[0]
        self.iqr = self.q3 - self.q1
        self.spread = self.iqr / self.median if self.median > 0 else 0.0
        fc = self.first_call_s
        self.compile_s = max(0.0, fc - self.median) if fc == fc else float("nan")

    def gflops(self, flops: float) -> float:
        """GFLOP/s of a call doing ``flops`` operations, at the median time."""
        return flops / self.median / 1e9

    def seconds_per_gflop(self, flops: float) -> float:
        """Median seconds per GFLOP (asv's "smaller is better" form of throughput)."""
        return self.median / (flops / 1e9)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return (f"{self.median * 1e3:.3f} ms median (min {self.min * 1e3:.3f}, IQR "
                f"{self.iqr * 1e3:.3f}, n={self.n}); first call {self.first_call_s * 1e3:.1f} ms")


def _is_cupy_stream(obj) -> bool:
    return type(obj).__module__.startswith("cupy") and hasattr(obj, "synchronize")


def _host_clock(fn: Callable[[], Any], sync: Callable[[], Any] | None) -> Callable[[], float]:
    def once() -> float:
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()  # the call's work must be finished inside the timed region
        return time.perf_counter() - t0
    return once


def cuda_event_timer(fn: Callable[[], Any], stream=None) -> Callable[[], float]:
    """A zero-argument function that runs ``fn()`` once and returns its GPU time in seconds.

    Records a CUDA event before and after ``fn()`` on ``stream`` (default: the
    current CuPy stream), waits for the end event and returns the elapsed time
    between them. Imports CuPy on first use.
    """
    import cupy  # lazy: the module must import without CuPy or a GPU

    def once() -> float:
        s = stream if stream is not None else cupy.cuda.get_current_stream()
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(s)
        fn()
        end.record(s)
        end.synchronize()
        return cupy.cuda.get_elapsed_time(start, end) / 1e3  # ms -> s
    return once


def time_call(fn: Callable[[], Any], *, warmup: int = 1, repeats: int | None = None,
              budget_s: float = 1.0, min_repeats: int = 3, max_repeats: int = 100,
              sync=None, device: str = "cpu") -> Timing:
    """Time ``fn()``: first call (compile) apart, then warm-up, then repeats.

    Parameters
    ----------
    fn : callable
        called with no arguments (bind them with a lambda or ``functools.partial``).
    warmup : int
        untimed calls before measuring; the first of them is timed on its own as
        :attr:`Timing.first_call_s`. With ``warmup=0`` the first measured call is
        reported as ``first_call_s`` and also counted in the statistics.
    repeats : int, optional
        measure exactly this many calls (ignores the budget).
    budget_s : float
        otherwise repeat until the measured calls have taken ``budget_s`` seconds
        (warm-up not counted), within ``[min_repeats, max_repeats]`` calls.
    min_repeats, max_repeats : int
        bounds on the number of measured calls when ``repeats`` is None.
    sync : callable or CuPy stream, optional
        a callable is called after each ``fn()`` inside the timed region (e.g.
        ``cupy.cuda.Device().synchronize``); a CuPy stream selects CUDA-event timing
        on that stream.
    device : {"cpu", "cuda"}
        ``"cuda"`` selects CUDA-event timing on the current stream.

    Returns
    -------
    Timing
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if warmup < 0 or min_repeats < 1 or max_repeats < min_repeats:
        raise ValueError(f"need warmup >= 0 and 1 <= min_repeats <= max_repeats; got "
                         f"warmup={warmup}, min_repeats={min_repeats}, max_repeats={max_repeats}")
    if repeats is not None and repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")

    use_events = device == "cuda" or _is_cupy_stream(sync)
    if use_events:
        stream = sync if _is_cupy_stream(sync) else None
        once = cuda_event_timer(fn, stream)
        # the first call runs NVRTC compilation on the host: time it on the host clock
        first = _host_clock(lambda: once(), None)
        dev = "cuda"
    else:
        if sync is not None and not callable(sync):
            raise TypeError(f"sync must be callable or a CuPy stream, got {type(sync).__name__}")
        once = first = _host_clock(fn, sync)
        dev = "cpu"

    times: list[float] = []
    first_call = float("nan")
    if warmup > 0:
        first_call = first()
        for _ in range(warmup - 1):
            once()

    spent = 0.0  # wall-clock spent in measured calls
    while True:
        t0 = time.perf_counter()
        t = once()
        spent += time.perf_counter() - t0
        times.append(t)
        n = len(times)
        if repeats is not None:
            if n >= repeats:
                break
        elif n >= max_repeats or (n >= min_repeats and spent >= budget_s):
            break
    if warmup == 0:
        first_call = times[0]
    return Timing(times=times, first_call_s=first_call, device=dev)
