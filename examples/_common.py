"""Helpers shared by the example scripts (not part of the seqgrid API).

Every example imports this module from its own directory, so the scripts run as
``python examples/NAME.py`` and load in-process (``runpy`` / ``importlib`` from the file path).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time

import kernels  # noqa: F401  (first: OPENBLAS_THREAD_TIMEOUT before NumPy loads)
import numpy as np

BACKENDS = ("numpy", "numba", "cuda")


def make_parser(description: str, *, epochs: int, batch_size: int, lr: float) -> argparse.ArgumentParser:
    """The options every example shares: --backend, --epochs, --seed, --batch-size, --lr,
    --quick (a small, fast run for tests), --no-progress, --threads, --blas-threads."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backend", default="numba", choices=BACKENDS,
                   help="kernel backend of every layer")
    p.add_argument("--epochs", type=_positive_int, default=epochs, help="training epochs")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the data split, the initialisation and the batch order")
    p.add_argument("--batch-size", type=_positive_int, default=batch_size, help="mini-batch size")
    p.add_argument("--lr", type=float, default=lr, help="Adam learning rate")
    p.add_argument("--quick", action="store_true",
                   help="a small subset of the data and a short run (for tests / smoke checks)")
    p.add_argument("--no-progress", action="store_true", help="do not draw the progress bar")
    p.add_argument("--threads", type=_threads, default=1,
                   help="numba threads, 0 = all cores. These layers are small: on 2 cores one "
                        "thread is a little slower than two on a quiet machine and several "
                        "times faster on a busy one, where numba's threads wait for each other")
    p.add_argument("--blas-threads", type=_positive_int, default=1,
                   help="BLAS threads (threadpoolctl); more only helps large layers")
    return p


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {s}")
    return v


def _threads(s: str) -> int:
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (all cores) or a positive int, got {s}")
    return v


@contextlib.contextmanager
def thread_limits(args):
    """Run with ``--threads`` numba threads (0: all cores) and ``--blas-threads`` BLAS threads,
    both restored afterwards.

    Why few threads by default: every layer here is small (batches of 32-128 rows), so a kernel
    runs for microseconds and a parallel region's start costs as much. On a busy 2-core machine
    each region waits for a second core: ``cnn_rnn.py --epochs 3`` took 12 s with one numba
    thread and 72-77 s with two (load average 3.5); ``digits_cnn.py`` 9 s and 27 s (load 3.2),
    but 8 s and 7 s when the load fell to 2.7. Likewise a multi-threaded BLAS's spinning
    threads fight numba's: one LSTM forward (T=8, N=64, Hd=64) took ~150 ms with 2 BLAS threads
    and ~3 ms with 1.
    """
    import numba
    from threadpoolctl import threadpool_limits
    before = numba.get_num_threads()
    numba.set_num_threads(min(args.threads or numba.config.NUMBA_NUM_THREADS,
                              numba.config.NUMBA_NUM_THREADS))
    try:
        # load numba's BLAS (SciPy's OpenBLAS) first so that the limit reaches it too
        import scipy.linalg.cython_blas  # noqa: F401
        with threadpool_limits(args.blas_threads, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(before)


# -- devices ----------------------------------------------------------------------------------
def array_module(backend: str):
    """``cupy`` for the cuda backend (data must live on the GPU), ``numpy`` otherwise.

    Raises ``kernels.registry.BackendUnavailableError`` (saying why) if ``backend`` cannot run
    here, e.g. cuda without CuPy or a GPU.
    """
    from kernels import registry
    registry.check_backend(backend)
    if backend == "cuda":
        import cupy
        return cupy
    return np


def to_device(model, backend: str):
    """Move a model's parameters to the GPU for the cuda backend (``Module.to`` where the layers
    provide it); a no-op on the CPU backends."""
    if backend != "cuda":
        return model
    if hasattr(model, "to"):
        return model.to("cuda")
    import cupy
    for p in model.parameters():
        p.data = cupy.asarray(p.data)
        p.grad = cupy.asarray(p.grad)
    return model


def host(a):
    """A NumPy array (or Python scalar) from a NumPy/CuPy value."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return a


def parse_and_run(parser: argparse.ArgumentParser, argv, run):
    """Parse ``argv`` and call ``run(args)`` inside :func:`thread_limits` (every example's
    ``main``)."""
    args = parser.parse_args(argv)
    with thread_limits(args):
        return run(args)


# -- data -------------------------------------------------------------------------------------
def digits_for(args):
    """:func:`load_digits_split` with ``args.seed``, cut to 320 train / 200 test images under
    ``--quick``."""
    x_tr, y_tr, x_te, y_te = load_digits_split(args.seed)
    if args.quick:
        x_tr, y_tr, x_te, y_te = x_tr[:320], y_tr[:320], x_te[:200], y_te[:200]
    return x_tr, y_tr, x_te, y_te


def load_digits_split(seed: int, test_size: float = 0.25):
    """scikit-learn's bundled 8x8 digits (1797 images, no download), scaled to [0, 1], split
    into train / test stratified by class with ``seed``.

    Returns ``(x_train, y_train, x_test, y_test)``: images float32 ``(n, 8, 8)``, labels int64.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise SystemExit("this example needs scikit-learn (its bundled digits data set): "
                         f"pip install -e \".[examples]\" ({e})")
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed,
                                              stratify=y)
    return x_tr, y_tr, x_te, y_te


def minibatches(n: int, batch_size: int, rng: np.random.Generator | None = None):
    """Index arrays covering ``range(n)`` in batches (shuffled when ``rng`` is given)."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def n_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


# -- output -----------------------------------------------------------------------------------
def console():
    from rich.console import Console
    return Console()


@contextlib.contextmanager
def progress_bar(total: int, description: str, disable: bool = False):
    """A rich progress bar on stderr; yields ``advance(loss=None, description=None)``."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), disable=disable,
                    transient=False)
    with prog:
        task = prog.add_task(description, total=total, loss="-")

        def advance(loss=None, description=None):
            fields = {}
            if loss is not None:
                fields["loss"] = f"{loss:.4f}"
            if description is not None:
                fields["description"] = description
            prog.update(task, advance=1, **fields)

        yield advance


def run_cli(main) -> None:
    """Entry point: run ``main(sys.argv[1:])``; a backend without the needed kernels (or
    unavailable here) is a one-line error and exit status 2, not a traceback."""
    from kernels.registry import BackendUnavailableError, KernelNotFoundError
    try:
        main(sys.argv[1:])
    except (BackendUnavailableError, KernelNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)


class Timer:
    def __init__(self):
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0
