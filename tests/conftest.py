"""Shared test configuration.

Hypothesis runs a modest number of examples by default so the suite fits CI's
budget on 2 cores; ``HYPOTHESIS_PROFILE=thorough`` runs many more.
"""
import os

import kernels  # noqa: F401  (first: OPENBLAS_THREAD_TIMEOUT before NumPy loads)
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=20, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "thorough", max_examples=300, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

@pytest.fixture
def rng():
    return np.random.default_rng(0)
