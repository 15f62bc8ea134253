"""A register-blocked float32 GEMM micro-kernel for numba, on a pre-packed right operand.

Why this exists: a recurrent layer multiplies the same ``W_hh`` by a new ``h`` at every one of T
steps. A BLAS sgemm call re-packs its operands on every call (for LSTM's 16 MB W_hh that is a
16 MB copy per step) and, from numba, has to alternate with numba's own thread pool (the two pools
spin against each other on 2 cores). Packing ``W_hh^T`` ONCE per sequence into column panels and
running this micro-kernel inside numba's parallel region removes both costs: per step, each thread
only streams its own panels. Measured (2-core AVX2 EPYC, 64 x 1000 x 4000, W packed): 75-80
GFLOP/s on one thread, 155 GFLOP/s on two, against 139-143 for a 2-thread OpenBLAS sgemm call
(69-80 single-threaded).

The kernel is written in LLVM IR through ``numba.extending.intrinsic``: numba has no vector type,
and a tile of scalar accumulators in plain numba code stays scalar (3.5 GFLOP/s measured; LLVM's
SLP vectoriser does not re-form them). Here the ``MR x NR`` tile is 12 vector accumulators, each
step of k loads 3 vectors of the B panel and broadcasts 4 values of the A panel into 12 FMAs:

* AVX2 (8 lanes): 4 x 24, 12 ``llvm.fma.v8f32`` (12 of the 16 ymm registers hold the tile);
* AVX-512F (16 lanes, picked from numba's target features): 4 x 48, 12 ``llvm.fma.v16f32``.
  On a Zen 4 EPYC, whose 512-bit FMAs run as two 256-bit halves (the same peak), it still ran
  193-220 GFLOP/s on 2 threads where the 4 x 24 kernel ran 143-194 (half the instructions per
  FLOP; 64 x 1000 x 4000, 8 x 1000 x 4000, 32 x 512 x 2048; 2-thread OpenBLAS sgemm: 199).
  4 x 32 (8 accumulators: too few to hide the FMA latency), 4 x 64 (16) and 8 x 32 (16; wastes
  rows at small N) measured 167-211.

LLVM lowers the same IR on any target (SSE: two 4-wide halves; NEON likewise), only slower.
NR is fixed per process, at import: numba's cache keys on the target CPU and its features,
so a cache built for one width is not loaded for the other.

More kernels from the same parts serve conv2d:

* ``mk_tile_gather`` (direct path, numba v7, few input channels): the tile with B's row k read
  at ``b_off + taps[k]`` (shifted rows of a padded input plane, no packing);
* ``dot_tile`` (v7's weight gradient): a DOT_MI x DOT_NJ tile of dot products whose reduction
  runs along the vector lanes (rows of dout against shifted input rows; the caller sums the
  lanes once at the end);
* ``mk_tile_gather_a`` / ``mk_tile_gather_a_acc`` (v8, few output pixels): A's (k, r) value
  read at ``rows[r] + taps[k]`` (an implicit im2col matrix), B a row-major matrix;
* ``transpose_block``: a VW x VW block transposed in registers, for ``transpose_into`` and
  ``pack_row_panels`` (a strided scalar store per element ran 2-4x slower).

Packed layouts (float32, C-contiguous, flat offsets given to the kernel):

* A panel q (rows ``q*MR .. q*MR+MR-1`` of an (M, K) matrix): ``a[k*MR + r]``; rows past M are 0.
* B panel (``NR`` output columns): ``b[k*NR + j]``; columns past the matrix are 0.
* C tile: ``c[r*ldc + j]`` for r < MR, j < NR, overwritten with the tile's sum over k.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic


def _target_vector_lanes():
    """float32 lanes of the widest vector register numba compiles for: 16 where the target
    has AVX-512F, else 8 (AVX2; elsewhere LLVM splits 8-lane vectors in halves)."""
    try:
        import numba
        from llvmlite import binding as ll
        feats = numba.config.CPU_FEATURES
        if not feats and not numba.config.CPU_NAME:        # numba targets this host
            feats = ll.get_host_cpu_features().flatten()
    except Exception:                                     # pragma: no cover
        return 8
    return 16 if "+avx512f" in (feats or "") else 8


_VW = _target_vector_lanes()   # float32 lanes per vector register
VW = _VW
MR = 4          # rows of the C tile (A panel height)
NR = 3 * _VW    # columns of the C tile (B panel width): 3 vectors (24 with AVX2, 48 AVX-512)

_JIT = dict(cache=True, error_model="numpy")


def _offsets_type(t) -> bool:
    """An offset table: a 1-D C-contiguous int64 array, read-only or not."""
    return (isinstance(t, types.Array) and t.dtype == types.int64 and t.ndim == 1
            and t.layout == "C")


def _make_tile_kernel(prefetch, accumulate, MR=MR, NR=NR, _VW=_VW, gather=None):
    """The micro-kernel intrinsic; ``prefetch`` (floats ahead, 0: none) adds software
    prefetches of the B panel per step of k, one per 64-byte line; ``accumulate`` adds the tile
    to C (for blocking over k) instead of overwriting it. MR x NR tile of ``_VW``-lane vectors
    (the module's by default; tests build the other width). ``gather`` picks the operands'
    addressing and so the signature:

    * None: both packed, ``(a, a_off, b, b_off, c, c_off, ldc, K)``;
    * ``"b"``: row k of B is ``b[b_off + taps[k] : ... + NR]`` for an int64 offset table
      ``taps``, ``(a, a_off, b, b_off, taps, c, c_off, ldc, K)``: a direct convolution's
      shifted input rows;
    * ``"a"``: A's (k, r) value is ``a[rows[row0 + r] + taps[k]]`` (MR row origins, an offset
      per k: an implicit im2col matrix) and row k of B is ``b[b_off + k*ldb : ... + NR]`` (a
      row-major matrix, no packing), ``(a, rows, row0, taps, b, b_off, ldb, c, c_off, ldc, K)``.
    """
    if gather not in (None, "a", "b"):
        raise ValueError(f"gather: expected None, 'a' or 'b', got {gather!r}")
    arr = types.Array(types.float32, 1, "C")
    ip = types.intp

    def codegen(context, builder, sig, args):
        def data(i):
            return context.make_array(sig.args[i])(context, builder, args[i]).data

        if gather == "a":
            _, _, row0, _, _, b_o, ldb, _, c_o, ldc_v, k_n = args
            ai, bi, ci = 0, 4, 7
        elif gather == "b":
            _, a_o, _, b_o, _, _, c_o, ldc_v, k_n = args
            ai, bi, ci = 0, 2, 5
        else:
            _, a_o, _, b_o, _, c_o, ldc_v, k_n = args
            ai, bi, ci = 0, 2, 4
        vec = ir.VectorType(ir.FloatType(), _VW)
        vptr = vec.as_pointer()
        intp = k_n.type
        i32 = ir.IntType(32)
        i8p = ir.IntType(8).as_pointer()

        def const(v):
            return ir.Constant(intp, v)

        b_p, c_p = builder.gep(data(bi), [b_o]), builder.gep(data(ci), [c_o])
        if gather == "a":
            rows_p = builder.gep(data(1), [row0])
            taps_p = data(3)
            a_rows = [builder.gep(data(ai), [builder.load(builder.gep(rows_p, [const(r)]))])
                      for r in range(MR)]
        else:
            a_p = builder.gep(data(ai), [a_o])
            if gather == "b":
                taps_p = data(4)
        nv = NR // _VW
        zero = ir.Constant(vec, [0.0] * _VW)

        def c_vec(r, v):
            cr = builder.gep(c_p, [builder.mul(const(r), ldc_v)])
            return builder.bitcast(builder.gep(cr, [const(v * _VW)]), vptr)

        # stack slots for the accumulators: SROA / mem2reg turn them into registers
        acc = [[cgutils.alloca_once_value(
            builder, builder.load(c_vec(r, v), align=4) if accumulate else zero)
            for v in range(nv)] for r in range(MR)]
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{_VW}f32")
        pf = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0i8")
        undef = ir.Constant(vec, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, _VW), [0] * _VW)
        with cgutils.for_range(builder, k_n) as loop:
            if gather == "b":
                bk = builder.gep(b_p, [builder.load(builder.gep(taps_p, [loop.index]))])
            elif gather == "a":
                bk = builder.gep(b_p, [builder.mul(loop.index, ldb)])
            else:
                bk = builder.gep(b_p, [builder.mul(loop.index, const(NR))])
            if prefetch:   # read, keep in all cache levels, data; one per line of B's row
                for off in range(prefetch, prefetch + NR, 16):
                    addr = builder.bitcast(builder.gep(bk, [const(off)]), i8p)
                    builder.call(pf, [addr, ir.Constant(i32, 0), ir.Constant(i32, 3),
                                      ir.Constant(i32, 1)])
            bv = [builder.load(builder.bitcast(builder.gep(bk, [const(v * _VW)]), vptr),
                               align=4) for v in range(nv)]
            if gather == "a":
                t = builder.load(builder.gep(taps_p, [loop.index]))
                a_k = [builder.gep(a_rows[r], [t]) for r in range(MR)]
            else:
                ak = builder.gep(a_p, [builder.mul(loop.index, const(MR))])
                a_k = [builder.gep(ak, [const(r)]) for r in range(MR)]
            for r in range(MR):
                s = builder.load(a_k[r])
                sv = builder.shuffle_vector(
                    builder.insert_element(undef, s, ir.Constant(i32, 0)), undef, splat)
                for v in range(nv):
                    builder.store(builder.call(fma, [sv, bv[v], builder.load(acc[r][v])]),
                                  acc[r][v])
        for r in range(MR):
            for v in range(nv):
                builder.store(builder.load(acc[r][v]), c_vec(r, v), align=4)
        return context.get_dummy_value()

    if gather == "a":
        @intrinsic
        def kernel(typingctx, a, rows, row0, taps, b, b_off, ldb, c, c_off, ldc, K):
            if not (a == arr and b == arr and c == arr and _offsets_type(rows)
                    and _offsets_type(taps)):
                return None
            return types.void(a, rows, ip, taps, b, ip, ip, c, ip, ip, ip), codegen
    elif gather == "b":
        @intrinsic
        def kernel(typingctx, a, a_off, b, b_off, taps, c, c_off, ldc, K):
            if not (a == arr and b == arr and c == arr and _offsets_type(taps)):
                return None
            return types.void(a, ip, b, ip, taps, c, ip, ip, ip), codegen
    else:
        @intrinsic
        def kernel(typingctx, a, a_off, b, b_off, c, c_off, ldc, K):
            if not (a == arr and b == arr and c == arr):
                return None
            return types.void(a, ip, b, ip, c, ip, ip, ip), codegen
    return kernel


def _make_dot_tile_kernel(MI, NJ, _VW=_VW):
    """An MI x NJ tile of dot products whose reduction runs along the vector lanes:
    ``acc[o_off + i*ldo + j*VW + l] += sum_m d[d_off + i*ldd + m*VW + l] *
    b[b_off + taps[t_off + j] + m*VW + l]`` for ``m < F // VW``; MI*NJ vector accumulators,
    MI + NJ vector loads per MI*NJ FMAs. The caller sums the ``VW`` lanes at the end, so no
    horizontal add runs per call. ``F`` must be a multiple of ``VW``. For a direct
    convolution's weight gradient: rows of dout against shifted rows of the input."""
    arr = types.Array(types.float32, 1, "C")

    def codegen(context, builder, sig, args):
        d_arr, d_o, ldd, b_arr, b_o, taps_arr, t_o, acc_arr, o_o, ldo, f_n = args
        vec = ir.VectorType(ir.FloatType(), _VW)
        vptr = vec.as_pointer()
        intp = f_n.type

        def data(i):
            return context.make_array(sig.args[i])(context, builder, args[i]).data

        def const(v):
            return ir.Constant(intp, v)

        d_p = builder.gep(data(0), [d_o])
        b_p = builder.gep(data(3), [b_o])
        taps_p = builder.gep(data(5), [t_o])
        o_p = builder.gep(data(7), [o_o])
        d_rows = [builder.gep(d_p, [builder.mul(const(i), ldd)]) for i in range(MI)]
        b_rows = [builder.gep(b_p, [builder.load(builder.gep(taps_p, [const(j)]))])
                  for j in range(NJ)]
        slots = [[builder.bitcast(builder.gep(o_p, [builder.add(builder.mul(const(i), ldo),
                                                                const(j * _VW))]), vptr)
                  for j in range(NJ)] for i in range(MI)]
        acc = [[cgutils.alloca_once_value(builder, builder.load(slots[i][j], align=4))
                for j in range(NJ)] for i in range(MI)]
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{_VW}f32")
        with cgutils.for_range(builder, builder.sdiv(f_n, const(_VW))) as loop:
            off = builder.mul(loop.index, const(_VW))
            dv = [builder.load(builder.bitcast(builder.gep(r, [off]), vptr), align=4)
                  for r in d_rows]
            bv = [builder.load(builder.bitcast(builder.gep(r, [off]), vptr), align=4)
                  for r in b_rows]
            for i in range(MI):
                for j in range(NJ):
                    builder.store(builder.call(fma, [dv[i], bv[j], builder.load(acc[i][j])]),
                                  acc[i][j])
        for i in range(MI):
            for j in range(NJ):
                builder.store(builder.load(acc[i][j]), slots[i][j], align=4)
        return context.get_dummy_value()

    @intrinsic
    def kernel(typingctx, d, d_off, ldd, b, b_off, taps, t_off, acc, o_off, ldo, F):
        if not (d == arr and b == arr and acc == arr and _offsets_type(taps)):
            return None
        ip = types.intp
        return types.void(d, ip, ip, b, ip, taps, ip, acc, ip, ip, ip), codegen

    return kernel


# conv2d v8's tiles: 4 vectors wide with AVX-512 (16 accumulators of 32 registers). With A
# gathered (an implicit im2col matrix) 4 x 64 ran 228-232 GFLOP/s against 4 x 48's 198-200 and
# 6 x 64's 224-230 (VGG 7x7 / 14x14 forwards, 2 cores); with AVX2's 16 registers 4 x 32 would
# spill, so NR stays.
GATHER_NR = 4 * _VW if _VW == 16 else NR

DOT_MI, DOT_NJ = 4, 4       # 16 vector accumulators, 8 loads per 16 FMAs
dot_tile = _make_dot_tile_kernel(DOT_MI, DOT_NJ)
# direct convolution's forward: the micro-kernel with B rows gathered at tap offsets
mk_tile_gather = _make_tile_kernel(0, False, gather="b")
# few-output-pixel convolutions (conv2d v8): A an implicit im2col matrix, B row-major
mk_tile_gather_a = _make_tile_kernel(0, False, NR=GATHER_NR, gather="a")
mk_tile_gather_a_acc = _make_tile_kernel(0, True, NR=GATHER_NR, gather="a")     # c += the tile


mk_tile = _make_tile_kernel(0, False)
mk_tile.__doc__ = """``c[c_off + r*ldc + j] = sum_k a[a_off + k*MR + r] * b[b_off + k*NR + j]`` for the
MR x NR tile; a, b, c are 1-D C-contiguous float32 arrays (no bounds checks: the caller
guarantees ``a_off + K*MR``, ``b_off + K*NR`` and ``c_off + (MR-1)*ldc + NR`` fit)."""
mk_tile_acc = _make_tile_kernel(0, True)          # c += the tile
# the same, prefetching the B panel PREFETCH_AHEAD floats ahead: for the first tile of a panel,
# which streams B from memory (one thread's hardware prefetch alone reached ~10 GB/s; with
# this, 4 x 1000 x 4000 ran 0.55 ms instead of 1.1 on 2 threads). Later tiles of the panel find
# it in L2, where the extra instructions only cost.
PREFETCH_AHEAD = 256 * NR // 24                   # ~11 steps of k ahead
mk_tile_prefetch = _make_tile_kernel(PREFETCH_AHEAD, False)
mk_tile_acc_prefetch = _make_tile_kernel(PREFETCH_AHEAD, True)


def _make_transpose_kernel(_VW=_VW):
    """``dst[d_off + j*ldd + i] = src[s_off + i*lds + j]`` for i, j < VW: a VW x VW float32 block
    transposed in registers (log2(VW) butterfly stages of two-vector shuffles, each swapping
    the off-diagonal sub-blocks; VW loads and VW stores, no strided scalar access)."""
    arr = types.Array(types.float32, 1, "C")

    def codegen(context, builder, sig, args):
        _, s_o, lds, _, d_o, ldd = args
        vec = ir.VectorType(ir.FloatType(), _VW)
        vptr = vec.as_pointer()

        def data(i):
            return context.make_array(sig.args[i])(context, builder, args[i]).data

        src = builder.gep(data(0), [s_o])
        dst = builder.gep(data(3), [d_o])
        v = [builder.load(builder.bitcast(builder.gep(src, [builder.mul(
            ir.Constant(lds.type, i), lds)]), vptr), align=4) for i in range(_VW)]
        b = _VW // 2
        while b:
            lo = [L if not L & b else _VW + L - b for L in range(_VW)]
            hi = [L + b if not L & b else _VW + L for L in range(_VW)]
            for i in range(_VW):
                if not i & b:
                    v[i], v[i + b] = (builder.shuffle_vector(v[i], v[i + b], ir.Constant(
                        ir.VectorType(ir.IntType(32), _VW), m)) for m in (lo, hi))
            b //= 2
        for j in range(_VW):
            builder.store(v[j], builder.bitcast(builder.gep(dst, [builder.mul(
                ir.Constant(ldd.type, j), ldd)]), vptr), align=4)
        return context.get_dummy_value()

    @intrinsic
    def kernel(typingctx, src, s_off, lds, dst, d_off, ldd):
        if not (src == arr and dst == arr):
            return None
        ip = types.intp
        return types.void(src, ip, ip, dst, ip, ip), codegen

    return kernel


transpose_block = _make_transpose_kernel()


@njit(parallel=True, **_JIT)
def transpose_into(src, s_off, lds, rows, cols, dst, d_off, ldd):
    """``dst[d_off + j*ldd + i] = src[s_off + i*lds + j]`` for i < rows, j < cols: a
    (rows, cols) float32 matrix with rows ``lds`` floats apart, transposed into rows ``ldd``
    floats apart (the floats past ``rows`` untouched), in VW x VW register blocks, edges element
    by element. (numpy's ``a.T`` copy ran 1.1 ms for 512 x 2304 on 2 cores, this 0.17, a plain
    copy 0.1.)"""
    RB = rows // _VW
    CB = (cols + _VW - 1) // _VW
    for item in prange(((rows + _VW - 1) // _VW) * CB):
        ib = item // CB
        i0, j0 = ib * _VW, (item - ib * CB) * _VW
        if ib < RB and j0 + _VW <= cols:
            transpose_block(src, s_off + i0 * lds + j0, lds, dst, d_off + j0 * ldd + i0, ldd)
        else:
            for i in range(i0, min(rows, i0 + _VW)):
                for j in range(j0, min(cols, j0 + _VW)):
                    dst[d_off + j * ldd + i] = src[s_off + i * lds + j]
    return dst


@njit(parallel=True, **_JIT)
def pack_row_panels(w, rows_per_group, groups, out, nr=NR):
    """B panels whose columns are ROWS of ``w`` (R, K): group g (of ``groups``) holds rows
    ``g*rows_per_group ..`` cut into P = ceil(rows_per_group / NR) panels;
    ``out[((g*P + p)*K + k)*NR + j] = w[g*rows_per_group + p*NR + j, k]`` (0 past the group).
    Used for ``h @ W_hh^T`` (one panel = NR hidden units of one gate) and conv2d v8's W^T
    (with ``nr`` = GATHER_NR: panels of another width, a multiple of VW).
    Work items of VW columns of one panel, transposed in VW x VW register blocks where whole
    (edges element by element): writing each row of w down a panel's column, NR floats apart,
    ran 0.45 ms for 512 x 2304 and 2.3 ms for 4000 x 1000 on 2 cores (a copy: 0.1 / 0.8)."""
    K = w.shape[1]
    wf = np.ascontiguousarray(w).reshape(w.size)
    P = (rows_per_group + nr - 1) // nr
    KB = (K + _VW - 1) // _VW
    for item in prange(groups * P * KB):
        gp = item // KB
        k0 = (item - gp * KB) * _VW
        g = gp // P
        p = gp - g * P
        o = gp * K * nr
        for v in range(0, nr, _VW):
            u0 = p * nr + v
            if u0 + _VW <= rows_per_group and k0 + _VW <= K:
                transpose_block(wf, (g * rows_per_group + u0) * K + k0, K, out,
                                o + k0 * nr + v, nr)
                continue
            for j in range(v, v + _VW):
                u = p * nr + j
                for k in range(k0, min(K, k0 + _VW)):
                    out[o + k * nr + j] = wf[(g * rows_per_group + u) * K + k] \
                        if u < rows_per_group else 0.0
    return out


# rows of w per work item of pack_col_panels: each item reads its rows front to back, whole,
# and writes every panel's piece of them (P output streams). Items of whole panels, each reading
# NR floats from all K rows (K rows of 4-16 KB apart: a TLB miss or two per row and panel),
# measured 0.36 ms for LSTM Hd=512's 2048 x 512 W_hh (vs 0.24 here) and 2.4 ms for the speech
# shape's 4000 x 1000 (vs 1.3; a plain copy: 0.1 / 1.0 ms), 2 threads, AVX-512 EPYC, NR = 48.
# (On AVX2, NR = 24, groups of 8 panels per item had cut the per-panel items' 5.4 ms to 1.0.)
COL_PACK_ROWS = 64


@njit(parallel=True, **_JIT)
def pack_col_panels(w, out, nr=NR):
    """B panels whose columns are COLUMNS of ``w`` (K, C): P = ceil(C / NR) panels,
    ``out[(p*K + k)*NR + j] = w[k, p*NR + j]`` (0 past C). Used for ``dg @ W_hh`` and conv2d
    v8's W (``nr``: panels of another width)."""
    K, C = w.shape
    P = (C + nr - 1) // nr
    for item in prange((K + COL_PACK_ROWS - 1) // COL_PACK_ROWS):
        for k in range(item * COL_PACK_ROWS, min(K, (item + 1) * COL_PACK_ROWS)):
            row = w[k]
            for p in range(P):
                o = (p * K + k) * nr
                c0 = p * nr
                if c0 + nr <= C:      # views: indices from 0 vectorise (offset indices keep
                    d = out[o: o + nr]    # numba's negative-index check and run scalar)
                    v = row[c0: c0 + nr]
                    for j in range(nr):
                        d[j] = v[j]
                else:
                    for j in range(C - c0):
                        out[o + j] = row[c0 + j]
                    for j in range(C - c0, nr):
                        out[o + j] = 0.0
    return out
