"""Regularisation and Theorem 3 (Figure 2) and influential examples (Figure 4).

**Lambda sweep.** For each ``lam`` the exact influence ``I`` and the kernel-regime IHVP estimate
``Ihat`` (eq. 13) are computed from one factorisation, and the actual relative error
``|I - Ihat| / |I|`` is averaged over all (train, test) pairs (pairs with ``I = 0`` exactly are
left out). Theorem 3 bounds it below by ``lambda_min / (lambda_min + lam)``; the remark after it
gives the upper quantity ``lambda_max / (lambda_max + lam)``. The exact explanation is the ridge
leverage ``h_i = 1 - lam A_ii``: the IHVP misses exactly the fraction ``h_i`` of term I of
Prop. 2, and ``lambda_min/(lambda_min+lam) <= h_i <= lambda_max/(lambda_max+lam)``. The pairwise
statement of Theorem 3, eq. (16), ``|I - Ihat| >= lo |I| - term II``, is checked on every pair and
the number of violations is reported (it is 0 up to rounding).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._validate import as_array
from ..errors import InputError
from ._exact import InfluenceResult

#: Default lambdas of Figure 2: ``2^-4 ... 2^4``.


def pair_error_rate(res: InfluenceResult) -> np.ndarray:
    """``|I - Ihat| / |I|`` for every pair, NaN where ``I = 0`` exactly.

    Args:
      res: an :class:`~ntk_influence.InfluenceResult`.

    Returns:
      ``(n_train, n_test)`` relative errors of the IHVP estimate.
    """
    a = np.abs(res.influence)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, np.abs(res.influence - res.ihvp) / a, np.nan)


@dataclasses.dataclass(frozen=True)
class InfluentialExamples:
    """Figure 4: the most helpful, most harmful and least influential training points.

    Attributes:
      test_index: ``(m,)`` the chosen test points.
      helpful: ``(m, k)`` training indices with the largest influence (most helpful first).
      harmful: ``(m, k)`` training indices with the most negative influence.
      uninfluential: ``(m, k)`` training indices with the smallest ``|I|``.
      helpful_value: ``(m, k)`` their influences (likewise for the others).
      harmful_value: ``(m, k)``.
      uninfluential_value: ``(m, k)``.
    """

    test_index: np.ndarray
    helpful: np.ndarray
    harmful: np.ndarray
    uninfluential: np.ndarray
    helpful_value: np.ndarray
    harmful_value: np.ndarray
    uninfluential_value: np.ndarray


def influential_examples(influence: Any, test_index: Any = None, k: int = 5) -> InfluentialExamples:
    """Most helpful, most harmful and least influential training points for chosen test points.

    Sign convention of the engine: positive influence = removing the point raises the test loss
    (helpful); negative = harmful; ``|I|`` smallest = uninfluential. Ties break by index.

    Args:
      influence: ``(n_train, n_test)`` influences or an ``InfluenceResult``.
      test_index: test points (default: all).
      k: points per kind.

    Returns:
      :class:`InfluentialExamples`.
    """
    a = as_array(getattr(influence, "influence", influence), "influence", (2,))
    n, m = a.shape
    tidx = np.arange(m) if test_index is None else np.atleast_1d(np.asarray(test_index))
    if tidx.size == 0 or not np.issubdtype(tidx.dtype, np.integer) or tidx.min() < 0 \
            or tidx.max() >= m:
        raise InputError(f"test_index must be non-empty integer indices in [0, {m}).")
    if not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= n:
        raise InputError(f"k must be an integer in [1, {n}], got {k!r}.")
    cols = a[:, tidx].T  # (m, n)
    hel = np.argsort(-cols, axis=1, kind="stable")[:, :k]
    har = np.argsort(cols, axis=1, kind="stable")[:, :k]
    uni = np.argsort(np.abs(cols), axis=1, kind="stable")[:, :k]

    def take(ix: np.ndarray) -> np.ndarray:
        return np.take_along_axis(cols, ix, axis=1)

    return InfluentialExamples(tidx.astype(np.int64), hel, har, uni, take(hel), take(har),
                               take(uni))
