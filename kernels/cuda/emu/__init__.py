"""CPU emulation of CUDA C: compile a .cu with g++ against ``cuda_emu.h``, launch on CPU.

Use it through :func:`kernels.cuda.loader.load_module` with backend ``"cuda-emu"``.

Build: the source (with ``#line 1 "<abs path>"`` so diagnostics point at the .cu) plus
generated entry stubs is compiled as ONE translation unit::

    g++ -O2 -std=c++17 -fPIC -shared -pthread -include cuda_emu.h -I kernels/cuda/emu ...

into ``<cache>/<sha256>.so`` where ``<cache>`` is ``$SEQGRID_CACHE_DIR/emu`` or
``~/.cache/seqgrid/emu`` and the hash covers the generated source, the emulator headers,
the flags, the g++ version and the mode. The .so is loaded with ctypes.

Entry stubs: one per kernel: every ``extern "C" __global__ void name(...)`` found in the
source, plus each name expression (``"scale<float>"``). A stub unpacks a ``void**`` argument
array with the kernel's own parameter types (C++ template deduction on ``&kernel``), and
the parameter types are exported as codes so the launcher can check Python arguments.

Environment:

``SEQGRID_EMU_THREADS``  OS threads per launch (default ``os.cpu_count()``)
``SEQGRID_EMU_REVERSE=1`` run blocks, and the threads inside each block, in reverse order
                          (finds code that silently relies on execution order)
``SEQGRID_EMU_ASAN=1``    build with ``-fsanitize=address,undefined``; the process must
                          have the ASan runtime loaded first: see :func:`asan_env`
``SEQGRID_EMU_STACK_KB``  fiber stack size (default 64, 512 under ASan)
``SEQGRID_EMU_CXX``       the compiler (default ``g++``)
``SEQGRID_EMU_UCONTEXT=1`` switch fibers with glibc swapcontext instead of the x86-64 assembly
                          switch (~10x slower; the default on other architectures)
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..loader import (CudaCompileError, CudaLaunchError, KernelArgumentError, KernelNameError,
                      line_directive, parse_kernels)

EMU_DIR = Path(__file__).resolve().parent
HEADERS = ("cuda_emu.h", "emu_runtime.h", "cooperative_groups.h")
BASE_FLAGS = ("-O2", "-fPIC", "-shared", "-pthread", "-fvisibility=hidden")
ASAN_FLAGS = ("-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g",
              "-fno-sanitize-recover=undefined")

__all__ = ["compile_module", "EmuModule", "EmuKernel", "asan_env", "cache_dir"]


def cache_dir() -> Path:
    root = os.environ.get("SEQGRID_CACHE_DIR")
    d = Path(root) / "emu" if root else Path.home() / ".cache" / "seqgrid" / "emu"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _cxx() -> str:
    cxx = os.environ.get("SEQGRID_EMU_CXX", "g++")
    path = shutil.which(cxx)
    if path is None:
        raise FileNotFoundError(f"{cxx} is not on PATH (the CUDA emulator compiles with g++)")
    return path


@functools.lru_cache(maxsize=None)
def _cxx_version(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def asan_env(env: dict | None = None) -> dict:
    """Environment for a subprocess that runs emulated kernels under ASan/UBSan:
    ``SEQGRID_EMU_ASAN=1``, ``LD_PRELOAD`` of g++'s libasan (it must be the first runtime
    loaded, before Python's own libraries), ``ASAN_OPTIONS=detect_leaks=0`` (CPython's
    allocations at exit are not leaks worth reporting)."""
    env = dict(os.environ if env is None else env)
    lib = subprocess.run([_cxx(), "-print-file-name=libasan.so"], capture_output=True,
                         text=True).stdout.strip()
    if not lib or not os.path.isabs(lib) or not os.path.exists(lib):
        raise FileNotFoundError("g++ has no libasan.so (install libasan / gcc sanitizer support)")
    env["SEQGRID_EMU_ASAN"] = "1"
    env["LD_PRELOAD"] = (lib + " " + env.get("LD_PRELOAD", "")).strip()
    env.setdefault("ASAN_OPTIONS", "detect_leaks=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    return env


def _asan_loaded() -> bool:
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:  # pragma: no cover
        return False


# ----------------------------------------------------------------------------
# source → translation unit
# ----------------------------------------------------------------------------
_EXTERN_SHARED_RE = re.compile(
    r"\bextern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([A-Za-z_][\w:\s]*?[\w*])\s*"
    r"(?:__align__\s*\(\s*\d+\s*\)\s*)?\b([A-Za-z_]\w*)\s*\[\s*\]\s*;")


def _rewrite_extern_shared(src: str) -> str:
    """``extern __shared__ T name[];`` (inside a function) → a pointer to the block's dynamic
    shared buffer (the same as ``SEQGRID_DYNAMIC_SHARED(T, name);``), line count unchanged."""
    return _EXTERN_SHARED_RE.sub(lambda m: f"SEQGRID_DYNAMIC_SHARED({m.group(1).strip()}, {m.group(2)});", src)


def _emu_options(options) -> list[str]:
    """Forward -D/-U/-I and -std= from NVRTC options; the rest (-arch, --use_fast_math, ...)
    has no meaning for g++ and is dropped."""
    out, std = [], "-std=c++17"
    it = iter(options)
    for o in it:
        if o in ("-D", "-U", "-I", "--define-macro", "--undefine-macro", "--include-path"):
            v = next(it, "")
            out.append({"--define-macro": "-D", "--undefine-macro": "-U", "--include-path": "-I"}.get(o, o) + v)
        elif o.startswith(("-D", "-U", "-I")):
            out.append(o)
        elif o.startswith(("--define-macro=", "--undefine-macro=", "--include-path=")):
            flag = {"--define-macro": "-D", "--undefine-macro": "-U", "--include-path": "-I"}[o.split("=")[0]]
            out.append(flag + o.split("=", 1)[1])
        elif o.startswith(("-std=", "--std=")):
            std = "-std=" + o.split("=", 1)[1]
    return [std] + out


def _generate(src: str, path: Path, entries: list[str]) -> str:
    lines = [line_directive(path) + _rewrite_extern_shared(src), "\n#line 1 \"<seqgrid-emu-stubs>\"\n"]
    lines.append("namespace {\n")
    for i, e in enumerate(entries):
        lines.append(f"void seqgrid_stub_{i}(void** a) {{ seqgrid_emu::invoke(&{e}, a); }}\n"
                     f"std::string seqgrid_sig_{i}() {{ return seqgrid_emu::signature(&{e}); }}\n")
    lines.append("const seqgrid_emu::KernelEntry seqgrid_entries[] = {\n")
    for i, e in enumerate(entries):
        cname = e.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'    {{"{cname}", &seqgrid_stub_{i}, &seqgrid_sig_{i}}},\n')
    if not entries:
        lines.append('    {"", nullptr, nullptr},\n')
    lines.append("};\n}  // namespace\n")
    lines.append(f"""
#define SEQGRID_EXPORT extern "C" __attribute__((visibility("default")))
SEQGRID_EXPORT int seqgrid_emu_kernel_count() {{ return {len(entries)}; }}
SEQGRID_EXPORT int seqgrid_emu_kernel_sig(int i, char* buf, size_t n) {{
    std::string s = seqgrid_entries[i].sig();
    snprintf(buf, n, "%s", s.c_str());
    return (int)s.size();
}}
SEQGRID_EXPORT int seqgrid_emu_launch(int i, const unsigned* grid, const unsigned* block, size_t shmem,
                                      void** args, int nthreads, int flags, char* err, size_t errlen) {{
    return seqgrid_emu::launch(seqgrid_entries[i].stub, seqgrid_entries[i].name, grid, block, shmem,
                               args, nthreads, flags, err, errlen);
}}
""")
    return "".join(lines)


def _format_compile_error(path: Path, stderr: str) -> str:
    keep = []
    for ln in stderr.splitlines():
        if "<seqgrid-emu-stubs>" in ln and "error" in ln:
            ln += "  (in the generated launch stub: is the kernel / name expression spelled right?)"
        keep.append(ln)
    text = "\n".join(keep)
    if len(text) > 6000:
        text = text[:6000] + "\n... (truncated)"
    return f"{path}: g++ compilation for cuda-emu failed:\n{text}"


def compile_module(src: str, path: Path, *, name_expressions=(), options=()) -> "EmuModule":
    """Build (or fetch from the cache) the emulator .so for a CUDA source and load it."""
    path = Path(path)
    decls = parse_kernels(src)
    externs = [d.name for d in decls if d.extern_c and not d.template]
    entries = list(dict.fromkeys(externs + [ne.strip() for ne in name_expressions]))
    code = _generate(src, path, entries)
    asan = os.environ.get("SEQGRID_EMU_ASAN", "") not in ("", "0")
    cxx = _cxx()
    flags = list(BASE_FLAGS) + _emu_options(options)
    if asan:
        flags = [f for f in flags if f != "-O2"] + ["-O1", *ASAN_FLAGS]
    if os.environ.get("SEQGRID_EMU_UCONTEXT", "") not in ("", "0"):
        flags.append("-DSEQGRID_EMU_UCONTEXT")
    h = hashlib.sha256()
    for part in [code, _cxx_version(cxx), " ".join(flags)] + [(EMU_DIR / f).read_text() for f in HEADERS]:
        h.update(part.encode())
        h.update(b"\0")
    digest = h.hexdigest()[:24]
    out_dir = cache_dir()
    so = out_dir / f"{path.stem}-{digest}.so"
    if not so.exists():
        cpp = out_dir / f"{path.stem}-{digest}.cpp"
        cpp.write_text(code)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
        os.close(fd)
        cmd = [cxx, *flags, "-include", str(EMU_DIR / "cuda_emu.h"), "-I", str(EMU_DIR),
               "-o", tmp, str(cpp)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            os.unlink(tmp)
            raise CudaCompileError(_format_compile_error(path, r.stderr))
        os.replace(tmp, so)  # atomic: concurrent builders of the same module are fine
    if asan and not _asan_loaded():
        raise RuntimeError(
            "SEQGRID_EMU_ASAN=1 needs the ASan runtime loaded before Python's libraries: run as "
            "LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 "
            "SEQGRID_EMU_ASAN=1 python ... (kernels.cuda.emu.asan_env() builds that environment)")
    return EmuModule(so, path, src, decls, entries)


# ----------------------------------------------------------------------------
# module / kernel objects
# ----------------------------------------------------------------------------
class Param:
    __slots__ = ("code", "ctype", "name")

    def __init__(self, code, ctype, name):
        self.code, self.ctype, self.name = code, ctype, name

    def __repr__(self):
        return f"Param({self.code!r}, {self.ctype!r}, {self.name!r})"


class EmuModule:
    backend = "cuda-emu"

    def __init__(self, so: Path, path: Path, src: str, decls, entries):
        self.so_path = so
        self.path = path
        lib = ctypes.CDLL(str(so), mode=ctypes.RTLD_LOCAL)
        lib.seqgrid_emu_kernel_sig.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        lib.seqgrid_emu_launch.argtypes = [
            ctypes.c_int, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint), ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        self._lib = lib
        by_name = {d.name: d for d in decls}
        self._kernels = {}
        for i, e in enumerate(entries):
            buf = ctypes.create_string_buffer(8192)
            lib.seqgrid_emu_kernel_sig(i, buf, len(buf))
            base = e.split("<")[0].strip()
            d = by_name.get(base)
            names = [p[1] for p in d.params] if d else []
            params = []
            for j, item in enumerate(x for x in buf.value.decode().split(";") if x):
                code, _, ctype = item.partition("|")
                params.append(Param(code, ctype, names[j] if j < len(names) else f"arg{j}"))
            coop = bool(d and d.uses_grid_sync)
            self._kernels[self._norm(e)] = EmuKernel(self, i, e, params, coop)

    @staticmethod
    def _norm(name: str) -> str:
        return re.sub(r"\s+", "", name)

    @property
    def kernel_names(self) -> list[str]:
        return [k.name for k in self._kernels.values()]

    def get_function(self, name: str) -> "EmuKernel":
        k = self._kernels.get(self._norm(name))
        if k is None:
            raise KernelNameError(f"{self.path.name}: no kernel {name!r}; the emulated module has "
                           f"{self.kernel_names} (extern \"C\" kernels and the name_expressions given "
                           "to load_module)")
        return k


_DTYPE_CODES = {"f": "f", "i": "i", "u": "u", "b": "b"}


def _dtype_code(dt: np.dtype) -> str:
    return f"{_DTYPE_CODES.get(dt.kind, dt.kind)}{dt.itemsize}"


_CODE_DTYPE = {"f4": "float32", "f8": "float64", "f2": "float16", "i1": "int8", "i2": "int16",
               "i4": "int32", "i8": "int64", "u1": "uint8", "u2": "uint16", "u4": "uint32",
               "u8": "uint64", "b1": "bool", "c1": "int8"}


def _dims(v, what, kernel):
    if isinstance(v, (int, np.integer)):
        v = (int(v),)
    try:
        t = tuple(int(x) for x in v)
    except TypeError:
        raise KernelArgumentError(f"kernel {kernel!r}: {what} must be an int or a tuple of 1-3 ints, got {v!r}") from None
    if not 1 <= len(t) <= 3 or any(x < 1 for x in t):
        raise KernelArgumentError(f"kernel {kernel!r}: {what} must be 1-3 positive ints, got {v!r}")
    return t + (1,) * (3 - len(t))


class EmuKernel:
    """A kernel of an emulated module: ``kernel(grid, block, args, shared_mem=0)``."""

    def __init__(self, module: EmuModule, index: int, name: str, params: list[Param], cooperative: bool):
        self.module = module
        self.index = index
        self.name = name
        self.params = params
        self.cooperative = cooperative

    def __repr__(self):
        sig = ", ".join(f"{p.ctype} {p.name}" for p in self.params)
        return f"<EmuKernel {self.name}({sig}) from {self.module.path.name}>"

    # -- argument conversion (CuPy's rules) and checks ----------------------------------
    def _bad(self, i, p, msg):
        return KernelArgumentError(
            f"kernel {self.name!r} argument {i} {p.name!r} ({p.ctype}): {msg}")

    def _convert(self, i, v, p: Param, keep: list):
        code = p.code
        if code.startswith("P"):
            if isinstance(v, np.ndarray):
                pointee = code[1:].lstrip("c")
                dc = _dtype_code(v.dtype)
                ok = (pointee == "v" or dc == pointee
                      or (pointee == "c1" and dc in ("i1", "u1", "b1"))
                      or (pointee == "p8" and dc in ("i8", "u8"))
                      or (pointee.startswith("s") and int(pointee[1:]) % v.dtype.itemsize == 0))
                if not ok:
                    want = _CODE_DTYPE.get(pointee, f"a {pointee[1:]}-byte element type")
                    raise self._bad(i, p, f"got an array of dtype {v.dtype}; expected dtype {want}")
                c = ctypes.c_void_p(v.ctypes.data)
                keep.append((v, c))
                return ctypes.cast(ctypes.pointer(c), ctypes.c_void_p)
            if hasattr(v, "__cuda_array_interface__"):
                raise self._bad(i, p, "got a GPU array; the emulator runs on host memory: pass a NumPy array")
            if isinstance(v, (int, float, np.generic)):
                raise self._bad(i, p, f"got a scalar {type(v).__name__}; a pointer parameter needs a NumPy array")
            raise self._bad(i, p, f"got {type(v).__name__}; a pointer parameter needs a NumPy array")
        # by-value parameter
        if isinstance(v, np.ndarray):
            raise self._bad(i, p, f"got an array of shape {v.shape}; the parameter is a scalar (pass e.g. "
                                  f"np.{_CODE_DTYPE.get(code, 'int32')}(value))")
        want = _CODE_DTYPE.get(code)
        if isinstance(v, (bool, np.bool_)):
            if code != "b1":
                raise self._bad(i, p, f"got a bool; CuPy passes it as a 1-byte bool; pass np.{want or '?'}(...)")
            data = bytes([1 if v else 0])
        elif isinstance(v, int):
            if code not in ("i8", "u8"):
                raise self._bad(i, p, "got a Python int, which CuPy passes as a 64-bit long long; "
                                      f"pass np.{want}(...)" if want else "got a Python int")
            if code == "u8" and v < 0:
                raise self._bad(i, p, f"got a negative Python int {v} for an unsigned parameter")
            data = np.array(v, dtype=np.int64 if code == "i8" else np.uint64).tobytes()
        elif isinstance(v, float):
            if code != "f8":
                raise self._bad(i, p, "got a Python float, which CuPy passes as a double; "
                                      f"pass np.{want}(...)" if want else "got a Python float")
            data = np.array(v, dtype=np.float64).tobytes()
        elif isinstance(v, np.generic) and not isinstance(v, np.void):
            dc = _dtype_code(v.dtype)
            if dc != code and not (code == "c1" and dc in ("i1", "u1")):
                raise self._bad(i, p, f"got np.{v.dtype}; expected np.{want}" if want else
                                f"got np.{v.dtype}; the parameter is not a {v.dtype} scalar")
            data = v.tobytes()
        elif isinstance(v, (np.void, bytes, bytearray)) and code.startswith("s"):
            data = bytes(v.tobytes() if isinstance(v, np.void) else v)
            if len(data) != int(code[1:]):
                raise self._bad(i, p, f"got {len(data)} bytes for a {code[1:]}-byte struct")
        else:
            raise self._bad(i, p, f"unsupported argument type {type(v).__name__}")
        buf = ctypes.create_string_buffer(data, max(len(data), 8))
        keep.append(buf)
        return ctypes.cast(buf, ctypes.c_void_p)

    def __call__(self, grid, block, args, shared_mem=0, *, cooperative=None, stream=None, **kw):
        g = _dims(grid, "grid", self.name)
        b = _dims(block, "block", self.name)
        if not isinstance(args, (tuple, list)):
            raise KernelArgumentError(f"kernel {self.name!r}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.params):
            sig = ", ".join(f"{p.ctype} {p.name}" for p in self.params)
            raise KernelArgumentError(f"kernel {self.name!r} takes {len(self.params)} arguments ({sig}), "
                                      f"got {len(args)}")
        keep: list = []
        ptrs = (ctypes.c_void_p * max(len(args), 1))()
        for i, (v, p) in enumerate(zip(args, self.params)):
            ptrs[i] = self._convert(i, v, p, keep)
        nthreads = int(os.environ.get("SEQGRID_EMU_THREADS", 0) or os.cpu_count() or 1)
        coop = self.cooperative if cooperative is None else bool(cooperative)
        flags = (1 if os.environ.get("SEQGRID_EMU_REVERSE", "") not in ("", "0") else 0) | (2 if coop else 0)
        err = ctypes.create_string_buffer(4096)
        rc = self.module._lib.seqgrid_emu_launch(
            self.index, (ctypes.c_uint * 3)(*g), (ctypes.c_uint * 3)(*b), int(shared_mem), ptrs,
            nthreads, flags, err, len(err))
        if rc != 0:
            raise CudaLaunchError(f"{self.module.path.name}: {err.value.decode(errors='replace')}")
