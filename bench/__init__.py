"""seqgrid measuring: workloads, FLOP counts, roofline, timer, gap metrics, CLI, asv suite."""

import kernels  # noqa: F401,E402  (first: OPENBLAS_THREAD_TIMEOUT before NumPy loads, see kernels/__init__.py)
