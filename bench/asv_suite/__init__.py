"""seqgrid's asv benchmark suite (``asv.conf.json``: ``"benchmark_dir": "bench/asv_suite"``).

asv imports this folder as a top-level package named ``asv_suite`` from the WORKING TREE (through
asv_runner's ``SpecificImporter``), while ``kernels``/``layers``/``bench`` come from the wheel
built from the commit being measured. So:

* every project import is guarded (``_common``): an older commit that lacks a module, op or
  version makes the affected benchmarks skip (``NotImplementedError`` in ``setup``), never breaks
  discovery;
* nothing here is named ``time_*``/``track_*`` unless it is a benchmark (asv would run it);
* parameter lists are static (not read from the registry), so results stay comparable across
  commits; a value a commit lacks is skipped.

Modules: ``ops`` (conv2d, pooling, rnn_tanh, lstm, gru: forward and forward+backward time,
seconds per GFLOP, threads 1 and all cores), ``parallelism_gap`` (gap ratio, n_1/2, RNN
per-step latency). All ``track_*`` numbers are smaller-is-better.
"""

import os as _os

# as kernels/__init__.py does (the commit under test may predate it): OpenBLAS's idle threads
# would otherwise spin for ~0.1 s after each multi-threaded call and stall numba's parallel
# kernels (8 ms per kernel on 2 cores)
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
