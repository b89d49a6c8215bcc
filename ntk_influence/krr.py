"""One factorisation of ``K + lam I`` that serves every exact computation (eq. 5, 6, 9).

:func:`factorize` computes the Cholesky factor ``L`` of ``K + lam I``, its inverse ``L^-1``, the
diagonal of ``A = (K + lam I)^-1``, ``beta = A y`` and the extreme eigenvalues of ``K``. Everything
downstream (KRR predictions, exact leave-one-out, leverage, group removal, complexity) reuses it.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from ._errors import InputError, NotConvergedWarning, SingularKernelError
from ._precision import precision
from ._validate import as_array, check_indices, check_lam

SpectrumMethod = Literal["auto", "exact", "lanczos", "none"]
EXACT_SPECTRUM_MAX_N = 2048


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """Extreme eigenvalues of ``K`` and how they were obtained.

    Attributes:
      lambda_min: least eigenvalue of ``K``.
      lambda_max: largest eigenvalue of ``K``.
      method: ``"exact"`` (dense eigvalsh), ``"lanczos"`` or ``"none"``.
      residual: Lanczos residual bound on each estimate (0 for exact).
      converged: whether the estimates met the tolerance.
    """

    lambda_min: float
    lambda_max: float
    method: str
    residual: tuple[float, float] = (0.0, 0.0)
    converged: bool = True


@dataclasses.dataclass(frozen=True)
class KRRFactor:
    """The factorisation of ``K + lam I`` and the quantities every influence needs.

    Attributes:
      chol: lower Cholesky factor ``L`` of ``K + lam I``.
      chol_inv: ``L^-1`` (so that ``A = L^-T L^-1``).
      a_diag: ``diag(A)``.
      beta: ``A y``, shape ``(n, k)``.
      y: training labels as ``(n, k)``.
      lam: the ridge.
      spectrum: extreme eigenvalues of ``K``.
      cond: condition number of ``K + lam I``, ``(lambda_max + lam)/(lambda_min + lam)``.
      dtype: the dtype of the factor.
    """

    chol: jax.Array
    chol_inv: jax.Array
    a_diag: jax.Array
    beta: jax.Array
    y: jax.Array
    lam: float
    spectrum: Spectrum
    cond: float
    dtype: np.dtype

    @property
    def n(self) -> int:
        """Number of training points."""
        return int(self.a_diag.shape[0])

    def solve(self, b: Any) -> jax.Array:
        """Return ``A b = (K + lam I)^-1 b`` for ``b`` of shape ``(n,)`` or ``(n, m)``."""
        with precision(self.dtype):
            return _apply_a(self.chol_inv, jnp.asarray(b, self.dtype))

    def a_columns(self, idx: Any) -> jax.Array:
        """Return the columns ``A[:, idx]`` (shape ``(n, len(idx))``)."""
        idx = check_indices(idx, self.n, "idx")
        with precision(self.dtype):
            return self.chol_inv.T @ self.chol_inv[:, idx]

    @property
    def leverage(self) -> jax.Array:
        """Ridge leverage scores ``h_i = 1 - lam A_ii`` (Theorem 3)."""
        return 1.0 - self.lam * self.a_diag


@jax.jit
def _apply_a(chol_inv: jax.Array, b: jax.Array) -> jax.Array:
    return chol_inv.T @ (chol_inv @ b)


@jax.jit
def _factor(k: jax.Array, y: jax.Array, lam: jax.Array) -> tuple[jax.Array, ...]:
    n = k.shape[0]
    eye = jnp.eye(n, dtype=k.dtype)
    chol = jnp.linalg.cholesky(k + lam * eye)
    chol_inv = solve_triangular(chol, eye, lower=True)
    a_diag = jnp.sum(chol_inv * chol_inv, axis=0)
    beta = chol_inv.T @ (chol_inv @ y)
    ok = jnp.all(jnp.isfinite(chol)) & jnp.all(jnp.diagonal(chol) > 0)
    return chol, chol_inv, a_diag, beta, ok


def _matvec(kind: str, mat: jax.Array, v: jax.Array) -> jax.Array:
    """``K v`` for kind ``"k"``; ``(K + lam I)^-1 v = L^-T (L^-1 v)`` for kind ``"a"``."""
    return mat @ v if kind == "k" else mat.T @ (mat @ v)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _lanczos_run(kind: str, mat: jax.Array, v0: jax.Array, steps: int
                 ) -> tuple[jax.Array, jax.Array]:
    """``steps`` Lanczos steps with full reorthogonalisation; returns the tridiagonal's entries."""
    n = v0.shape[0]
    basis = jnp.zeros((steps + 1, n), v0.dtype).at[0].set(v0 / jnp.linalg.norm(v0))

    def body(j: jax.Array, carry: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        basis, alphas, betas = carry
        v = basis[j]
        w = _matvec(kind, mat, v)
        a = jnp.vdot(w, v)
        w = w - basis.T @ (basis @ w)  # full reorthogonalisation, twice is enough
        w = w - basis.T @ (basis @ w)
        b = jnp.linalg.norm(w)
        safe = jnp.where(b > 0, b, 1.0)
        basis = basis.at[j + 1].set(jnp.where(b > 0, w / safe, 0.0))
        return basis, alphas.at[j].set(a), betas.at[j].set(b)

    init = (basis, jnp.zeros(steps, v0.dtype), jnp.zeros(steps, v0.dtype))
    _, alphas, betas = jax.lax.fori_loop(0, steps, body, init)
    return alphas, betas


def _lanczos(kind: str, mat: jax.Array, steps: int, seed: int = 0) -> tuple[float, float]:
    """Largest eigenvalue of a symmetric operator by Lanczos with full reorthogonalisation.

    Returns:
      ``(theta, residual)``: the largest Ritz value and its residual norm bound.
    """
    n = mat.shape[0]
    steps = int(min(steps, n))
    v0 = jax.random.normal(jax.random.PRNGKey(seed), (n,), dtype=mat.dtype)
    alphas, betas = (np.asarray(a) for a in _lanczos_run(kind, mat, v0, steps))
    # Stop at an invariant subspace (beta ~ 0) if one was found early.
    small = np.flatnonzero(betas[:-1] <= 1e-12 * max(abs(alphas[0]), 1e-300))
    m = int(small[0]) + 1 if small.size else steps
    t = np.diag(alphas[:m]) + np.diag(betas[: m - 1], 1) + np.diag(betas[: m - 1], -1)
    evals, evecs = np.linalg.eigh(t)
    return float(evals[-1]), float(abs(betas[m - 1] * evecs[-1, -1]))


def spectrum(k: Any, chol_inv: Any, lam: float, method: SpectrumMethod = "auto",
             steps: int = 60, tol: float = 1e-6) -> Spectrum:
    """Extreme eigenvalues of ``K``: dense ``eigvalsh`` or Lanczos (``lambda_min`` through ``A``).

    Lanczos on ``A = (K + lam I)^-1`` gives ``lambda_min = 1/mu_max(A) - lam``; the Ritz value can
    only under-estimate ``mu_max``, so the Lanczos ``lambda_min`` is an upper estimate, and the
    residual bound says by how much it may be off.

    Args:
      k: ``(n, n)`` kernel matrix.
      chol_inv: ``L^-1`` from the factorisation.
      lam: ridge.
      method: ``"auto"`` (exact up to n=2048, else Lanczos), ``"exact"``, ``"lanczos"``, ``"none"``.
      steps: Lanczos steps.
      tol: relative residual tolerance for ``converged``.

    Returns:
      :class:`Spectrum`.
    """
    n = int(k.shape[0])
    if method == "auto":
        method = "exact" if n <= EXACT_SPECTRUM_MAX_N else "lanczos"
    if method == "none":
        return Spectrum(float("nan"), float("nan"), "none", (float("nan"),) * 2, False)
    if method == "exact":
        ev = np.asarray(jnp.linalg.eigvalsh(k))
        return Spectrum(float(ev[0]), float(ev[-1]), "exact")
    if method != "lanczos":
        raise InputError(f"spectrum must be 'auto', 'exact', 'lanczos' or 'none', got {method!r}.")
    lmax, rmax = _lanczos("k", k, steps)
    mu, rmu = _lanczos("a", chol_inv, steps, seed=1)
    lmin = 1.0 / mu - lam
    # |delta lambda_min| <= r/mu^2 to first order in the residual.
    rmin = rmu / mu**2
    conv = rmax <= tol * lmax and rmin <= max(tol * (abs(lmin) + lam), 1e-12)
    if not conv:
        warnings.warn(
            f"Lanczos spectrum estimate not converged (residuals {rmin:.2e} on lambda_min, "
            f"{rmax:.2e} on lambda_max); use spectrum='exact' for exact values.",
            NotConvergedWarning, stacklevel=3)
    return Spectrum(float(lmin), float(lmax), "lanczos", (float(rmin), float(rmax)), bool(conv))


def factorize(k_train: Any, y_train: Any, lam: float, *, spectrum_method: SpectrumMethod = "auto",
              dtype: Any = np.float64) -> KRRFactor:
    """Factorise ``K + lam I`` once (Cholesky) and compute ``A``'s diagonal, ``beta`` and spectrum.

    Eq. (5)-(6): ``beta = (K + lam I)^-1 y``. Raises :class:`SingularKernelError` when
    ``K + lam I`` is not numerically positive definite (suggesting a larger ``lam``).

    Args:
      k_train: ``(n, n)`` symmetric kernel matrix.
      y_train: ``(n,)`` or ``(n, k)`` labels.
      lam: ridge ``lam >= 0``.
      spectrum_method: how to get ``lambda_min``/``lambda_max`` (see :func:`spectrum`).
      dtype: float64 (default) or float32.

    Returns:
      :class:`KRRFactor`.
    """
    lam = check_lam(lam)
    k = as_array(k_train, "k_train", (2,))
    if k.shape[0] != k.shape[1]:
        raise InputError(f"k_train must be square, got shape {k.shape}.")
    y = as_array(y_train, "y_train", (1, 2))
    if y.shape[0] != k.shape[0]:
        raise InputError(f"y_train has {y.shape[0]} rows but k_train is {k.shape[0]} x {k.shape[0]}.")
    y2 = y.reshape(y.shape[0], -1)
    asym = np.abs(k - k.T).max()
    if asym > 1e-8 * max(np.abs(k).max(), 1.0):
        raise InputError(f"k_train is not symmetric (max |K - K^T| = {asym:.3g}); pass K(x, x).")
    with precision(dtype) as dt:
        kj = jnp.asarray(k, dt)
        chol, chol_inv, a_diag, beta, ok = _factor(kj, jnp.asarray(y2, dt), jnp.asarray(lam, dt))
        if not bool(ok):
            raise SingularKernelError(
                f"K + lam*I is not numerically positive definite (lam={lam:g}, n={k.shape[0]}); "
                "the kernel matrix is singular or has duplicate points. Use lam > 0 "
                "(e.g. lam=1e-3 or larger).")
        spec = spectrum(kj, chol_inv, lam, spectrum_method)
        eps = float(np.finfo(dt).eps)
        cond = (spec.lambda_max + lam) / (spec.lambda_min + lam) if spec.method != "none" else \
            float(jnp.max(jnp.diagonal(chol)) / jnp.min(jnp.diagonal(chol))) ** 2
        if spec.method != "none" and (spec.lambda_min + lam) <= 10 * k.shape[0] * eps * spec.lambda_max:
            raise SingularKernelError(
                f"K + lam*I is numerically singular: lambda_min(K) + lam = "
                f"{spec.lambda_min + lam:.3g} against lambda_max = {spec.lambda_max:.3g} "
                f"(condition {cond:.3g}, {np.dtype(dt).name}). Use lam > 0, e.g. lam="
                f"{max(1e-6 * spec.lambda_max, 1e-3):.1g}.")
        yj = jnp.asarray(y2, dt)
    return KRRFactor(chol, chol_inv, a_diag, beta, yj, lam, spec, float(cond),
                     np.dtype(dt))
