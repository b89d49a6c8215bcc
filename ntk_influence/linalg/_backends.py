"""The backends under :func:`~ntk_influence.linalg.factorize`: device and LAPACK kernels.

This module holds the pieces each backend of the factorisation is built from, and the choice of
backend (:func:`resolve_backend`: ``"lapack"`` on a CPU, ``"jax"`` on a GPU,
``"float32-refined"`` on a device without float64):

* host LAPACK through SciPy: :func:`lapack` (``potrf``, ``trtri``) and :func:`lapack_cho_apply`
  (``potrs``);
* JAX on a device: :func:`chol_device` (Cholesky of ``K + lam I``, its success and a lower
  bound on ``lambda_max``), :func:`cho_apply` (two triangular solves) and
  :func:`inverse_diagonal` (``diag(A)`` from ``L^-1``, by a recursive blocked inverse or in
  ``n x b`` column blocks);
* :func:`refine_solve`: mixed-precision iterative refinement (float32 solves, float64
  residuals) for the float32 backends;
* :func:`device_test_side`: eq. (6), (8)-(9) and (13) for one test block in one jit program,
  shared by :class:`~ntk_influence.linalg.DeviceFactor` and the sharded test side of
  :mod:`ntk_influence.scale`.

Only :func:`~ntk_influence.linalg.factorize` calls the factorising routines (``potrf``,
:func:`chol_device`); everything else here works with the factor it returns.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from .._precision import device_has_float64
from ..errors import InputError
from ._losses import influence_block

Backend = Literal["auto", "lapack", "jax", "float32-refined", "float32"]


BACKENDS = ("auto", "lapack", "jax", "float32-refined", "float32")


WARN_RTOL = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 1e-2}


_INV_LEAF = 256


def resolve_backend(backend: str, dtype: Any = np.float64) -> str:
    """The backend to use for ``backend`` (``"auto"``: by the default device).

    Args:
      backend: one of ``"auto"``, ``"lapack"``, ``"jax"``, ``"float32-refined"``, ``"float32"``.
      dtype: the dtype asked for.

    Returns:
      A concrete backend name.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if backend != "auto":
        return backend
    if jax.default_backend() == "cpu":
        return "lapack"
    if np.dtype(dtype) == np.float64 and not device_has_float64():
        return "float32-refined"
    return "jax"


def lapack(dtype: Any, name: str) -> Any:
    """The SciPy LAPACK routine ``name`` (``"potrf"``, ``"trtri"``, ``"potrs"``) for ``dtype``."""
    from scipy.linalg import get_lapack_funcs

    return get_lapack_funcs(name, dtype=np.dtype(dtype))


def lapack_cho_apply(chol: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(L L^T)^-1 b`` by LAPACK ``potrs`` with the lower Cholesky factor ``L`` (host arrays).

    Args:
      chol: ``(n, n)`` lower-triangular factor.
      b: ``(n,)`` or ``(n, m)`` right-hand side.

    Returns:
      The solution, shaped like ``b``.
    """
    x, info = lapack(chol.dtype, "potrs")(chol, np.asarray(b, chol.dtype), lower=1)
    if info != 0:
        raise InputError(f"potrs failed (info={info}).")
    return x


@jax.jit
def cho_apply(chol: jax.Array, b: jax.Array) -> jax.Array:
    """``(L L^T)^-1 b`` by two triangular solves with the lower Cholesky factor ``L`` (device).

    Args:
      chol: ``(n, n)`` lower-triangular factor.
      b: ``(n,)`` or ``(n, m)`` right-hand side.

    Returns:
      The solution, shaped like ``b``.
    """
    z = solve_triangular(chol, b, lower=True)
    return solve_triangular(chol, z, lower=True, trans=1)


def _tri_inv(chol: jax.Array) -> jax.Array:
    """Inverse of a lower-triangular matrix by 2x2 block recursion (matrix products)."""
    n = chol.shape[0]
    if n <= _INV_LEAF:
        return solve_triangular(chol, jnp.eye(n, dtype=chol.dtype), lower=True)
    h = n // 2
    p = _tri_inv(chol[:h, :h])
    r = _tri_inv(chol[h:, h:])
    q = -(r @ (chol[h:, :h] @ p))
    top = jnp.concatenate([p, jnp.zeros((h, n - h), chol.dtype)], axis=1)
    return jnp.concatenate([top, jnp.concatenate([q, r], axis=1)], axis=0)


@jax.jit
def _inv_diag_recursive(chol: jax.Array) -> jax.Array:
    inv = jax.lax.optimization_barrier(_tri_inv(chol))
    return jnp.sum(inv * inv, axis=0)


@functools.partial(jax.jit, static_argnums=(2,))
def _inv_diag_block(chol: jax.Array, j0: jax.Array, b: int) -> jax.Array:
    n = chol.shape[0]
    e = (jnp.arange(n)[:, None] == (j0 + jnp.arange(b))[None, :]).astype(chol.dtype)
    x = solve_triangular(chol, e, lower=True)
    return jnp.sum(x * x, axis=0)


def inverse_diagonal(chol: jax.Array, *, mode: str = "recursive", block: int = 1024) -> jax.Array:
    """``diag((L L^T)^-1)`` from a lower Cholesky factor on a device.

    Args:
      chol: ``(n, n)`` lower factor.
      mode: ``"recursive"`` (build ``L^-1``: one more ``n x n`` array, ``n^3/3`` flops) or
        ``"blocked"`` (``block`` columns of ``L^-1`` at a time: ``n x block`` workspace, ``n^3``
        flops).
      block: columns per block for ``"blocked"``.

    Returns:
      ``(n,)`` diagonal of the inverse.
    """
    if mode == "recursive":
        return _inv_diag_recursive(chol)
    if mode != "blocked":
        raise InputError(f"mode must be 'recursive' or 'blocked', got {mode!r}.")
    n = chol.shape[0]
    b = int(min(block, n))
    starts = list(range(0, n - b + 1, b)) + ([n - b] if n % b else [])
    parts = [_inv_diag_block(chol, jnp.asarray(j, jnp.int32), b) for j in starts]
    if n % b:  # the last block overlaps the one before it
        parts[-1] = parts[-1][b - n % b:]
    return jnp.concatenate(parts)


@functools.partial(jax.jit, donate_argnums=(0,))
def chol_device(k: jax.Array, lam: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Cholesky of ``K + lam I`` (``K`` donated), its success and a lower bound on ``lambda_max``."""
    n = k.shape[0]
    idx = jnp.arange(n)
    lmax_lb = jnp.maximum(jnp.max(jnp.diagonal(k)), jnp.sum(k) / n) + lam
    chol = jnp.linalg.cholesky(k.at[idx, idx].add(lam))
    dg = jnp.diagonal(chol)
    ok = jnp.all(jnp.isfinite(dg)) & jnp.all(dg > 0)
    return jnp.where(ok, chol, jnp.eye(n, dtype=k.dtype)), ok, lmax_lb


def refine_solve(solve32: Callable[[np.ndarray], np.ndarray], matvec64: Callable[..., Any],
                 b: np.ndarray, *, rtol: float = 1e-13, max_steps: int = 5
                 ) -> tuple[np.ndarray, int, float]:
    """Mixed-precision iterative refinement: float32 solves, float64 residuals.

    ``x <- x + M32^-1 (b - M x)``, with ``M x`` in float64; converges to float64 accuracy when
    ``cond(M) * eps32 < 1``, at a rate of about ``cond(M) * eps32`` per step.

    Args:
      solve32: ``r -> M^-1 r`` in float32 (returns float64 arrays).
      matvec64: ``x -> M x`` in float64.
      b: ``(n,)`` or ``(n, m)`` right-hand side.
      rtol: stop when ``||b - M x|| <= rtol ||b||`` (Frobenius, per call).
      max_steps: at most this many refinement steps.

    Returns:
      ``(x, steps, relative_residual)``.
    """
    b = np.asarray(b, np.float64)
    nb = float(np.linalg.norm(b)) or 1.0
    x = solve32(b)
    r = b - matvec64(x)
    res = float(np.linalg.norm(r)) / nb
    steps = 0
    while res > rtol and steps < max_steps:
        x_new = x + solve32(r)
        r_new = b - matvec64(x_new)
        res_new = float(np.linalg.norm(r_new)) / nb
        steps += 1
        if res_new >= res:  # stagnated: cond * eps32 >= 1 for this system
            break
        x, r, res = x_new, r_new, res_new
    return x, steps, res


@jax.jit
def device_test_side(chol: jax.Array, beta: jax.Array, a_diag: jax.Array, lam: jax.Array,
                     k_test: jax.Array, y_test: jax.Array) -> tuple[jax.Array, ...]:
    """Eq. (6), (8)-(9) and (13) for a test block on a device: ``alpha``, ``f``, influence, IHVP.

    Args:
      chol: ``(n, n)`` lower Cholesky factor of ``K + lam I``.
      beta: ``(n, k)`` ``A y``.
      a_diag: ``(n,)`` ``diag(A)``.
      lam: the ridge.
      k_test: ``(n, t)`` test kernel block.
      y_test: ``(t, k)`` test labels.

    Returns:
      ``(alpha, f_test, influence, ihvp)``.
    """
    alpha = cho_apply(chol, k_test)
    f = k_test.T @ beta
    infl, ihvp = influence_block(alpha, beta, a_diag, lam, f - y_test)
    return alpha, f, infl, ihvp
