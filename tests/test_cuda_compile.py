"""Every kernels/cuda/*.cu compiles for the GPU as CuPy would compile it: NVRTC (the pip
package nvidia-cuda-nvrtc-cu12, called through ctypes), sm_80 and sm_90, with the seqgrid
prelude and ``-std=c++17``; ``nvcc -c`` when NVRTC is missing; skipped when neither exists.

Template kernels are checked for the instantiations a source lists in comment lines
``// seqgrid: instantiate name<args>``.
"""
from pathlib import Path

import pytest

from kernels.cuda import loader

CU_FILES = sorted(p.name for p in loader.CUDA_DIR.glob("*.cu"))
COMPILER, WHY = loader.compiler_status()
needs_compiler = pytest.mark.skipif(COMPILER is None, reason=f"no CUDA compiler: {WHY}")


@needs_compiler
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("filename", CU_FILES)
def test_cu_file_compiles(filename, arch):
    src = (loader.CUDA_DIR / filename).read_text()
    result = loader.compile_check(filename, arch, name_expressions=loader.declared_name_expressions(src))
    if COMPILER == "nvrtc":
        assert set(result.lowered) == set(loader.declared_name_expressions(src))


def test_there_are_sources():
    assert "selftest.cu" in CU_FILES


@needs_compiler
def test_compile_check_rejects_host_only_names(tmp_path):
    """NVRTC has no host headers: INFINITY (from math.h) must be rejected, at its line."""
    p = tmp_path / "uses_infinity.cu"
    p.write_text('extern "C" __global__ void k(float* y) {\n    y[0] = INFINITY;\n}\n')
    with pytest.raises(loader.CudaCompileError) as ei:
        loader.compile_check(p, "sm_80")
    msg = str(ei.value)
    assert "INFINITY" in msg
    assert f"{p}(2)" in msg or f"{p}:2" in msg, msg


@needs_compiler
def test_prelude_names_compile(tmp_path):
    p = tmp_path / "prelude.cu"
    p.write_text(
        'extern "C" __global__ void k(float* y, int n) {\n'
        "    SEQGRID_DYNAMIC_SHARED(float, buf);\n"
        "    buf[threadIdx.x] = SEQGRID_INF_F;\n"
        "    seqgrid_grid_sync();\n"
        "    SEQGRID_ASSERT(n > 0);\n"
        "    y[threadIdx.x] = fminf(buf[threadIdx.x], SEQGRID_FLT_MAX);\n"
        "}\n")
    loader.compile_check(p, "sm_80")


def test_nvrtc_located_or_reason():
    """The NVRTC locator either finds a library or compiler_status explains what is missing."""
    path = loader.find_nvrtc()
    if path is None:
        assert "nvrtc" in WHY.lower()
    else:
        assert Path(path).exists()


def test_cuda_backend_loads_if_gpu_present():
    from kernels.registry import backend_status
    ok, why = backend_status()["cuda"]
    if not ok:
        pytest.skip(why)
    import cupy
    import numpy as np
    mod = loader.load_module("selftest.cu", "cuda", name_expressions=("scale_add<float>",))
    n = 1000
    a = cupy.arange(n, dtype=cupy.float32)
    out = cupy.zeros(n, cupy.float32)
    mod.get_function("vec_add")(((n + 255) // 256,), (256,), (out, a, a, np.int32(n)))
    assert float(abs(out - 2 * a).max()) == 0.0
