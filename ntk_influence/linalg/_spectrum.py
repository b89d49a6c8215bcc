"""Extreme eigenvalues of ``K`` for Theorem 3 and the condition number, computed on demand.

This module holds :class:`Spectrum` and :func:`compute_spectrum`, which
:attr:`~ntk_influence.linalg.KRRFactor.spectrum` calls on first read.

``lambda_max(K)`` comes from ``K`` itself and ``lambda_min(K) = 1 / mu_max(A) - lam`` from
``A = (K + lam I)^-1``, both by ARPACK's implicitly restarted Lanczos (``scipy.sparse.linalg
.eigsh``), a maintained eigensolver that reports its own convergence. The products are supplied
by the factorisation's backend (host LAPACK, device, float32), so one solver serves all of them.
Small problems use dense ``eigvalsh`` instead (exact to rounding).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Literal

import numpy as np

from ..errors import InputError, NotConvergedWarning

SpectrumMethod = Literal["auto", "exact", "iterative", "lanczos", "none"]


EXACT_SPECTRUM_MAX_N = 1024


ITERATIVE_TOL = 1e-6


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """Extreme eigenvalues of ``K`` and how they were obtained.

    Attributes:
      lambda_min: least eigenvalue of ``K``.
      lambda_max: largest eigenvalue of ``K``.
      method: ``"exact"`` (dense eigvalsh), ``"iterative"`` (ARPACK) or ``"none"``.
      residual: bound on each estimate's error, ``(lambda_min, lambda_max)`` (0 for exact).
      converged: whether both estimates met the solver's tolerance.
      steps: matrix products used for ``(lambda_min, lambda_max)`` (0 for exact).
    """

    lambda_min: float
    lambda_max: float
    method: str
    residual: tuple[float, float] = (0.0, 0.0)
    converged: bool = True
    steps: tuple[int, int] = (0, 0)


def check_method(method: str) -> str:
    """Validate a spectrum method name (``"lanczos"`` is accepted for ``"iterative"``).

    Args:
      method: ``"auto"``, ``"exact"``, ``"iterative"``, ``"lanczos"`` or ``"none"``.

    Returns:
      The canonical name.
    """
    if method not in ("auto", "exact", "iterative", "lanczos", "none"):
        raise InputError(f"spectrum must be 'auto', 'exact', 'iterative' or 'none', got {method!r}.")
    return "iterative" if method == "lanczos" else method


def _top_eigenvalue(matvec: Callable[[np.ndarray], np.ndarray], n: int, tol: float,
                    seed: int) -> tuple[float, float, int, bool]:
    """Largest eigenvalue of a symmetric PSD operator by ARPACK; ``(theta, residual, products, ok)``."""
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    count = [0]

    def mv(v: np.ndarray) -> np.ndarray:
        count[0] += 1
        return np.asarray(matvec(np.asarray(v, np.float64).reshape(n, -1)), np.float64).reshape(
            v.shape)

    op = LinearOperator((n, n), matvec=mv, dtype=np.float64)
    v0 = np.random.default_rng(seed).normal(size=n)
    ok = True
    try:
        vals, vecs = eigsh(op, k=1, which="LA", tol=tol, v0=v0, maxiter=max(300, n))
    except ArpackNoConvergence as e:  # keep the best estimate and say so
        ok = False
        if len(e.eigenvalues) == 0:
            return float("nan"), float("inf"), count[0], False
        vals, vecs = e.eigenvalues, e.eigenvectors
    u = vecs[:, -1] / np.linalg.norm(vecs[:, -1])
    theta = float(vals[-1])
    res = float(np.linalg.norm(mv(u) - theta * u))
    return theta, res, count[0], ok


def compute_spectrum(n: int, lam: float, method: str, *,
                     matvec_k: Callable[[np.ndarray], np.ndarray],
                     matvec_a: Callable[[np.ndarray], np.ndarray],
                     dense_m: Callable[[], np.ndarray] | None = None,
                     tol: float = ITERATIVE_TOL) -> Spectrum:
    """``lambda_min`` and ``lambda_max`` of ``K`` by the chosen method.

    Args:
      n: size of ``K``.
      lam: the ridge.
      method: ``"auto"`` (exact up to n = 1024, else iterative), ``"exact"``, ``"iterative"`` or
        ``"none"``.
      matvec_k: ``v -> K v`` for ``(n, m)`` host blocks.
      matvec_a: ``v -> (K + lam I)^-1 v``.
      dense_m: returns the dense ``K + lam I`` (exact method).
      tol: ARPACK's relative tolerance.

    Returns:
      :class:`Spectrum`; a non-converged iterative estimate warns
      (:class:`NotConvergedWarning`) and says so in ``converged``.
    """
    method = check_method(method)
    if method == "auto":
        method = "exact" if (n <= EXACT_SPECTRUM_MAX_N and dense_m is not None) else "iterative"
    if method == "none":
        return Spectrum(float("nan"), float("nan"), "none", (float("nan"),) * 2, False)
    if method == "exact" or n <= 2:
        if dense_m is None:
            raise InputError("spectrum='exact' needs the dense matrix; use 'iterative'.")
        from scipy.linalg import eigh

        ev = eigh(dense_m(), eigvals_only=True)
        return Spectrum(float(ev[0]) - lam, float(ev[-1]) - lam, "exact")
    lmax, rmax, smax, okmax = _top_eigenvalue(matvec_k, n, tol, seed=0)
    mu, rmu, smin, okmin = _top_eigenvalue(matvec_a, n, tol, seed=1)
    lmin = 1.0 / mu - lam
    rmin = rmu / mu**2  # first-order error of 1/mu
    conv = bool(okmax and okmin)
    if not conv:
        warnings.warn(
            f"eigenvalue estimate not converged (residual {rmin:.2e} on lambda_min, {rmax:.2e} on "
            "lambda_max); pass spectrum='exact' for exact values.", NotConvergedWarning,
            stacklevel=4)
    return Spectrum(float(lmin), float(lmax), "iterative", (float(rmin), float(rmax)), conv,
                    (smin, smax))
