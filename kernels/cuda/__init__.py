"""CUDA C kernels: one source, run on a GPU (CuPy) or on the CPU (the emulator).

Loading and launching
---------------------
::

    import numpy as np
    from kernels.cuda import load_module

    mod = load_module("conv2d.cu", "cuda-emu",              # or "cuda" (CuPy RawModule)
                      name_expressions=("im2col<float>",),   # template instantiations
                      options=("-DTILE=16",))
    k = mod.get_function("conv2d_fwd")                        # extern "C" name or name expression
    k((grid_x, grid_y), (16, 16), (out, x, w, np.int32(N)), shared_mem=nbytes)

``load_module(filename, backend, *, name_expressions=(), options=())`` reads
``kernels/cuda/<filename>`` (or an absolute path), compiles it with ``-std=c++17`` and caches
the module per (file, mtime, backend, name expressions, options). Kernels follow CuPy's
``RawKernel`` call: ``kernel(grid, block, args, shared_mem=0)``, grid/block an int or 1-3 ints,
args a tuple. On ``"cuda"`` arrays are CuPy arrays; on ``"cuda-emu"`` they are NumPy arrays
(``loader.array_module(backend)`` gives the right one). Compile errors raise
:class:`CudaCompileError` whose message carries ``<abs path>.cu:<line>`` and the compiler's
text: the loader puts ``#line 1 "<abs path>"`` in front of the source on both paths.

Errors from the emulator: :class:`KernelArgumentError` (argument doesn't match the kernel's
parameter type), :class:`CudaLaunchError` (a barrier deadlock, grid sync outside a
cooperative launch, ``__trap()``/``SEQGRID_ASSERT``); both name the kernel (and the block).

Source conventions for kernel writers
-------------------------------------
* Self-contained CUDA C: no ``#include`` (NVRTC, which CuPy compiles with, has no host
  headers). No ``INFINITY``/``NAN``/``FLT_MAX``/``std::``: use the prelude's constants.
* Kernels are ``extern "C" __global__ void name(...)``; templates are fine as
  ``template <typename T> __global__ void name(...)`` and are instantiated by passing name
  expressions (``"name<float>"``) to ``load_module``. List them in the source as comment
  lines ``// seqgrid: instantiate name<float>`` so the NVRTC compile check
  (``tests/test_cuda_compile.py``, ``python -m kernels.cuda.loader``) covers them.
* Arguments follow CuPy's rules: arrays pass their data pointer; a Python ``int`` is passed
  as a 64-bit ``long long`` and a Python ``float`` as a ``double``; NumPy scalars keep their
  dtype. So kernels take sized types and callers pass ``np.int32(n)`` for an ``int``
  parameter and ``np.float32(a)`` for a ``float``. The emulator checks this (and each array's
  dtype against the pointer's element type) and raises with the kernel, argument index,
  name and expected type; on a GPU a wrong scalar type silently reads garbage.
* Everything CUDA provides on the device is available on both paths: ``threadIdx``,
  ``blockIdx``, ``blockDim``, ``gridDim``, ``warpSize``, ``__shared__``, ``__syncthreads``
  (and ``_count/_and/_or``), ``__syncwarp``, ``__shfl[_up|_down|_xor]_sync``,
  ``__ballot/any/all_sync``, ``__reduce_*_sync``, ``atomicAdd/Sub/Max/Min/CAS/Exch/And/Or``,
  float math (``expf``, ``tanhf``, ``fmaxf``, ``rsqrtf``, ``__expf``, ``fmaf``, ...), ``min``/
  ``max``, ``__ldg``, the vector types (``float4``, ``make_float4``, ...), ``printf``.

The prelude (prepended by the loader on the NVRTC/CuPy path, :data:`loader.NVRTC_PRELUDE`;
defined by ``emu/cuda_emu.h`` in the emulator) adds:

* ``SEQGRID_DYNAMIC_SHARED(type, name);`` inside a kernel declares the dynamic shared memory
  (``shared_mem`` bytes of the launch, 16-byte aligned) as ``type* name`` / ``type name[]``.
  On NVRTC it is ``extern __shared__ __align__(16) type name[]``; in the emulator, a pointer
  to the block's buffer. (The emulator also rewrites a literal one-line
  ``extern __shared__ T name[];`` inside a function, but the macro is the convention.) NVRTC
  requires every ``extern __shared__`` array of a module to have one type: use one name per
  type. The emulator fills dynamic shared memory with 0xFF bytes (NaN) per block.
* ``seqgrid_grid_sync()``: a grid-wide barrier (all threads of all blocks). A kernel whose
  body calls it (or ``cooperative_groups::this_grid()``) is launched cooperatively: CuPy
  ``RawModule(enable_cooperative_groups=True)``; the emulator runs every block at once on
  its own OS thread (at most 1024 blocks). The grid must fit on the GPU at once (blocks <=
  SMs x resident blocks per SM). Call it in the kernel body itself; the emulator decides
  "cooperative" from the body's text (or pass ``cooperative=True`` to the emulated launch).
* constants ``SEQGRID_INF_F``, ``SEQGRID_INF``, ``SEQGRID_NAN_F``, ``SEQGRID_FLT_MAX``,
  ``SEQGRID_DBL_MAX``; ``SEQGRID_ASSERT(cond)`` (traps; the emulator raises
  CudaLaunchError naming the kernel, block, thread and line); ``SEQGRID_CUDA`` /
  ``SEQGRID_EMU`` defined on the respective path.

Emulator semantics worth knowing (details in :mod:`kernels.cuda.emu`)
---------------------------------------------------------------------
* Blocks are spread over ``SEQGRID_EMU_THREADS`` OS threads (default: all cores); inside a
  block the CUDA threads are fibers that switch only at barriers and warp operations, so a
  data race *between* barriers is invisible in forward order. ``SEQGRID_EMU_REVERSE=1`` runs
  blocks and threads in reverse order: results that change expose missing barriers.
* A ``__syncthreads`` that not all threads reach (some exited) and warp ops whose mask names
  lanes that never arrive are reported as CudaLaunchError("deadlock ..."), never a hang.
* ``__shared__`` is ``static thread_local`` (one block at a time per OS thread); it is not
  reset between blocks, like real shared memory.
* ``SEQGRID_EMU_ASAN=1`` builds with ``-fsanitize=address,undefined``: out-of-bounds global
  and dynamic-shared accesses are reported at the .cu line. The process needs the ASan
  runtime preloaded: ``emu.asan_env()`` returns such an environment for a subprocess.
"""
from .loader import (CudaCompileError, CudaLaunchError, KernelArgumentError, array_module,
                     compile_check, load_module)

__all__ = ["load_module", "compile_check", "array_module", "CudaCompileError", "CudaLaunchError",
           "KernelArgumentError"]
