"""Test helpers: tolerance comparison and central-difference gradient checks.

Import as ``from util import assert_close, numerical_grad`` (pytest puts tests/ on sys.path).
"""
import numpy as np

# tolerances per dtype: |got - ref| <= atol + rtol * |ref|
TOL = {np.dtype(np.float32): (1e-4, 1e-4), np.dtype(np.float64): (1e-10, 1e-10)}


def assert_close(name, got, ref, atol=None, rtol=None):
    """Elementwise ``|got-ref| <= atol + rtol*|ref|``; the message names the tensor
    and reports the worst element."""
    got = np.asarray(got)
    ref = np.asarray(ref)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != reference {ref.shape}"
    d_atol, d_rtol = TOL.get(np.dtype(ref.dtype), (1e-4, 1e-4))
    atol = d_atol if atol is None else atol
    rtol = d_rtol if rtol is None else rtol
    err = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    bound = atol + rtol * np.abs(ref.astype(np.float64))
    bad = ~(err <= bound)  # NaN-aware: NaN counts as bad unless both are NaN
    both_nan = np.isnan(got) & np.isnan(ref)
    same_inf = np.isinf(got) & (got == ref)      # inf - inf is NaN, but equal infinities agree
    bad &= ~(both_nan | same_inf)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err, -1)), err.shape)
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{err.size} elements differ; worst at {i}: "
            f"got {got[i]!r}, reference {ref[i]!r}, |err|={err[i]:.3g} > {bound[i]:.3g}")


def numerical_grad(f, x, eps=1e-6):
    """Central differences of the scalar function ``f()`` w.r.t. array ``x`` (modified in place,
    restored after). Use float64."""
    g = np.zeros_like(x, dtype=np.float64)
    flat = x.reshape(-1)
    gflat = g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g
