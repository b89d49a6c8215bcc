"""Exact counterfactuals on the kernel refit: greedy removal sets, and additive ones to compare.

The kernel model of eq. (6) refit without a set ``R`` moves the test predictions by
``Delta_R = -a_R^T (A_RR)^-1 b_R`` (eq. 9's block downdate; ``A = (K + lam I)^-1``,
``a = A K_te``, ``b = A y``). :func:`removal_deltas` gives ``Delta_{R+c}`` for every candidate
``c`` at once through the Schur complement of ``A_RR``; the greedy searches build on it:

- :func:`greedy_flip_set`: the set whose removal flips a test prediction (brittleness);
- :func:`greedy_removal_path`: the order in which removing points lowers a validation loss
  most, with the exact loss after each removal (data cleaning).

:func:`additive_flip_set` is what an additive score proposes for the same question.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..influence import InfluenceResult
from ..training import blas_single_thread


def removal_deltas(res: InfluenceResult, removed: list[int], cols: Any) -> np.ndarray:
    """The exact change of the refit predictions when each candidate is removed with a set.

    With ``M = A_RR``, ``u_c = A_Rc`` and the Schur complement ``s_c = A_cc - u_c^T M^-1 u_c``:
    ``Delta_{R+c} = Delta_R - (a_c - u_c^T M^-1 a_R)(b_c - u_c^T M^-1 b_R) / s_c``.

    Args:
      res: the full-data :class:`~ntk_influence.influence.InfluenceResult` (with its factor).
      removed: the set ``R`` already removed (may be empty).
      cols: the test columns.

    Returns:
      ``(n, len(cols))``: row ``c`` is ``Delta_{R+c}`` (NaN on the rows of ``R``).
    """
    if res.factor is None:
        raise InputError("the exact removal search needs the factorisation; compute the "
                         "influence with keep_factor=True.")
    n = res.n_train
    a = np.asarray(res.alpha, np.float64)[:, np.asarray(cols)]
    b = np.asarray(res.beta, np.float64).reshape(n)
    diag = np.asarray(res.a_diag, np.float64)
    if removed:
        u = res.factor.a_columns(np.asarray(removed)).T  # (r, n): A[R, :]
        w = np.linalg.solve(u[:, removed], u)  # M^-1 A[R, :]
        s = diag - np.einsum("rn,rn->n", u, w)
        at, bt = a - w.T @ a[removed], b - w.T @ b[removed]
        base = -(a[removed].T @ np.linalg.solve(u[:, removed], b[removed]))
    else:
        s, at, bt, base = diag, a, b, np.zeros(a.shape[1])
    s = np.array(s)
    s[removed] = 1.0  # zero for the removed rows: they are set to NaN below
    out = base[None] - at * (bt / s)[:, None]
    out[removed] = np.nan
    return out


ADDITIVE_FLIP_METHODS = ("ntk", "ihvp", "trak")


def greedy_flip_set(res: InfluenceResult, test_index: int, max_size: int, *,
                    margin: float = 0.0, prune: bool = True) -> np.ndarray | None:
    """The greedy exact-refit set whose removal flips the kernel model's prediction on a test point.

    Each step removes the candidate ``c`` that moves the refit prediction furthest towards the
    other sign, given the set ``R`` removed so far (:func:`removal_deltas`: exact, so the
    interactions between removed points count).

    Args:
      res: the full-data :class:`~ntk_influence.influence.InfluenceResult` (with its factor).
      test_index: the test point.
      max_size: the largest set searched.

    Once the prediction flips, every point but the last is put back in turn (earliest first)
    when the flip holds without it, by the exact block refit.

    Returns:
      ``(k,)`` indices in the order removed, or ``None`` when no set of at most ``max_size``
      points flips the prediction.
    """
    f0 = float(res.f_test[test_index])
    sign = 1.0 if f0 >= 0 else -1.0
    removed: list[int] = []
    with blas_single_thread():
        for _ in range(int(max_size)):
            after = removal_deltas(res, removed, [test_index])[:, 0]
            after[removed] = np.inf * sign  # never chosen again
            c = int(np.argmin(sign * after))
            removed.append(c)
            if sign * (f0 + after[c]) < -margin:
                return (_prune(res, test_index, removed, sign, margin) if prune
                        else np.asarray(removed, np.int64))
    return None


def _prune(res: InfluenceResult, test_index: int, removed: list[int], sign: float,
           margin: float) -> np.ndarray:
    """Put back, one at a time (earliest first), every point the flip does not need (exact)."""
    keep = list(removed)
    for c in removed[:-1]:
        trial = [i for i in keep if i != c]
        if sign * (res.f_test[test_index] + res.group_delta(trial)[test_index]) < -margin:
            keep = trial
    return np.asarray(keep, np.int64)


def additive_flip_set(scores: np.ndarray, f_test: float, y_test: float, max_size: int,
                      margin: float = 0.0) -> np.ndarray | None:
    """The shortest prefix of an additive ranking whose summed predicted change flips the sign.

    Args:
      scores: ``(n,)`` loss-change scores of one test point (this library's sign).
      f_test: the trained net's prediction on it.
      y_test: its label.
      max_size: the largest set.
      margin: how far past zero the summed prediction must land (as for
        :func:`greedy_flip_set`).

    Returns:
      ``(k,)`` indices, or ``None`` when no prefix of at most ``max_size`` points flips it.
    """
    r = float(f_test) - float(y_test)
    if r == 0:
        return None
    change = np.asarray(scores, np.float64) / r  # predicted output change of each removal
    sign = 1.0 if f_test >= 0 else -1.0
    order = np.argsort(sign * change, kind="stable")[: int(max_size)]
    path = f_test + np.cumsum(change[order])
    hit = np.flatnonzero(sign * path < -margin)
    return None if hit.size == 0 else order[: hit[0] + 1].astype(np.int64)




def greedy_removal_path(res: InfluenceResult, y_val: Any, max_size: int, *,
                        fit: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The order in which removing training points lowers a validation loss most, exactly.

    Each step removes the point whose removal, together with those removed before it, gives the
    smallest mean loss ``1/2 (f_R - y)^2`` of the kernel refit on the ``fit`` validation points
    (:func:`removal_deltas`), so a point whose harm is shared with another (two copies of one
    mislabelled digit) is not counted twice. The loss on the other validation points along the
    same path says where removing more stops helping (the path itself always lowers the loss it
    is fitted to).

    Args:
      res: the :class:`~ntk_influence.influence.InfluenceResult` with the validation points as
        its test points (and its factor).
      y_val: ``(V,)`` validation labels.
      max_size: steps.
      fit: indices of the validation points the path is fitted to (default: all).

    Returns:
      ``(order, fit_losses, held_losses)``: ``(max_size,)`` indices in the order removed, and
      the refit's mean loss on the ``fit`` points and on the others (NaN when none) after
      removing the first ``k``, ``(max_size + 1,)`` each.
    """
    f = np.asarray(res.f_test, np.float64)
    y = np.asarray(y_val, np.float64)
    cols = np.arange(f.size)
    on = np.zeros(f.size, bool)
    on[cols if fit is None else np.asarray(fit)] = True

    def losses(pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sq = 0.5 * (pred - y) ** 2
        held = sq[..., ~on].mean(axis=-1) if (~on).any() else np.full(sq.shape[:-1], np.nan)
        return sq[..., on].mean(axis=-1), held

    removed: list[int] = []
    first = losses(f)
    fit_l, held_l = [float(first[0])], [float(first[1])]
    with blas_single_thread():
        for _ in range(int(max_size)):
            lf, lh = losses(f[None] + removal_deltas(res, removed, cols))
            lf[removed] = np.inf
            c = int(np.argmin(lf))
            removed.append(c)
            fit_l.append(float(lf[c]))
            held_l.append(float(lh[c]))
    return np.asarray(removed, np.int64), np.asarray(fit_l), np.asarray(held_l)
