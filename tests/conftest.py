"""Test configuration: fixed small datasets and closed-form references.

JAX's global x64 flag stays OFF (its default), as in a user's session: every public function
must return the dtype it promises without it. CI runs the suite a second time with
``NTK_INFLUENCE_TEST_X64=1``, which turns the flag on for the whole session.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

if os.environ.get("NTK_INFLUENCE_TEST_X64") == "1":
    jax.config.update("jax_enable_x64", True)


@pytest.fixture(scope="session")
def digits38():
    """200 training and 40 test points of digits 3-vs-8, unit norm, labels +1/-1."""
    import ntk_influence as ni

    return ni.load_dataset("digits:3,8", n_train=120, n_test=30, seed=0)


@pytest.fixture(scope="session")
def digits_multi():
    """Three-class digits with one-hot labels."""
    import ntk_influence as ni

    return ni.load_dataset("digits:0,1,7", n_train=90, n_test=20, seed=1)


def closed_form_kernel(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Eq. (4) in NumPy: the independent reference for the kernel."""
    g = np.clip(x1 @ x2.T, -1.0, 1.0)
    return g * (np.pi - np.arccos(g)) / (2 * np.pi)


def krr_predict(k_train: np.ndarray, k_test: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Dense-solve KRR prediction, eq. (6): the brute-force reference."""
    n = k_train.shape[0]
    return k_test.T @ np.linalg.solve(k_train + lam * np.eye(n), y)
