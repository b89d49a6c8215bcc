"""Diagnostics of an :class:`InfluenceResult`: the IHVP's error rate and Figure 4's rankings.

:func:`pair_error_rate` is the one definition of the IHVP estimate's relative error
``|I - Ihat| / |I|`` per (train, test) pair (eq. 13 against eq. 8-9): Theorem 3 bounds it, the
lambda sweep and the density analysis of Theorem 4 reduce it over pairs, and
:attr:`InfluenceResult.ihvp_error_rate` returns it. :func:`influential_examples` ranks the most
helpful, most harmful and least influential training points of chosen test points (Figure 4).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._validate import as_array
from ..errors import InputError


def pair_error_rate(res: Any, ihvp: Any = None) -> np.ndarray:
    """Relative error ``|I - Ihat| / |I|`` of the IHVP estimate for every pair, NaN where ``I = 0``.

    A pair whose exact influence is 0 has no relative error: the ratio is undefined (0/0 when
    the estimate is 0 too, and no finite number otherwise), so it is NaN rather than ``inf``.
    NaN drops out of ``np.nanmean``/``np.nanmedian`` and of ``np.isfinite`` masks, whereas one
    ``inf`` would turn every mean over the pairs into ``inf``. Pairs with ``I = 0`` exactly are
    therefore left out of every average of the rate in the library.

    Args:
      res: an :class:`~ntk_influence.influence.InfluenceResult` (its ``influence`` and
        ``ihvp``), or the ``(n_train, n_test)`` exact influences ``I`` when ``ihvp`` is given.
      ihvp: ``(n_train, n_test)`` IHVP estimates ``Ihat`` (eq. 13), with ``res`` the influences.

    Returns:
      ``(n_train, n_test)`` relative errors, in the dtype of the influences.
    """
    infl = np.asarray(res.influence if ihvp is None else res)
    est = np.asarray(res.ihvp if ihvp is None else ihvp)
    a = np.abs(infl)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, np.abs(infl - est) / a, np.nan)


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
