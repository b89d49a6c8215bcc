"""Precision policy for devices without float64 (TPU): float32 factors refined to float64.

This module holds :func:`resolve_policy` (which policy a device gets), :func:`float32_influence`
(exact influences through a float32 factorisation) and :func:`precision_report` with its
:class:`PrecisionReport`.

``"float32-refined"`` factorises in float32 on the device and refines every solve (``beta`` and
``A K_te``) with float64 residuals from the host ``K``
(:func:`ntk_influence.linalg.refine_solve`), so the solves reach float64 accuracy when
``cond(K + lam I) * eps32 < 1``. ``diag(A)`` cannot be refined without ``O(n^3)`` float64 work;
its relative error stays about ``cond * eps32``, which :class:`PrecisionReport` states, and a
:class:`PrecisionWarning` fires when that exceeds the caller's ``rtol``.
``benchmarks/bench_scale.py`` measures both against a float64 reference.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Literal

import numpy as np

from .._precision import device_has_float64
from .._validate import check_labels, check_lam
from ..errors import InputError, PrecisionWarning
from ..influence import InfluenceResult, influence_from_factor
from ..linalg import Float32Factor, factorize

PrecisionPolicy = Literal["auto", "float64", "float32", "float32-refined"]


@dataclasses.dataclass(frozen=True)
class PrecisionReport:
    """How the float32 policy ended.

    Attributes:
      policy: the policy used.
      refinement_steps: refinement steps taken (``beta``, worst test block).
      residual: final relative residual ``||b - M x|| / ||b||`` (``beta``, worst test block).
      cond: condition number of ``K + lam I`` (from the spectrum).
      diag_error_estimate: ``cond * eps32``, the expected relative error of ``diag(A)``.
      rtol: the requested relative accuracy.
      met: whether every estimate is within ``rtol``.
    """

    policy: str
    refinement_steps: tuple[int, int]
    residual: tuple[float, float]
    cond: float
    diag_error_estimate: float
    rtol: float
    met: bool


def resolve_policy(policy: PrecisionPolicy, device: Any | None = None) -> str:
    """``"auto"`` becomes ``"float64"`` where the device has float64, else ``"float32-refined"``.

    Args:
      policy: ``"auto"``, ``"float64"``, ``"float32"`` or ``"float32-refined"``.
      device: the factor device.

    Returns:
      The policy to use.
    """
    if policy not in ("auto", "float64", "float32", "float32-refined"):
        raise InputError(f"precision_policy must be 'auto', 'float64', 'float32' or "
                         f"'float32-refined', got {policy!r}.")
    if policy == "auto":
        return "float64" if device_has_float64(device) else "float32-refined"
    return policy


def float32_influence(k_train: Any, k_test: Any, y_train: Any, y_test: Any, lam: float, *,
                      refine: bool = True, rtol: float = 1e-6, test_block: int = 1024,
                      max_steps: int = 5, kernel_name: str = "precomputed"
                      ) -> tuple[InfluenceResult, PrecisionReport]:
    """Exact influence (eq. 8-9) with a float32 factorisation on the default device.

    The ``"float32-refined"`` (or, without ``refine``, ``"float32"``) backend of
    :func:`ntk_influence.linalg.factorize`, followed by its report. Warns (:class:`PrecisionWarning`)
    when ``cond * eps32`` (the relative error of ``diag(A)``), or a solve's final residual,
    exceeds ``rtol``.

    Args:
      k_train: ``(n, n)`` kernel (float64: it gives the residuals).
      k_test: ``(n, t)`` kernel between training and test points.
      y_train: ``(n,)`` or ``(n, k)`` labels.
      y_test: ``(t,)`` or ``(t, k)`` labels.
      lam: ridge.
      refine: iterative refinement of the solves.
      rtol: requested relative accuracy.
      test_block: test columns per refined block.
      max_steps: refinement steps at most.
      kernel_name: description stored in the result.

    Returns:
      ``(InfluenceResult, PrecisionReport)``; the result's arrays are float64.
    """
    lam = check_lam(lam)
    k64 = np.asarray(k_train, np.float64)
    ytr = check_labels(y_train, k64.shape[0], "y_train")
    policy = "float32-refined" if refine else "float32"
    factor = factorize(k64, ytr, lam, backend=policy, max_refine_steps=max_steps,
                       spectrum_method="iterative")
    assert isinstance(factor, Float32Factor)
    res = influence_from_factor(factor, k_test, y_test, block_size=test_block,
                                kernel_name=f"{kernel_name} ({policy})")
    return res, precision_report(factor, rtol)


def precision_report(factor: Float32Factor, rtol: float) -> PrecisionReport:
    """How a float32 factorisation ended; warns when ``rtol`` is not met.

    Args:
      factor: a float32 factorisation after its solves.
      rtol: the requested relative accuracy.

    Returns:
      :class:`PrecisionReport`.
    """
    cond = factor.cond
    st_b, rs_b = factor.stats.get("beta", (0, 0.0))
    st_t, rs_t = factor.stats.get("test", (0, 0.0))
    diag_err = cond * float(np.finfo(np.float32).eps)
    met = diag_err <= rtol and (not factor.refine or max(rs_b, rs_t) <= rtol)
    policy = "float32-refined" if factor.refine else "float32"
    if not met:
        warnings.warn(
            f"{policy}: the requested accuracy rtol={rtol:g} cannot be met: cond(K + lam I) = "
            f"{cond:.3g}, so diag((K + lam I)^-1) and the influences carry a relative error of "
            f"about {diag_err:.2g} (solve residuals {rs_b:.2g}, {rs_t:.2g}). Use float64 "
            "(CPU/GPU), a larger lam, or a looser rtol.", PrecisionWarning, stacklevel=3)
    return PrecisionReport(policy, (st_b, st_t), (rs_b, rs_t), float(cond), diag_err,
                           float(rtol), bool(met))
