"""The CUDA emulator (backend "cuda-emu") against NumPy, on kernels/cuda/selftest.cu.

Also: argument type checks, deadlock reporting, reverse mode, compile errors with file:line,
and an ASan subprocess run that finds an out-of-bounds write at its .cu line.
"""
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from util import assert_close

from kernels.registry import backend_status

ok, why = backend_status()["cuda-emu"]
if not ok:
    pytest.skip(f"cuda-emu unavailable: {why}", allow_module_level=True)

from kernels.cuda import (CudaCompileError, CudaLaunchError, KernelArgumentError,  # noqa: E402
                          load_module)

NAME_EXPRS = ("scale_add<float>", "scale_add<double>", "block_sum<float, 128>")
SELFTEST = Path(__file__).resolve().parents[1] / "kernels" / "cuda" / "selftest.cu"


@pytest.fixture(scope="module")
def mod():
    return load_module("selftest.cu", "cuda-emu", name_expressions=NAME_EXPRS)


def cdiv(a, b):
    return (a + b - 1) // b


def test_module_is_cached(mod):
    assert load_module("selftest.cu", "cuda-emu", name_expressions=NAME_EXPRS) is mod


def test_module_cache_follows_the_file(tmp_path):
    """The loader remembers where a name resolved to, but still notices an edited source (a
    new module) and a deleted one (the usual FileNotFoundError)."""
    src = tmp_path / "edited.cu"
    src.write_text('extern "C" __global__ void k(float* y) { y[0] = 1.0f; }\n')
    first = load_module(src, "cuda-emu")
    assert load_module(str(src), "cuda-emu") is first
    src.write_text('extern "C" __global__ void k(float* y) { y[0] = 2.0f; }  // edited\n')
    second = load_module(src, "cuda-emu")
    assert second is not first
    y = np.zeros(1, np.float32)
    second.get_function("k")((1,), (1,), (y,))
    assert y[0] == 2.0
    src.unlink()
    with pytest.raises(FileNotFoundError, match="edited.cu"):
        load_module(src, "cuda-emu")


def test_vec_add(mod, rng):
    n = 1000
    a, b = rng.standard_normal((2, n), dtype=np.float32)
    out = np.zeros(n, np.float32)
    mod.get_function("vec_add")((cdiv(n, 256),), (256,), (out, a, b, np.int32(n)))
    assert_close("out", out, a + b, atol=0, rtol=0)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_matmul_tiled(mod, rng, monkeypatch, mode):
    if mode == "reverse":
        monkeypatch.setenv("SEQGRID_EMU_REVERSE", "1")
    M, N, K = 37, 50, 45   # not multiples of the 16x16 tile
    A = rng.standard_normal((M, K), dtype=np.float32)
    B = rng.standard_normal((K, N), dtype=np.float32)
    C = np.full((M, N), np.nan, np.float32)
    mod.get_function("matmul_tiled")((cdiv(N, 16), cdiv(M, 16)), (16, 16),
                                     (C, A, B, np.int32(M), np.int32(N), np.int32(K)))
    assert_close("C", C, A.astype(np.float64) @ B, atol=1e-4, rtol=1e-4)


def test_reduce_sum_warp_shuffle(mod, rng):
    n, bs = 1000, 256
    x = rng.standard_normal(n, dtype=np.float32)
    out = np.zeros(cdiv(n, bs), np.float32)
    mod.get_function("reduce_sum")((len(out),), (bs,), (out, x, np.int32(n)))
    ref = np.array([x[i:i + bs].astype(np.float64).sum() for i in range(0, n, bs)])
    assert_close("out", out, ref, atol=1e-4, rtol=1e-5)


def test_warp_ops(mod, rng):
    n = 128
    x = rng.standard_normal(n, dtype=np.float32)
    v = rng.integers(-5, 5, n, dtype=np.int32)
    mx, bc = np.zeros(n, np.float32), np.zeros(n, np.float32)
    scan, ballot = np.zeros(n, np.int32), np.zeros(n, np.uint32)
    mod.get_function("warp_ops")((2,), (64,), (mx, bc, scan, ballot, x, v))
    w = lambda a: a.reshape(-1, 32)  # noqa: E731
    assert_close("max", w(mx), np.repeat(w(x).max(1, keepdims=True), 32, 1), atol=0, rtol=0)
    assert_close("bcast", w(bc), np.repeat(w(x)[:, :1], 32, 1), atol=0, rtol=0)
    np.testing.assert_array_equal(w(scan), np.cumsum(w(v), axis=1), err_msg="scan")
    bits = (w(x) > 0).astype(np.uint64) << np.arange(32, dtype=np.uint64)
    np.testing.assert_array_equal(w(ballot), np.repeat(bits.sum(1, keepdims=True), 32, 1), err_msg="ballot")


def test_histogram_atomics(mod, rng):
    n, nbins = 5000, 17
    vals = rng.integers(0, nbins, n, dtype=np.int32)
    hist = np.zeros(nbins, np.uint32)
    mod.get_function("histogram")((8,), (128,), (hist, vals, np.int32(n), np.int32(nbins)))
    np.testing.assert_array_equal(hist, np.bincount(vals, minlength=nbins))


def test_atomics(mod, rng):
    n = 700
    x = rng.standard_normal(n).astype(np.float32)
    v = rng.integers(-1000, 1000, n, dtype=np.int32)
    fsum, imax = np.zeros(1, np.float32), np.array([-(2**31)], np.int32)
    winner, exch = np.array([-1], np.int32), np.zeros(1, np.int32)
    mod.get_function("atomics")((cdiv(n, 128),), (128,), (fsum, imax, winner, exch, x, v, np.int32(n)))
    assert_close("fsum", fsum, np.array([x.astype(np.float64).sum()]), atol=1e-3, rtol=1e-4)
    assert imax[0] == v.max()
    assert 0 <= winner[0] < n
    assert exch[0] == 7


def test_dynamic_shared_memory(mod, rng):
    n, bs = 300, 64
    x = rng.standard_normal(n, dtype=np.float32)
    y = np.zeros(n, np.float32)
    mod.get_function("block_reverse")((cdiv(n, bs),), (bs,), (y, x, np.int32(n)), shared_mem=bs * 4)
    xp = np.concatenate([x, np.zeros(cdiv(n, bs) * bs - n, np.float32)])
    assert_close("y", y, xp.reshape(-1, bs)[:, ::-1].reshape(-1)[:n], atol=0, rtol=0)


@pytest.mark.parametrize("dtype,expr", [(np.float32, "scale_add<float>"), (np.float64, "scale_add<double>")])
def test_template_name_expressions(mod, rng, dtype, expr):
    n = 333
    x = rng.standard_normal(n).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    ref = 2.5 * x + y
    alpha = dtype(2.5) if dtype is np.float32 else 2.5  # a Python float is a double
    mod.get_function(expr)((cdiv(n, 128),), (128,), (y, x, alpha, np.int32(n)))
    assert_close("y", y, ref)


def test_template_with_int_parameter(mod, rng):
    n = 500
    x = rng.standard_normal(n, dtype=np.float32)
    out = np.zeros(cdiv(n, 128), np.float32)
    mod.get_function("block_sum<float,128>")((len(out),), (128,), (out, x, np.int32(n)))
    xp = np.concatenate([x, np.zeros(len(out) * 128 - n, np.float32)]).astype(np.float64)
    assert_close("out", out, xp.reshape(-1, 128).sum(1), atol=1e-4, rtol=1e-5)


def test_grid_sync(mod):
    n, bs, nb = 200, 32, 7   # 224 threads
    x = np.zeros(n, np.float32)
    y = np.zeros(n, np.float32)
    k = mod.get_function("grid_sync_shift")
    assert k.cooperative
    k((nb,), (bs,), (y, x, np.int32(n)))
    i = np.arange(n)
    src = (i + bs) % min(nb * bs, n)
    ref = sum(src + 1 + rep for rep in range(3)).astype(np.float32)
    assert_close("y", y, ref, atol=0, rtol=0)


def test_grid_sync_without_cooperative_launch_is_an_error(mod):
    x = np.zeros(64, np.float32)
    with pytest.raises(CudaLaunchError, match="grid sync.*not launched cooperatively"):
        mod.get_function("grid_sync_shift")((2,), (32,), (x.copy(), x, np.int32(64)), cooperative=False)


def test_divergent_syncthreads_is_a_reported_deadlock(mod):
    y = np.zeros(64, np.float32)
    with pytest.raises(CudaLaunchError) as ei:
        mod.get_function("divergent_sync")((3,), (64,), (y, np.int32(20)))
    msg = str(ei.value)
    assert "deadlock" in msg and "divergent_sync" in msg and "block (" in msg
    assert "exited" in msg and "__syncthreads" in msg


def test_launch_after_deadlock_reuses_the_parked_stacks(mod, monkeypatch):
    # one worker, forward order: the deadlock parks thread 0 mid-frame on the arena's first
    # stack; vec_add then runs its threads one after another on that stack, each with its top
    # staggered 64 bytes lower, across the parked frames. Under ASan (CI's sanitized pass)
    # their stale redzones once made such a launch abort with a stack-buffer-underflow.
    monkeypatch.setenv("SEQGRID_EMU_THREADS", "1")
    monkeypatch.setenv("SEQGRID_EMU_REVERSE", "0")
    y = np.zeros(64, np.float32)
    with pytest.raises(CudaLaunchError, match="deadlock"):
        mod.get_function("divergent_sync")((1,), (64,), (y, np.int32(20)))
    a = np.arange(64, dtype=np.float32)
    out = np.zeros(64, np.float32)
    mod.get_function("vec_add")((1,), (64,), (out, a, a, np.int32(64)))
    np.testing.assert_array_equal(out, 2 * a)


def test_reverse_mode_exposes_missing_barrier(mod, monkeypatch):
    nb = 16
    y = np.full(nb, -1, np.float32)
    monkeypatch.setenv("SEQGRID_EMU_REVERSE", "0")    # forward order, even in CI's reverse pass
    mod.get_function("racy_neighbor")((nb,), (32,), (y,))
    np.testing.assert_array_equal(y, np.arange(nb))   # forward order happens to work
    monkeypatch.setenv("SEQGRID_EMU_REVERSE", "1")
    y[:] = -1
    mod.get_function("racy_neighbor")((nb,), (32,), (y,))
    assert (y != np.arange(nb)).any()


# ---------------------------------------------------------------------------- argument checks
def test_python_int_for_int_parameter_is_rejected(mod):
    a = np.zeros(4, np.float32)
    with pytest.raises(KernelArgumentError, match=r"vec_add.*argument 3 'n' \(int\).*np\.int32"):
        mod.get_function("vec_add")((1,), (4,), (a, a, a, 4))


def test_wrong_array_dtype_is_rejected(mod):
    a = np.zeros(4, np.float32)
    with pytest.raises(KernelArgumentError, match=r"argument 1 'a' \(const float\*\).*float64.*float32"):
        mod.get_function("vec_add")((1,), (4,), (a, a.astype(np.float64), a, np.int32(4)))


def test_wrong_scalar_dtype_and_count(mod):
    a = np.zeros(4, np.float32)
    k = mod.get_function("scale_add<float>")
    with pytest.raises(KernelArgumentError, match=r"'alpha' \(float\).*Python float.*np\.float32"):
        k((1,), (4,), (a, a, 1.0, np.int32(4)))
    with pytest.raises(KernelArgumentError, match=r"np\.int64.*np\.int32"):
        k((1,), (4,), (a, a, np.float32(1), np.int64(4)))
    with pytest.raises(KernelArgumentError, match="takes 4 arguments"):
        k((1,), (4,), (a, a, np.float32(1)))
    with pytest.raises(KernelArgumentError, match="pointer parameter needs a NumPy array"):
        k((1,), (4,), (a, 3, np.float32(1), np.int32(4)))


def test_unknown_kernel_name(mod):
    with pytest.raises(KeyError, match="no kernel 'nope'"):
        mod.get_function("nope")


def test_ucontext_fallback(monkeypatch, rng):
    """The portable swapcontext fiber switch gives the same results and deadlock reports."""
    monkeypatch.setenv("SEQGRID_EMU_UCONTEXT", "1")
    m = load_module("selftest.cu", "cuda-emu")
    M = N = K = 32
    A, B = rng.standard_normal((2, M, K), dtype=np.float32)
    C = np.zeros((M, N), np.float32)
    m.get_function("matmul_tiled")((2, 2), (16, 16), (C, A, B, np.int32(M), np.int32(N), np.int32(K)))
    assert_close("C", C, A.astype(np.float64) @ B, atol=1e-4, rtol=1e-4)
    x = rng.standard_normal(256, dtype=np.float32)
    out = np.zeros(2, np.float32)
    m.get_function("reduce_sum")((2,), (128,), (out, x, np.int32(256)))
    assert_close("sum", out, x.reshape(2, -1).astype(np.float64).sum(1), atol=1e-4, rtol=1e-5)
    with pytest.raises(CudaLaunchError, match="deadlock"):
        m.get_function("divergent_sync")((1,), (64,), (np.zeros(64, np.float32), np.int32(20)))


MISC_CU = r"""
extern "C" __global__ void __launch_bounds__(128) ext_shared(float* y, const float* x) {
    extern __shared__ float buf[];   // literal form, rewritten by the emulator
    buf[threadIdx.x] = x[threadIdx.x];
    int c = __syncthreads_count(x[threadIdx.x] > 0.0f);
    y[threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x] + 1000.0f * c;
}
extern "C" __global__ void assert_positive(const int* v) {
    SEQGRID_ASSERT(v[threadIdx.x] > 0);
}
extern "C" __global__ void shfl_after_exit(float* y, int n) {
    if ((int)threadIdx.x >= n) return;
    y[threadIdx.x] = __shfl_down_sync(0xffffffffu, y[threadIdx.x], 1);
}
"""


def test_misc_source_features(rng):
    from kernels.cuda.emu import cache_dir
    p = cache_dir() / "test-sources" / "misc.cu"   # a stable path keeps the build cached
    p.parent.mkdir(exist_ok=True)
    if not p.exists() or p.read_text() != MISC_CU:
        p.write_text(MISC_CU)
    m = load_module(p, "cuda-emu")
    x = rng.standard_normal(64, dtype=np.float32)
    y = np.zeros(64, np.float32)
    m.get_function("ext_shared")((1,), (64,), (y, x), shared_mem=64 * 4)
    assert_close("y", y, x[::-1] + 1000.0 * (x > 0).sum(), atol=1e-3, rtol=0)
    with pytest.raises(CudaLaunchError, match=r"assert_positive.*thread \(3,0,0\).*SEQGRID_ASSERT\(v\[threadIdx.x\] > 0\)"):
        v = np.ones(8, np.int32)
        v[3] = 0
        m.get_function("assert_positive")((1,), (8,), (v,))
    with pytest.raises(CudaLaunchError, match=r"deadlock.*shfl_after_exit.*__shfl_down_sync"):
        m.get_function("shfl_after_exit")((1,), (32,), (np.zeros(32, np.float32), np.int32(20)))


# ---------------------------------------------------------------------------- compile errors
def test_compile_error_points_at_cu_line(tmp_path):
    src = tmp_path / "broken.cu"
    src.write_text(textwrap.dedent("""\
        extern "C" __global__ void ok(float* y) { y[0] = 1.0f; }

        extern "C" __global__ void broken(float* y) {
            y[0] = undefined_name;
        }
        """))
    with pytest.raises(CudaCompileError) as ei:
        load_module(src, "cuda-emu")
    assert re.search(rf"{re.escape(str(src))}:4:\d+: error:.*undefined_name", str(ei.value))


# ---------------------------------------------------------------------------- ASan
def test_asan_reports_out_of_bounds_at_cu_line():
    from kernels.cuda.emu import asan_env
    try:
        env = asan_env()
    except FileNotFoundError as exc:
        pytest.skip(f"ASan unusable: {exc}")
    line = next(i for i, l in enumerate(SELFTEST.read_text().splitlines(), 1)
                if "y[i] = 1.0f;  // BUG on purpose" in l)
    code = textwrap.dedent("""\
        import numpy as np
        from kernels.cuda import load_module
        m = load_module("selftest.cu", "cuda-emu")
        z = np.zeros(1000, np.float32)   # > 1 KiB: NumPy mallocs it directly (no small-block cache)
        m.get_function("oob_write")((4,), (256,), (z, np.int32(1000)))
        print("NO ERROR")
        """)
    env["SEQGRID_EMU_THREADS"] = "1"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300, cwd=str(SELFTEST.parents[2]))
    out = r.stdout + r.stderr
    if "NO ERROR" in out or r.returncode == 0:
        pytest.fail(f"ASan did not report the out-of-bounds write:\n{out[-3000:]}")
    assert "heap-buffer-overflow" in out, out[-3000:]
    assert f"selftest.cu:{line}" in out, out[-3000:]
