import os
import subprocess
import sys

import pytest

from kernels import registry
from kernels.registry import BackendUnavailableError, KernelNotFoundError


def test_lookup_default_and_explicit_versions():
    k = registry.get("linear_forward", "numba")
    assert k.op == "linear_forward" and k.backend == "numba"
    assert k.version == registry.default_version("linear_forward", "numba")
    assert registry.get("linear_forward", "numpy", 1).version == 1


def test_unknown_op_backend_version_list_what_exists():
    with pytest.raises(KernelNotFoundError, match=r"op: unknown op 'nope'.*linear_forward"):
        registry.get("nope", "numpy")
    with pytest.raises(KernelNotFoundError, match=r"backend: unknown backend 'gpu'.*numba"):
        registry.get("linear_forward", "gpu")
    with pytest.raises(KernelNotFoundError, match=r"version: .*no version 99.*numpy: v1"):
        registry.get("linear_forward", "numpy", 99)


def test_backend_status_has_reasons():
    status = registry.backend_status()
    assert set(status) == set(registry.BACKENDS)
    assert status["numpy"][0] and status["numba"][0]
    for name, (ok, reason) in status.items():
        assert reason, name


def test_unavailable_backend_is_a_clear_error():
    ok, reason = registry.backend_status()["cuda"]
    if ok:
        pytest.skip("a GPU is present")
    with pytest.raises(BackendUnavailableError, match="cuda"):
        registry.check_backend("cuda")
    import layers
    with pytest.raises(BackendUnavailableError, match=r"pip install -e \"\.\[gpu\]\""):
        layers.Linear(2, 2, backend="cuda")


def test_unknown_backend_in_layer():
    import layers
    with pytest.raises(KernelNotFoundError, match="backend: unknown backend 'tpu'"):
        layers.ReLU(backend="tpu")


def test_duplicate_registration_rejected():
    registry.get("linear_forward", "numpy", 1)       # load the op's module (lazy) first
    with pytest.raises(ValueError, match="already registered"):
        registry.register("linear_forward", "numpy", 1)(lambda: None)


@pytest.mark.parametrize("preset,expected", [(None, "4"), ("12", "12")])
def test_import_shortens_openblas_spin_unless_set(preset, expected):
    # kernels/__init__.py: OpenBLAS's idle threads would otherwise spin ~0.1 s after each
    # multi-threaded call and stall numba's parallel kernels; a user's value wins
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if preset is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = preset
    out = subprocess.run([sys.executable, "-c", "import kernels, os; "
                          "print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
