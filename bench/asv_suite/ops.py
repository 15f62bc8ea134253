"""Per-op benchmarks: conv2d, pooling and each recurrent cell, forward and forward+backward.

Parameters: implementation (``backend/vN``), workload (``quick`` set names on a CPU; ``seeds``
shapes added when CuPy sees a GPU) and threads (1 and all cores, via ``numba.set_num_threads``
and threadpoolctl for BLAS). A combination the commit lacks (backend, version, workload) or this
machine cannot run is skipped by ``NotImplementedError`` in ``setup``. ``setup`` is cheap (inputs
of the small shapes, one warm call: Numba's ``cache=True`` makes that a cache load after the
first run) because asv_runner re-runs it before every timed sample.

``time_forward`` / ``time_forward_backward`` are what asv times; ``track_seconds_per_gflop`` is
the training step's median seconds per GFLOP (smaller is better; GFLOP/s would be the wrong way
up for asv's regression detection).
"""
from __future__ import annotations

from . import _common as C


class _OpBench:
    key = ""            # CPU_WORKLOADS / GPU_WORKLOADS key
    impl_key = ""       # IMPLS key
    param_names = ["impl", "workload", "threads"]
    timeout = 120

    def setup(self, impl, workload, threads):
        self._threads = None
        self.impl, self.w = C.resolve(impl, workload, threads)
        self._threads = C.Threads(threads)
        try:
            runner = C.runners.make_runner(self.w, self.impl)
            self._step = C.synchronized(runner.run, self.impl)
            self._fwd = C.synchronized(C.forward_call(self.w, self.impl), self.impl)
            self._step()                # warm: JIT (cache load), first-touch, BLAS threads
            self._fwd()
        except ValueError as exc:       # a version refusing a shape (e.g. persistent N > 8)
            self._threads.restore()
            raise NotImplementedError(f"{impl} does not take {workload}: {exc}") from exc
        except Exception:
            self._threads.restore()
            raise

    def teardown(self, impl, workload, threads):
        t = getattr(self, "_threads", None)   # asv also tears down skipped combinations
        if t is not None:
            t.restore()
            self._threads = None

    def time_forward(self, impl, workload, threads):
        self._fwd()

    def time_forward_backward(self, impl, workload, threads):
        self._step()

    def track_seconds_per_gflop(self, impl, workload, threads):
        return C.measure_median(self._step, self.impl) / (self.w.training_flops / 1e9)
    track_seconds_per_gflop.unit = "s/GFLOP"


def _params(key, impl_key):
    return [C.IMPLS[impl_key], C.workload_params(key), C.THREADS]


class Conv2d(_OpBench):
    """conv2d forward / forward + backward-data + backward-weight."""
    params = _params("conv2d", "conv2d")


class Pool2d(_OpBench):
    """max and average pooling, forward / forward + backward."""
    params = _params("pool", "pool")


class RnnTanh(_OpBench):
    """vanilla tanh RNN over a whole sequence, forward / forward + full BPTT."""
    params = _params("rnn_tanh", "rnn")


class Lstm(_OpBench):
    """LSTM over a whole sequence, forward / forward + full BPTT."""
    params = _params("lstm", "rnn")


class Gru(_OpBench):
    """GRU over a whole sequence, forward / forward + full BPTT."""
    params = _params("gru", "rnn")
