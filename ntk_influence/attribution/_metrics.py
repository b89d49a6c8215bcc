"""Yardsticks of data attribution: correlations, the ROC AUC, the LDS and subset helpers.

- :func:`pearson`, :func:`spearman` and :func:`agreement` (Pearson, Spearman, slope and
  relative error of predicted against actual influences) compare two flat samples of at least
  :data:`MIN_SAMPLES` values each; a constant sample has no correlation, which is returned as
  NaN (never a warning or an error);
- :func:`auc`: the area under the ROC curve, for mislabel detection by self-influence;
- :func:`linear_datamodeling_score` (LDS, as in TRAK and dattri): per test point, Spearman's
  rank correlation across subsets between predicted and actual subset losses, averaged over
  the test points; :func:`additive_predictions` gives an additive method's predicted losses;
- :func:`random_subsets`, :func:`subset_mask` and :func:`ntk_refit_outputs` (kernel ridge
  regression refit on each subset by the exact block downdate, eq. 8-9 for a group).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import scipy.stats

from .._validate import check_whole
from ..errors import InputError
from ..influence import InfluenceResult
from ..training import blas_single_thread

#: The fewest values a correlation is computed from (two points always fit a line exactly).
MIN_SAMPLES = 2


def _paired(a: Any, b: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Two flat float64 samples of the same size ``>= MIN_SAMPLES``, or an :class:`InputError`."""
    x = np.asarray(a, np.float64).ravel()
    y = np.asarray(b, np.float64).ravel()
    if x.size != y.size or x.size < MIN_SAMPLES:
        raise InputError(f"{what} needs two samples of the same size with at least {MIN_SAMPLES} "
                         f"values each, got sizes {x.size} and {y.size}.")
    return x, y


def _constant(x: np.ndarray) -> bool:
    return bool(x.min() == x.max())


def _correlation(fn: Any, x: np.ndarray, y: np.ndarray) -> float:
    """``fn(x, y)``'s statistic from scipy.stats, NaN when either sample is constant."""
    if _constant(x) or _constant(y):
        return float("nan")
    with warnings.catch_warnings():  # nearly constant samples: the value is returned as is
        warnings.simplefilter("ignore", scipy.stats.NearConstantInputWarning)
        return float(fn(x, y)[0])


def pearson(a: Any, b: Any) -> float:
    """Pearson correlation of two flat samples (``scipy.stats.pearsonr``).

    Args:
      a: first sample (flattened).
      b: second sample, same size, at least :data:`MIN_SAMPLES` values.

    Returns:
      The correlation; NaN when either sample is constant.
    """
    return _correlation(scipy.stats.pearsonr, *_paired(a, b, "pearson"))


def spearman(a: Any, b: Any) -> float:
    """Spearman's rank correlation: Pearson of the ranks, ties given their average rank.

    Args:
      a: first sample (flattened).
      b: second sample, same size, at least :data:`MIN_SAMPLES` values.

    Returns:
      The correlation (``scipy.stats.spearmanr``); NaN when either sample is constant.
    """
    return _correlation(scipy.stats.spearmanr, *_paired(a, b, "spearman"))


def agreement(predicted: Any, actual: Any) -> dict[str, float]:
    """Pearson R, Spearman rho, least-squares slope and relative error of predicted vs actual.

    Args:
      predicted: predicted influences (flattened).
      actual: actual influences, same size, at least :data:`MIN_SAMPLES` values.

    Returns:
      ``{"pearson", "spearman", "slope", "rel_error"}``; the slope regresses predicted on actual
      (1 is perfect; the IHVP's is about 0.5 on digits). Every entry that divides by the spread
      or the norm of ``actual`` is NaN when ``actual`` is constant or zero, as the correlations
      are.
    """
    p, a = _paired(predicted, actual, "agreement")
    ac = a - a.mean()
    den, norm = float(np.dot(ac, ac)), float(np.linalg.norm(a))
    return {"pearson": _correlation(scipy.stats.pearsonr, a, p),
            "spearman": _correlation(scipy.stats.spearmanr, a, p),
            "slope": float(np.dot(ac, p - p.mean()) / den) if den > 0 else float("nan"),
            "rel_error": float(np.linalg.norm(p - a) / norm) if norm > 0 else float("nan")}


def auc(scores: Any, positive: Any) -> float:
    """Area under the ROC curve: the chance a positive outranks a negative (ties count 1/2).

    Args:
      scores: ``(n,)`` scores, higher meaning more likely positive.
      positive: ``(n,)`` booleans, both classes present.

    Returns:
      The AUC in ``[0, 1]`` (``sklearn.metrics.roc_auc_score``).
    """
    from sklearn.metrics import roc_auc_score  # imported on use: about a second to import

    s = np.asarray(scores, np.float64).ravel()
    p = np.asarray(positive, bool).ravel()
    if s.size != p.size or p.all() or not p.any():
        raise InputError("auc needs scores and labels of the same size with both classes present.")
    return float(roc_auc_score(p, s))


def found_at(scores: Any, positive: Any, fraction: float = 0.1) -> float:
    """Share of the positives among the top ``fraction`` of points ranked by score.

    The mislabel-detection curve's point at ``fraction`` inspected: rank the points by score
    (highest first), inspect the first ``ceil(fraction n)`` and count the positives found, over
    all positives. Ties are broken by index (stable sort).

    Args:
      scores: ``(n,)`` scores, higher meaning more likely positive.
      positive: ``(n,)`` booleans, at least one positive.
      fraction: share of the points inspected, in ``(0, 1]``.

    Returns:
      The share of positives found, in ``[0, 1]``.
    """
    s = np.asarray(scores, np.float64).ravel()
    p = np.asarray(positive, bool).ravel()
    if s.size != p.size or not p.any():
        raise InputError("found_at needs scores and labels of the same size with a positive.")
    if not 0 < fraction <= 1:
        raise InputError(f"fraction must be in (0, 1], got {fraction!r}.")
    top = np.argsort(-s, kind="stable")[: math.ceil(fraction * s.size)]
    return float(p[top].sum() / p.sum())


def additive_predictions(scores: Any, subset_indices: Any, full_losses: Any) -> np.ndarray:
    """Predicted subset losses: the full model's loss plus the scores of the removed points.

    Args:
      scores: ``(n, t)`` scores (positive: removing raises the loss).
      subset_indices: ``(M, k)`` kept indices of each subset.
      full_losses: ``(t,)`` test losses of the model trained on every point.

    Returns:
      ``(M, t)`` predicted losses.
    """
    sc = np.asarray(scores, np.float64)
    kept = subset_mask(subset_indices, sc.shape[0])
    return np.asarray(full_losses, np.float64)[None] + (~kept).astype(np.float64) @ sc


def linear_datamodeling_score(predicted: Any, actual: Any) -> tuple[float, np.ndarray]:
    """LDS: per test point, Spearman across subsets of predicted vs actual loss; then the mean.

    Args:
      predicted: ``(M, t)`` predicted subset losses.
      actual: ``(M, t)`` losses of the nets retrained on each subset.

    Returns:
      ``(mean over test points, (t,) per test point)``; test points whose correlation is
      undefined (constant predictions) are left out of the mean.
    """
    p, a = np.asarray(predicted, np.float64), np.asarray(actual, np.float64)
    if p.shape != a.shape or p.ndim != 2:
        raise InputError(f"predicted and actual must both be (M, t), got {p.shape}, {a.shape}.")
    per = np.array([spearman(p[:, j], a[:, j]) for j in range(p.shape[1])])
    ok = np.isfinite(per)
    return (float(per[ok].mean()) if ok.any() else float("nan")), per


def random_subsets(n: int, m: int, alpha: float, seed: int = 0) -> np.ndarray:
    """``m`` random subsets of ``ceil(alpha n)`` training points, seeded (sorted kept indices).

    Args:
      n: number of training points.
      m: number of subsets.
      alpha: the kept fraction, in ``(0, 1)``.
      seed: random seed.

    Returns:
      ``(m, ceil(alpha n))`` int64 kept indices.
    """
    if not 0 < alpha < 1:
        raise InputError(f"alpha must be in (0, 1), got {alpha!r}.")
    m = check_whole(m, "the number of subsets", low=2)
    k = math.ceil(alpha * n)
    if k >= n:
        raise InputError(f"alpha={alpha} keeps all {n} points; lower it.")
    rng = np.random.default_rng(seed)
    return np.stack([np.sort(rng.choice(n, k, replace=False)) for _ in range(m)])


def subset_mask(subset_indices: Any, n: int) -> np.ndarray:
    """``(M, n)`` boolean mask of the kept points from ``(M, k)`` kept indices.

    Args:
      subset_indices: ``(M, k)`` kept indices.
      n: number of training points.

    Returns:
      ``(M, n)`` boolean, True where a point is kept.
    """
    idx = np.asarray(subset_indices)
    if idx.ndim != 2 or idx.size == 0 or idx.min() < 0 or idx.max() >= n:
        raise InputError(f"subset indices must be (M, k) integers in [0, {n}), got {idx.shape}.")
    mask = np.zeros((idx.shape[0], n), bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask


def ntk_refit_outputs(res: InfluenceResult, subset_indices: Any) -> np.ndarray:
    """Test predictions of kernel ridge regression refit on each subset alone (non-additive).

    The exact block downdate of the full factorisation: removing the set ``R`` moves the test
    predictions by ``-alpha_R^T (A_RR)^-1 beta_R`` (:meth:`InfluenceResult.group_delta`). The
    small solves run on one BLAS thread (multi-threaded OpenBLAS spins on them: 100 subsets of
    200 points took 16 s instead of 0.15 s on a busy 2-core machine).

    Args:
      res: the full-data :class:`InfluenceResult` (made with ``keep_factor=True``).
      subset_indices: ``(M, k)`` kept indices.

    Returns:
      ``(M, t)`` predictions ``f_S(x_te)``.
    """
    kept = subset_mask(subset_indices, res.n_train)
    with blas_single_thread():
        return np.stack([res.f_test + res.group_delta(np.flatnonzero(~row)) for row in kept])
