"""kernels/_vecmath.py: the vectorisable float32 exp / sigmoid / tanh behind numba v5's
recurrent elementwise kernels, against float64 NumPy over the whole float32 range."""
import numpy as np
import pytest
from numba import njit

from kernels._vecmath import VEC_JIT, exp32, sigmoid32, tanh32


@njit(**VEC_JIT)
def _exp_all(a, out):
    for i in range(a.shape[0]):
        out[i] = exp32(a[i])


@njit(**VEC_JIT)
def _sigmoid_all(a, out):
    for i in range(a.shape[0]):
        out[i] = sigmoid32(a[i])


@njit(**VEC_JIT)
def _tanh_all(a, out):
    for i in range(a.shape[0]):
        out[i] = tanh32(a[i])


def _ref_sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


CASES = {"exp": (_exp_all, np.exp), "sigmoid": (_sigmoid_all, _ref_sigmoid),
         "tanh": (_tanh_all, np.tanh)}


@pytest.mark.parametrize("name", list(CASES))
def test_float32_accuracy(name):
    """Relative error within 4 float32 ulps (2**-21) wherever the exact value is a normal
    float32 below the clamp (exp(88.376) = 2.4e38); for sigmoid / tanh also an absolute error
    within 2e-7 everywhere."""
    f, ref = CASES[name]
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(-90, 90, 200_000), rng.uniform(-1, 1, 50_000),
                        rng.uniform(-1e-3, 1e-3, 10_000)]).astype(np.float32)
    got = np.empty_like(a)
    f(a, got)
    with np.errstate(over="ignore"):
        exact = ref(a.astype(np.float64))
    normal = (np.abs(exact) > np.finfo(np.float32).tiny) & (np.abs(exact) < 2.4e38)
    rel = np.abs(got[normal] - exact[normal]) / np.abs(exact[normal])
    assert rel.max() <= 2.0 ** -21, (name, float(rel.max()))
    if name != "exp":
        assert np.abs(got - exact).max() <= 2e-7, name


@pytest.mark.parametrize("name", list(CASES))
def test_special_values(name):
    """+-inf and huge arguments saturate, NaN stays NaN, 0 maps exactly."""
    f, _ = CASES[name]
    a = np.array([np.inf, -np.inf, 1e30, -1e30, np.nan, 0.0], np.float32)
    got = np.empty_like(a)
    f(a, got)
    assert np.isnan(got[4]) and not np.isnan(np.delete(got, 4)).any()
    if name == "exp":
        assert got[0] > 1e38 and got[2] > 1e38 and got[1] == 0 and got[3] == 0 and got[5] == 1
    elif name == "sigmoid":
        assert got[0] == 1 and got[2] == 1 and got[1] < 1e-38 and got[3] < 1e-38
        assert got[5] == 0.5
    else:
        assert got[0] == 1 and got[2] == 1 and got[1] == -1 and got[3] == -1 and got[5] == 0
