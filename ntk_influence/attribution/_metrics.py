"""The field's yardsticks for data attribution, with the NTK's exact refit among the methods.

Methods, each an ``(n_train, n_test)`` score in this library's sign (positive: removing the
training point raises the test loss ``1/2 (f - y)^2``), all on the same trained net of eq. (1):

- ``ntk``: exact NTK leave-one-out influence, eq. (8)-(9), analytic kernel of eq. (4);
- ``ntk_f0``: the same with the net's initial output ``f_0`` (KRR on ``y - f_0``); not
  applicable with the symmetric initialisation (``f_0 = 0``);
- ``ihvp``: the exact first-order influence on the trained net, eq. (12), through the eNTK
  (``H = J^T J + lam I`` exactly for eq. 1): ``r_i r_te [(K + lam I)^-1 K_te]_i``;
- ``trak``: TRAK with projected output gradients, averaged over nets (:mod:`ntk_influence.trak`);
- ``tracin``: TracIn-CP on a first-order training path (:mod:`ntk_influence.tracin`);
- ``grad_dot``: gradient similarity at the trained weights.

A subset ``S`` is predicted additively, full loss plus the scores of the removed points, for every
method, and by ``ntk_refit``: kernel ridge regression on ``S`` alone (the exact block downdate of
the factorisation), which is not additive. Yardsticks (definitions as in TRAK and dattri):

- LDS: per test point, Spearman's rank correlation across subsets between predicted and actual
  subset loss, averaged over test points (dattri's ``lds`` sums scores over the *kept* points,
  which is ours with the sign flipped, since the sum over all points is a constant);
- leave-one-out correlation: Pearson and Spearman between predicted and retrained LOO loss
  changes, pooled over the removed points and every test point;
- mislabel detection AUC: rank training points by self-influence after flipping labels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.stats

from ..errors import InputError
from ..influence import InfluenceResult
from ..training import (
    blas_single_thread,
)


def pearson(a: Any, b: Any) -> float:
    """Pearson correlation of two flat samples (NaN when either is constant).

    Args:
      a: first sample.
      b: second sample, same size.

    Returns:
      The correlation.
    """
    x = np.asarray(a, np.float64).ravel()
    y = np.asarray(b, np.float64).ravel()
    if x.size != y.size or x.size < 2:
        raise InputError(f"pearson needs two samples of the same size >= 2, got {x.size}, "
                         f"{y.size}.")
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / den if den > 0 else float("nan")


def spearman(a: Any, b: Any) -> float:
    """Spearman's rank correlation: Pearson of the ranks, ties given their average rank.

    Args:
      a: first sample.
      b: second sample, same size.

    Returns:
      The correlation (NaN when either sample is constant).
    """
    return pearson(scipy.stats.rankdata(np.ravel(a)), scipy.stats.rankdata(np.ravel(b)))


def auc(scores: Any, positive: Any) -> float:
    """Area under the ROC curve: the chance a positive outranks a negative (ties count 1/2).

    Args:
      scores: ``(n,)`` scores, higher meaning more likely positive.
      positive: ``(n,)`` booleans.

    Returns:
      The AUC in ``[0, 1]``.
    """
    s = np.asarray(scores, np.float64).ravel()
    p = np.asarray(positive, bool).ravel()
    n_pos, n_neg = int(p.sum()), int((~p).sum())
    if s.size != p.size or n_pos == 0 or n_neg == 0:
        raise InputError("auc needs scores and labels of the same size with both classes present.")
    ranks = scipy.stats.rankdata(s)  # Mann-Whitney U from average ranks
    return float((ranks[p].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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
    if isinstance(m, bool) or int(m) != m or m < 2:
        raise InputError(f"the number of subsets must be an integer >= 2, got {m!r}.")
    k = math.ceil(alpha * n)
    if k >= n:
        raise InputError(f"alpha={alpha} keeps all {n} points; lower it.")
    rng = np.random.default_rng(seed)
    return np.stack([np.sort(rng.choice(n, k, replace=False)) for _ in range(int(m))])


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


def agreement(predicted: Any, actual: Any) -> dict[str, float]:
    """Pearson R, Spearman rho, least-squares slope and relative error of predicted vs actual.

    Args:
      predicted: predicted influences.
      actual: actual influences (same shape).

    Returns:
      ``{"pearson", "spearman", "slope", "rel_error"}``; the slope regresses predicted on actual
      (1 is perfect; the IHVP's is about 0.5 on digits, DESIGN item 6).
    """
    from scipy import stats

    p = np.asarray(predicted, np.float64).ravel()
    a = np.asarray(actual, np.float64).ravel()
    if p.shape != a.shape or p.size < 3:
        raise InputError(f"need matching arrays of >= 3 values, got {p.shape} and {a.shape}.")
    ac = a - a.mean()
    return {"pearson": float(stats.pearsonr(a, p)[0]), "spearman": float(stats.spearmanr(a, p)[0]),
            "slope": float(np.dot(ac, p - p.mean()) / np.dot(ac, ac)),
            "rel_error": float(np.linalg.norm(p - a) / np.linalg.norm(a))}
