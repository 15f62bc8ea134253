"""Load CUDA C sources from ``kernels/cuda/`` on a GPU (CuPy) or on the CPU emulator.

::

    from kernels.cuda.loader import load_module
    mod = load_module("selftest.cu", "cuda-emu")            # or "cuda"
    k = mod.get_function("vec_add")
    k((blocks,), (256,), (out, a, b, np.int32(n)))          # CuPy RawKernel convention

Also the NVRTC compile check (:func:`compile_check`) used by ``tests/test_cuda_compile.py``;
:func:`main` is its command line (``main(["--arch", "sm_90", "conv2d.cu"])``, exit status 0/1/2)
for a ``seqgrid`` subcommand. See :mod:`kernels.cuda` for the source conventions.
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CUDA_DIR = Path(__file__).resolve().parent
BACKENDS = ("cuda", "cuda-emu")


class CudaCompileError(RuntimeError):
    """A .cu source failed to compile; the message carries ``file:line`` and the compiler's text."""


class CudaLaunchError(RuntimeError):
    """A kernel launch failed (emulator: deadlock at a barrier, grid-sync misuse, __trap)."""


class KernelNameError(KeyError):
    """``get_function`` of a name the module doesn't have; the message lists the names it has."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class KernelArgumentError(TypeError):
    """A kernel argument does not match the kernel's parameter type (emulator check)."""


# ----------------------------------------------------------------------------
# the prelude: prepended to every source on the NVRTC/CuPy path. The emulator's
# cuda_emu.h defines the same names for g++. Line numbers are kept by a #line
# directive after the prelude.
# ----------------------------------------------------------------------------
NVRTC_PRELUDE = r"""#define SEQGRID_CUDA 1
#define SEQGRID_DYNAMIC_SHARED(type, name) extern __shared__ __align__(16) type name[]
#define SEQGRID_INF_F __int_as_float(0x7f800000)
#define SEQGRID_INF __longlong_as_double(0x7ff0000000000000LL)
#define SEQGRID_NAN_F __int_as_float(0x7fffffff)
#define SEQGRID_FLT_MAX 3.402823466e+38f
#define SEQGRID_DBL_MAX 1.7976931348623158e+308
#define SEQGRID_ASSERT(cond) do { if (!(cond)) { printf("SEQGRID_ASSERT(%s) failed at %s:%d\n", #cond, __FILE__, __LINE__); __trap(); } } while (0)
"""
# Only for sources that use grid sync. A self-contained grid barrier (NVRTC has no built-in
# <cooperative_groups.h> and CuPy's include path may lack it): block barrier, then thread 0 of
# each block arrives on a module-global counter and spins on a generation word. Correct only
# when every block is resident, which CuPy guarantees for RawModule(enable_cooperative_groups=
# True) (cooperative launch; the loader sets it when the source calls seqgrid_grid_sync).
NVRTC_GRID_SYNC_PRELUDE = r"""__device__ unsigned int seqgrid_grid_barrier_state[2];
__device__ __noinline__ void seqgrid_grid_sync() {
    __syncthreads();
    if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
        const unsigned int nb = gridDim.x * gridDim.y * gridDim.z;
        volatile unsigned int* gen = &seqgrid_grid_barrier_state[1];
        const unsigned int g = *gen;
        __threadfence();
        if (atomicAdd(&seqgrid_grid_barrier_state[0], 1u) == nb - 1) {
            atomicExch(&seqgrid_grid_barrier_state[0], 0u);
            __threadfence();
            atomicAdd(&seqgrid_grid_barrier_state[1], 1u);
        } else {
            while (*gen == g) { __nanosleep(64); }
        }
        __threadfence();
    }
    __syncthreads();
}
"""

_GRID_SYNC_RE = re.compile(r"\bseqgrid_grid_sync\s*\(|\bthis_grid\s*\(")


# ----------------------------------------------------------------------------
# source parsing (kernel names, parameter names, bodies)
# ----------------------------------------------------------------------------
@dataclasses.dataclass
class KernelDecl:
    name: str
    extern_c: bool
    template: bool
    params: list            # [(type text, name)]
    body: str
    line: int

    @property
    def uses_grid_sync(self) -> bool:
        return bool(_GRID_SYNC_RE.search(self.body))


def strip_comments(src: str) -> str:
    """Replace comments (and string/char literal contents) by blanks, keeping newlines."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            j = min(j + 1, n)
            # keep the literal as is: extern "C" must survive
            out.append(src[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


_KERNEL_RE = re.compile(
    r"__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+"
    r"(?:__launch_bounds__\s*\([^)]*\)\s*)?([A-Za-z_]\w*)\s*\(")


def _match_close(s: str, i: int, open_c: str, close_c: str) -> int:
    depth = 0
    for j in range(i, len(s)):
        if s[j] == open_c:
            depth += 1
        elif s[j] == close_c:
            depth -= 1
            if depth == 0:
                return j
    return -1


def _split_top(s: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for c in s:
        if c in "(<[{":
            depth += 1
        elif c in ")>]}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return parts


def parse_kernels(src: str) -> list[KernelDecl]:
    """Kernels (``__global__ void name(...)`` with a body) in a CUDA source."""
    s = strip_comments(src)
    out = []
    for m in _KERNEL_RE.finditer(s):
        start = m.start()
        prev = max(s.rfind(";", 0, start), s.rfind("}", 0, start), s.rfind("{", 0, start))
        head = s[prev + 1:start]
        lp = m.end() - 1
        rp = _match_close(s, lp, "(", ")")
        if rp < 0:
            continue
        k = rp + 1
        while k < len(s) and s[k] not in "{;":
            k += 1
        if k >= len(s) or s[k] == ";":
            continue  # a declaration only
        end = _match_close(s, k, "{", "}")
        body = s[k:end + 1] if end > 0 else s[k:]
        params = []
        for p in _split_top(s[lp + 1:rp]):
            p = p.split("=")[0].strip()
            if not p or p == "void":
                continue
            p = re.sub(r"\[[^\]]*\]\s*$", "", p).strip()
            ids = re.findall(r"[A-Za-z_]\w*", p)
            name = ids[-1] if ids else "?"
            params.append((p[:p.rfind(name)].strip() if ids else p, name))
        out.append(KernelDecl(
            name=m.group(1), extern_c=bool(re.search(r'extern\s+"C"', head)),
            template=bool(re.search(r"\btemplate\s*<", head)), params=params,
            body=body, line=s.count("\n", 0, start) + 1))
    return out


def uses_grid_sync(src: str) -> bool:
    return bool(_GRID_SYNC_RE.search(strip_comments(src)))


# ----------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------
def kernel_path(filename: str | os.PathLike) -> Path:
    """``kernels/cuda/<filename>`` (an absolute path is used as is)."""
    p = Path(filename)
    if not p.is_absolute():
        p = CUDA_DIR / p
    if not p.is_file():
        avail = sorted(q.name for q in CUDA_DIR.glob("*.cu"))
        raise FileNotFoundError(f"CUDA source {str(p)!r} not found; kernels/cuda has {avail}")
    return p.resolve()


def line_directive(path: Path) -> str:
    return f'#line 1 "{path}"\n'


def nvrtc_source(src: str, path: Path) -> str:
    """The text NVRTC / CuPy compile: prelude + ``#line 1 "<path>"`` + source."""
    pre = NVRTC_PRELUDE + (NVRTC_GRID_SYNC_PRELUDE if uses_grid_sync(src) else "")
    return pre + line_directive(path) + src


_MODULES: dict = {}
_RESOLVED: dict[str, str] = {}    # filename as given -> resolved path (load_module)


def load_module(filename, backend: str, *, name_expressions=(), options=()):
    """Compile ``kernels/cuda/<filename>`` for ``backend`` ("cuda" or "cuda-emu"), cached.

    Returns an object whose ``get_function(name)`` gives a kernel callable as
    ``kernel(grid, block, args, shared_mem=0)`` (CuPy's RawKernel convention); ``name`` is an
    ``extern "C"`` kernel name or one of ``name_expressions`` (template instantiations such as
    ``"scale<float>"``). The cache key is (path, mtime, size, backend, name expressions,
    options) and, for the emulator, its build mode (``SEQGRID_EMU_ASAN``, ``SEQGRID_EMU_UCONTEXT``).

    Raises :class:`CudaCompileError` with ``file:line`` and the compiler's message.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    name_expressions = tuple(name_expressions)
    options = tuple(options)
    mode = (os.environ.get("SEQGRID_EMU_ASAN", ""), os.environ.get("SEQGRID_EMU_UCONTEXT", "")) \
        if backend == "cuda-emu" else ""
    # Every launcher calls this on every call: resolving the path through pathlib cost ~45 us
    # per call on a GPU host (more than a pooling kernel's own time budget), so the resolved
    # path of a name is remembered and only one stat per call checks that the file is unchanged.
    spec = (os.fspath(filename), backend, name_expressions, options, mode)
    path = _RESOLVED.get(spec[0])
    if path is None:
        path = _RESOLVED[spec[0]] = str(kernel_path(filename))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        _RESOLVED.pop(spec[0], None)
        kernel_path(filename)           # raises with the list of sources
        raise
    key = (path, st.st_mtime_ns, st.st_size) + spec[1:]
    mod = _MODULES.get(key)
    if mod is None:
        path = Path(path)
        src = path.read_text()
        if backend == "cuda":
            mod = _CupyModule(src, path, name_expressions, options)
        else:
            from . import emu
            mod = emu.compile_module(src, path, name_expressions=name_expressions, options=options)
        _MODULES[key] = mod
    return mod


def array_module(backend: str):
    """``cupy`` for "cuda", ``numpy`` for "cuda-emu": where the kernel's arrays live."""
    if backend == "cuda":
        import cupy
        return cupy
    import numpy
    return numpy


class _CupyKernel:
    def __init__(self, raw, name):
        self.raw = raw
        self.name = name
        self._max_dyn = 48 * 1024

    def __call__(self, grid, block, args, shared_mem=0, **kw):
        if shared_mem > self._max_dyn:
            self.raw.max_dynamic_shared_size_bytes = int(shared_mem)
            self._max_dyn = int(shared_mem)
        return self.raw(grid, block, args, shared_mem=shared_mem, **kw)


class _CupyModule:
    backend = "cuda"

    def __init__(self, src, path, name_expressions, options):
        import cupy
        self.path = path
        self._functions = {}
        self.source = nvrtc_source(src, path)
        opts = tuple(options)
        if not any(o.startswith(("-std", "--std")) for o in opts):
            opts = ("-std=c++17",) + opts
        kw = {}
        if uses_grid_sync(src):
            kw["enable_cooperative_groups"] = True
        try:
            self.raw = cupy.RawModule(code=self.source, options=opts,
                                      name_expressions=name_expressions or None, **kw)
            self.raw.compile()
        except Exception as exc:  # cupy.cuda.compiler.CompileException
            if type(exc).__name__ == "CompileException":
                raise CudaCompileError(f"{path}: NVRTC compilation failed:\n{exc}") from None
            raise

    def get_function(self, name: str):
        # one kernel object per name: a new one per call cost ~10 us and reset the raised
        # dynamic shared-memory limit (a cuFuncSetAttribute per persistent launch)
        fn = self._functions.get(name)
        if fn is None:
            fn = self._functions[name] = _CupyKernel(self.raw.get_function(name), name)
        return fn


# ----------------------------------------------------------------------------
# NVRTC (ctypes) and nvcc: the compile check
# ----------------------------------------------------------------------------
def find_nvrtc() -> str | None:
    """Path of libnvrtc: ``$SEQGRID_NVRTC``, the pip package nvidia-cuda-nvrtc-cu12, CUDA_HOME."""
    env = os.environ.get("SEQGRID_NVRTC")
    if env and os.path.exists(env):
        return env
    cands = []
    try:
        import nvidia  # namespace package of the nvidia-* wheels
        for base in getattr(nvidia, "__path__", []):
            cands += sorted(Path(base).glob("cuda_nvrtc/lib/libnvrtc.so*"))
    except ImportError:
        pass
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            cands += sorted(Path(root).glob("lib64/libnvrtc.so*"))
    cands = [c for c in cands if "builtins" not in c.name and ".alt." not in c.name]
    return str(cands[0]) if cands else None


@functools.lru_cache(maxsize=None)
def _nvrtc_lib(path: str):
    lib = ctypes.CDLL(path)
    P = ctypes.c_void_p
    lib.nvrtcCreateProgram.argtypes = [ctypes.POINTER(P), ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                       ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p)]
    lib.nvrtcAddNameExpression.argtypes = [P, ctypes.c_char_p]
    lib.nvrtcCompileProgram.argtypes = [P, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
    lib.nvrtcGetProgramLogSize.argtypes = [P, ctypes.POINTER(ctypes.c_size_t)]
    lib.nvrtcGetProgramLog.argtypes = [P, ctypes.c_char_p]
    lib.nvrtcGetLoweredName.argtypes = [P, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
    lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(P)]
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    lib.nvrtcVersion.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
    return lib


def nvrtc_version(path: str | None = None) -> tuple[int, int] | None:
    path = path or find_nvrtc()
    if not path:
        return None
    lib = _nvrtc_lib(path)
    a, b = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(a), ctypes.byref(b))
    return a.value, b.value


@dataclasses.dataclass
class CompileResult:
    compiler: str          # "nvrtc 12.9" / "nvcc"
    arch: str
    log: str               # warnings
    lowered: dict          # name expression -> mangled name (NVRTC only)


def nvrtc_compile(source: str, name: str, arch: str = "sm_80", options=(), name_expressions=(),
                  lib_path: str | None = None) -> CompileResult:
    """Compile ``source`` with NVRTC for ``arch``; raise CudaCompileError with the log on failure."""
    lib_path = lib_path or find_nvrtc()
    if not lib_path:
        raise FileNotFoundError("libnvrtc not found (pip install nvidia-cuda-nvrtc-cu12)")
    lib = _nvrtc_lib(lib_path)
    prog = ctypes.c_void_p()

    def check(rc, what):
        if rc != 0:
            raise RuntimeError(f"{what} failed: {lib.nvrtcGetErrorString(rc).decode()}")

    check(lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
          "nvrtcCreateProgram")
    try:
        for ne in name_expressions:
            check(lib.nvrtcAddNameExpression(prog, ne.encode()), f"nvrtcAddNameExpression({ne!r})")
        opts = [f"--gpu-architecture={arch}"] + list(options)
        if not any(o.startswith(("-std", "--std")) for o in opts):
            opts.append("-std=c++17")
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value + 1)
        lib.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace").strip()
        if rc != 0:
            raise CudaCompileError(f"{name}: NVRTC ({arch}) compilation failed:\n{log}")
        lowered = {}
        for ne in name_expressions:
            out = ctypes.c_char_p()
            check(lib.nvrtcGetLoweredName(prog, ne.encode(), ctypes.byref(out)), "nvrtcGetLoweredName")
            lowered[ne] = out.value.decode()
        v = nvrtc_version(lib_path)
        return CompileResult(f"nvrtc {v[0]}.{v[1]}", arch, log, lowered)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def nvcc_compile(source: str, name: str, arch: str = "sm_80", options=(), name_expressions=()) -> CompileResult:
    """Fallback check with ``nvcc -c``; name expressions are instantiated by taking their address."""
    nvcc = shutil.which("nvcc")
    if not nvcc:
        raise FileNotFoundError("nvcc is not on PATH")
    extra = "".join(f"\nstatic void* seqgrid_ne_{i} = (void*)&{ne};" for i, ne in enumerate(name_expressions))
    with tempfile.TemporaryDirectory() as d:
        cu = Path(d) / "check.cu"
        cu.write_text(source + extra + "\n")
        opts = list(options)
        if not any(o.startswith(("-std", "--std")) for o in opts):
            opts.append("-std=c++17")
        cmd = [nvcc, "-c", f"--gpu-architecture={arch}", *opts, "-o", str(Path(d) / "check.o"), str(cu)]
        r = subprocess.run(cmd, capture_output=True, text=True)
    log = (r.stdout + r.stderr).strip()
    if r.returncode != 0:
        raise CudaCompileError(f"{name}: nvcc ({arch}) compilation failed:\n{log}")
    return CompileResult("nvcc", arch, log, {})


def compiler_status() -> tuple[str | None, str]:
    """(``"nvrtc"``/``"nvcc"``/None, description) for :func:`compile_check`."""
    p = find_nvrtc()
    if p:
        try:
            v = nvrtc_version(p)
            return "nvrtc", f"NVRTC {v[0]}.{v[1]} at {p}"
        except OSError as exc:
            pass_reason = f"libnvrtc at {p} cannot be loaded ({exc})"
        else:  # pragma: no cover
            pass_reason = ""
    else:
        pass_reason = "no libnvrtc (pip install nvidia-cuda-nvrtc-cu12)"
    if shutil.which("nvcc"):
        return "nvcc", f"nvcc at {shutil.which('nvcc')} ({pass_reason})"
    return None, f"{pass_reason} and no nvcc on PATH"


def compile_check(filename, arch: str = "sm_80", *, name_expressions=(), options=(),
                  compiler: str | None = None) -> CompileResult:
    """Compile ``kernels/cuda/<filename>`` for a GPU architecture as CuPy would (prelude,
    ``-std=c++17``), with NVRTC if available, else nvcc. Raises CudaCompileError."""
    path = kernel_path(filename)
    src = nvrtc_source(path.read_text(), path)
    which = compiler or compiler_status()[0]
    if which == "nvrtc":
        return nvrtc_compile(src, str(path), arch, options, name_expressions)
    if which == "nvcc":
        return nvcc_compile(src, str(path), arch, options, name_expressions)
    raise FileNotFoundError(compiler_status()[1])


def declared_name_expressions(src: str) -> list[str]:
    """Name expressions a source asks to be checked, from lines ``// seqgrid: instantiate NAME<...>``."""
    return re.findall(r"//\s*seqgrid:\s*instantiate\s+(.+?)\s*$", src, flags=re.M)


def main(argv=None) -> int:
    """NVRTC compile check of kernels/cuda/*.cu (or the given files) for sm_80 and sm_90."""
    import argparse
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--arch", action="append")
    a = ap.parse_args(argv)
    files = a.files or sorted(p.name for p in CUDA_DIR.glob("*.cu"))
    which, why = compiler_status()
    print(why)
    if which is None:
        return 2
    bad = 0
    for f in files:
        ne = declared_name_expressions(kernel_path(f).read_text())
        for arch in a.arch or ["sm_80", "sm_90"]:
            try:
                r = compile_check(f, arch, name_expressions=ne)
                print(f"ok   {f} {arch} ({r.compiler})" + (f"\n{r.log}" if r.log else ""))
            except CudaCompileError as exc:
                bad += 1
                print(f"FAIL {f} {arch}\n{exc}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
