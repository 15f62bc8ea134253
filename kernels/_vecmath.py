"""float32 exp / sigmoid / tanh that LLVM can vectorise inside numba loops.

numba lowers ``np.exp`` on a scalar to a libm call, so a loop over gate pre-activations runs one
scalar ``exp`` per value (5-6 ns each here) and never vectorises; fastmath would vectorise it only
with Intel's SVML installed, and would also relax every other operation of the kernel. The
functions below are straight-line float32 arithmetic (no calls, no branches the vectoriser cannot
turn into selects), so a loop of them becomes AVX2 code: a whole array of sigmoids costs ~1 ns
per value instead of ~8 ns (2-core AVX2 EPYC).

* ``exp32``: Cephes ``expf``: n = round(x / ln 2), r = x - n ln 2 (two-part ln 2), a degree-6
  polynomial for e^r, times 2^n built from its bits (``_pow2_f32``, an LLVM bitcast). Input is
  clamped to +-88.376: exp32(-88.4 or less, -inf too) = 0 (exact ~1e-39) and exp32(88.4 or more,
  +inf too) = 2.4e38 (exact: inf), harmless for the gate functions built on it; NaN gives NaN. Measured max relative error
  8.0e-8 (libm's expf: 6.0e-8) on 10^6 uniform points in [-87, 88].
* ``sigmoid32(a) = 1 / (1 + exp32(-a))``: absolute error <= 1.2e-7.
* ``tanh32``: (1 - e) / (1 + e) with e = exp32(-2|a|) and the sign of a; for |a| < 1/16 the odd
  Taylor polynomial to a^9 (the (1 - e) form loses relative accuracy near 0).

Callers must be compiled with ``error_model="numpy"``: numba's default ("python") tests every
float division for zero to raise ZeroDivisionError, and that branch stops the vectoriser (the
sigmoid loop ran 8 ns per value with it, 0.9 ns without). Only float32 arguments are meant;
float64 kernels keep libm's exp.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import types
from numba.extending import intrinsic

VEC_JIT = dict(cache=True, fastmath=False, error_model="numpy")

_F = np.float32
_HI = _F(88.3762626647949)
_LO = _F(-88.3762626647949)
_LOG2E = _F(1.44269504088896341)
_HALF = _F(0.5)
_ZERO = ZERO32 = _F(0.0)       # float32 constants: a bare 0 or 1 would promote to float64
_ONE = ONE32 = _F(1.0)
_TWO = _F(2.0)
_LN2_HI = _F(0.693359375)        # ln 2 = _LN2_HI + _LN2_LO; n * _LN2_HI is exact
_LN2_LO = _F(-2.12194440e-4)
_P0, _P1, _P2 = _F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3)
_P3, _P4, _P5 = _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1)
_TANH_SMALL = _F(0.0625)
_T3, _T5, _T7, _T9 = _F(-1 / 3), _F(2 / 15), _F(-17 / 315), _F(62 / 2835)


@intrinsic
def _pow2_f32(typingctx, n):
    """2**n for a float32 n holding an integer in [-127, 127]: (int(n) + 127) << 23 read as a
    float32 (n = -127 gives 0.0)."""
    if n != types.float32:
        return None

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        bits = builder.shl(builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127)),
                           ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(types.float32), codegen


@njit(inline="always", **VEC_JIT)
def exp32(x):
    """e**x in float32, vectorisable (see the module docstring for range and accuracy)."""
    x = _HI if x > _HI else x             # clamps +-inf too; NaN fails both tests and stays
    x = _LO if x < _LO else x
    n = np.floor(x * _LOG2E + _HALF)
    n = n if n == n else _ZERO            # NaN: 2**0 (a NaN -> int conversion is undefined)
    r = x - n * _LN2_HI
    r = r - n * _LN2_LO
    p = (((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5) * (r * r) + r + _ONE
    return p * _pow2_f32(n)


@njit(inline="always", **VEC_JIT)
def sigmoid32(a):
    """1 / (1 + e**-a) in float32, vectorisable."""
    return _ONE / (_ONE + exp32(-a))


@njit(inline="always", **VEC_JIT)
def tanh32(a):
    """tanh(a) in float32, vectorisable; full relative accuracy near 0 (Taylor branch)."""
    ax = abs(a)
    e = exp32(-_TWO * ax)
    r = (_ONE - e) / (_ONE + e)
    r = r if a >= 0 else -r
    a2 = a * a
    p = a * (_ONE + a2 * (_T3 + a2 * (_T5 + a2 * (_T7 + a2 * _T9))))
    return p if ax < _TANH_SMALL else r
