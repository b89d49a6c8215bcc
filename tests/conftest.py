"""Test configuration: fixed small datasets and closed-form references.

JAX's global x64 flag stays OFF (its default), as in a user's session: every public function
must return the dtype it promises without it. CI runs the suite a second time with
``NTK_INFLUENCE_TEST_X64=1``, which turns the flag on for the whole session.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from flax import nnx

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


def _exact_integers(x: np.ndarray) -> tuple[np.ndarray, int]:
    """``x`` as Python integers ``m`` and a shift ``s`` with ``x = m * 2**-s`` exactly."""
    mant, expo = np.frexp(np.asarray(x, np.float64))
    shift = int(max(0, 53 - expo[mant != 0].min(initial=53)))
    m = (mant * 2.0**53).astype(np.int64).astype(object)
    return np.vectorize(lambda v, e: v << (e - 53 + shift) if v >= 0 else -((-v) << (e - 53 + shift)),
                        otypes=[object])(m, expo), shift


def closed_form_kernel(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Eq. (4) at the inputs' directions, in extended precision: the independent reference.

    The dot products are exact (Python integers), and ``cos = x.x' / (||x|| ||x'||)``,
    ``arccos`` and ``pi`` are evaluated by mpmath at 40 digits, so the result is eq. (4)
    ``cos (pi - arccos(cos)) / (2 pi)`` rounded once to float64. Results are cached by value.
    """
    a = np.ascontiguousarray(x1, np.float64)
    b = np.ascontiguousarray(x2, np.float64)
    key = (a.shape, a.tobytes(), b.shape, b.tobytes())
    if key not in _REFERENCE_CACHE:
        _REFERENCE_CACHE[key] = _mp_kernel(a, b)
    return _REFERENCE_CACHE[key].copy()


_REFERENCE_CACHE: dict[tuple, np.ndarray] = {}


def _mp_kernel(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    a, _ = _exact_integers(x1)
    b, _ = _exact_integers(x2)
    gram = a @ b.T
    symmetric = x1.shape == x2.shape and np.array_equal(x1, x2)
    out = np.empty(gram.shape)
    with mpmath.workdps(40):
        one, pi = mpmath.mpf(1), mpmath.pi
        sa = [mpmath.sqrt(mpmath.mpf(sum(v * v for v in row))) for row in a]
        sb = [mpmath.sqrt(mpmath.mpf(sum(v * v for v in row))) for row in b]
        for i in range(gram.shape[0]):
            for j in range(i if symmetric else 0, gram.shape[1]):
                c = max(-one, min(one, mpmath.mpf(gram[i, j]) / (sa[i] * sb[j])))
                out[i, j] = float(c * (pi - mpmath.acos(c)) / (2 * pi))
                if symmetric:
                    out[j, i] = out[i, j]
    return out


def krr_predict(k_train: np.ndarray, k_test: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Dense-solve KRR prediction, eq. (6): the brute-force reference."""
    n = k_train.shape[0]
    return k_test.T @ np.linalg.solve(k_train + lam * np.eye(n), y)


class TanhNet(nnx.Module):
    """A smooth two-layer net (tanh), both layers trained: training reaches a stationary point
    of eq. (2), and its Hessian is not ``J^T J + lam I``."""

    def __init__(self, d: int, width: int) -> None:
        import ntk_influence as ni

        with ni.precision(np.float64):
            k1, k2 = jax.random.split(jax.random.PRNGKey(0))
            self.w1 = nnx.Param(jax.random.normal(k1, (d, width), jnp.float64))
            self.w2 = nnx.Param(jax.random.normal(k2, (width,), jnp.float64))
        self.d, self.width = d, width

    def __call__(self, x):
        h = jnp.tanh(x @ self.w1[...] / np.sqrt(self.d))
        return h @ self.w2[...] / np.sqrt(self.width)
