"""The lambda sweep of Figure 2: the IHVP's error against Theorem 3's bounds for each ridge.

Holds :data:`DEFAULT_LAMS`, :class:`LambdaSweep`, :func:`sweep_point` (one ridge),
:func:`lambda_sweep` (the driver, optionally resumable through a
:class:`~ntk_influence.io.ResultStore`) and :func:`collect_sweep` (assembles the per-ridge rows).

For each ``lam`` the exact influence ``I`` and the kernel-regime IHVP estimate ``Ihat`` (eq. 13)
are computed from one factorisation, and the actual relative error ``|I - Ihat| / |I|`` is
averaged over all (train, test) pairs (pairs with ``I = 0`` exactly are left out). Theorem 3
bounds it below by ``lambda_min / (lambda_min + lam)``; the remark after it gives the upper
quantity ``lambda_max / (lambda_max + lam)``. The exact explanation is the ridge leverage
``h_i = 1 - lam A_ii``: the IHVP misses exactly the fraction ``h_i`` of term I of Prop. 2, and
``lambda_min/(lambda_min+lam) <= h_i <= lambda_max/(lambda_max+lam)``. The pairwise statement of
Theorem 3, eq. (16), ``|I - Ihat| >= lo |I| - term II``, is checked on every pair and the number
of violations is reported (it is 0 up to rounding).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._validate import as_array, check_lam
from ..errors import InputError
from ..influence import influence_from_factor, pair_error_rate
from ..io import ResultStore
from ..io import progress as _progress
from ..linalg import factorize

#: Default lambdas of Figure 2: ``2^-4 ... 2^4``.
DEFAULT_LAMS = tuple(2.0 ** np.arange(-4, 5))


@dataclasses.dataclass(frozen=True)
class LambdaSweep:
    """Figure 2: IHVP relative error against Theorem 3's bounds, one entry per ``lam``.

    Attributes:
      lams: ``(L,)`` ridges.
      mean_error_rate: ``(L,)`` mean over pairs of ``|I - Ihat| / |I|``.
      median_error_rate: ``(L,)`` median over pairs.
      lower: ``(L,)`` ``lambda_min / (lambda_min + lam)`` (Theorem 3).
      upper: ``(L,)`` ``lambda_max / (lambda_max + lam)``.
      leverage: ``(L, n)`` ridge leverage ``h_i`` (term I's exact relative error).
      mean_leverage: ``(L,)`` mean of ``h_i``.
      bound_violations: ``(L,)`` pairs with ``|I - Ihat| < lo |I| - term II`` beyond rounding.
      bound_min_slack: ``(L,)`` least ``|I - Ihat| - (lo |I| - term II)``, relative to ``max |I|``.
      leverage_in_bounds: ``(L,)`` whether every ``h_i`` lies in ``[lower, upper]``.
      lambda_min: least eigenvalue of ``K``.
      lambda_max: largest eigenvalue of ``K``.
      n_pairs: ``(L,)`` pairs averaged (``I != 0``).
      net_error_rate: ``(L,)`` the finite net's IHVP relative error when a hook was given, else
        None.
    """

    lams: np.ndarray
    mean_error_rate: np.ndarray
    median_error_rate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    leverage: np.ndarray
    mean_leverage: np.ndarray
    bound_violations: np.ndarray
    bound_min_slack: np.ndarray
    leverage_in_bounds: np.ndarray
    lambda_min: float
    lambda_max: float
    n_pairs: np.ndarray
    net_error_rate: np.ndarray | None = None


def sweep_point(k: np.ndarray, kt: np.ndarray, y: Any, yt: Any, lam: float) -> dict[str, Any]:
    """One ``lam`` of the sweep: error rates, bounds, leverage and the eq. (16) check.

    Args:
      k: ``(n, n)`` training kernel.
      kt: ``(n, n_test)`` test kernel.
      y: training labels.
      yt: test labels.
      lam: ridge ``> 0``.

    Returns:
      A dict of scalars and the leverage array (the fields of :class:`LambdaSweep`).
    """
    factor = factorize(k, y, lam, spectrum_method="exact")
    res = influence_from_factor(factor, kt, yt)
    rate = pair_error_rate(res)
    lo, up = res.theorem3_lower, res.theorem3_upper
    scale = max(float(np.abs(res.influence).max()), 1e-300)
    slack = (res.ihvp_error - res.theorem3_bound) / scale
    tol = 1e-9
    h = res.leverage
    return {"mean": float(np.nanmean(rate)), "median": float(np.nanmedian(rate)), "lower": lo,
            "upper": up, "leverage": np.asarray(h), "violations": int(np.sum(slack < -tol)),
            "slack": float(slack.min()),
            "in_bounds": bool(np.all(h >= lo - tol) and np.all(h <= up + tol)),
            "lambda_min": res.lambda_min, "lambda_max": res.lambda_max,
            "n_pairs": int(np.sum(np.isfinite(rate)))}


def lambda_sweep(k_train: Any, k_test: Any, y_train: Any, y_test: Any,
                 lams: Sequence[float] | None = None, *,
                 net_error: Callable[[float], float] | None = None,
                 show_progress: bool = False, store: ResultStore | None = None) -> LambdaSweep:
    """Figure 2: the IHVP's mean relative error for each ``lam`` against Theorem 3's bounds.

    Theorem 3 / eq. (16); the leverage ``h_i`` is the exact per-point explanation.

    Args:
      k_train: ``(n, n)`` kernel on the training points.
      k_test: ``(n, n_test)`` kernel between training and test points.
      y_train: training labels.
      y_test: test labels.
      lams: ridges (default ``2^-4 ... 2^4``); each must be ``> 0``.
      net_error: optional hook ``lam -> mean relative error`` of the IHVP on a finite net at that
        ``lam`` (for the "finite net" curve of Figure 2); stored in ``net_error_rate``.
      show_progress: progress bar over ``lam``.
      store: optional store of finished ridges (key: the ridge's position in ``lams``, items as
        :func:`sweep_point` returns them): finished ridges are loaded instead of computed, new
        ones saved as they finish. Its ``meta`` must fix the kernels, labels and ``lams``.

    Returns:
      :class:`LambdaSweep`.
    """
    lam_list = [check_lam(v) for v in (DEFAULT_LAMS if lams is None else lams)]
    if not lam_list:
        raise InputError("lams is empty; pass at least one ridge, e.g. [0.0625, 1, 16].")
    if min(lam_list) <= 0:
        raise InputError("every lam in the sweep must be > 0 (the IHVP error rate is 1 at lam=0).")
    k = as_array(k_train, "k_train", (2,))
    kt = as_array(k_test, "k_test", (2,))
    rows = []
    for i, lam in enumerate(_progress(lam_list, total=len(lam_list), desc="lambda sweep",
                                      enabled=show_progress)):
        if store is not None and store.done(i):
            z = store.load(i)
            rows.append({key: (z[key] if key == "leverage" else z[key].item()) for key in z})
            continue
        rows.append(sweep_point(k, kt, y_train, y_test, lam))
        if store is not None:
            store.save(i, **{key: np.asarray(v) for key, v in rows[-1].items()})
    net = None if net_error is None else np.asarray([float(net_error(v)) for v in lam_list])
    return collect_sweep(lam_list, rows, net)


def collect_sweep(lams: Sequence[float], rows: Sequence[dict[str, Any]],
                  net: np.ndarray | None = None) -> LambdaSweep:
    """Assemble :class:`LambdaSweep` from the per-``lam`` dicts of :func:`sweep_point`.

    Args:
      lams: the ridges.
      rows: one :func:`sweep_point` dict per ridge.
      net: optional finite-net error rates.

    Returns:
      :class:`LambdaSweep`.
    """
    def col(key: str) -> np.ndarray:
        return np.asarray([r[key] for r in rows])

    lev = np.stack([np.asarray(r["leverage"]) for r in rows])
    return LambdaSweep(np.asarray(lams, float), col("mean"), col("median"), col("lower"),
                       col("upper"), lev, lev.mean(axis=1), col("violations"), col("slack"),
                       col("in_bounds"), float(rows[0]["lambda_min"]),
                       float(rows[0]["lambda_max"]), col("n_pairs"), net)
