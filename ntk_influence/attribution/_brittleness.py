"""Brittleness: the smallest set of training points whose removal flips a test prediction.

For each correctly classified test point, each method proposes a set of training points whose
removal it predicts flips the sign of the prediction; retraining the finite net without the set
(:func:`~ntk_influence.training.retrain_without`) says whether it really does (dattri's
brittleness metric, here with a verification of every set).

- ``ntk_refit`` searches greedily on the exact kernel refit (:func:`greedy_flip_set`);
- an additive method (``ntk``, ``ihvp``, ``trak``) takes the shortest prefix of its ranking
  whose summed predicted output changes cross zero (:func:`additive_flip_set`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from .._validate import check_whole
from ..errors import InputError
from ..influence import InfluenceResult
from ..nets import FunctionalNet
from ..training import SolverSettings, TrainResult, retrain_without
from ._counterfactual import ADDITIVE_FLIP_METHODS, additive_flip_set, greedy_flip_set


@dataclasses.dataclass(frozen=True)
class BrittlenessResult:
    """Flip sets per method and test point, and what retraining without each set did.

    Attributes:
      test_index: ``(T,)`` the correctly classified test points searched.
      f_test: ``(T,)`` the trained net's predictions on them.
      sets: method -> list of ``T`` index arrays (``None`` where no set within ``max_size``).
      retrained: method -> ``(T,)`` the retrained net's prediction without the set (NaN where
        no set).
      refit: method -> ``(T,)`` the exact kernel refit's prediction without the set (NaN where
        no set).
      summary: method -> ``found`` (of ``of``), ``median_size`` (of the sets found),
        ``median_size_all`` (over every point searched, one without a set that retraining
        verified counting as larger than any; ``None`` when that median is past the cap),
        ``verified`` (fraction of the sets found whose retrained prediction changed sign),
        ``refit_verified`` (the same for the exact kernel refit), ``median_size_verified``,
        ``larger_than_refit`` (fraction of the points where both found a set and this
        method's is larger).
      info: settings and the retrains' summary.
    """

    test_index: np.ndarray
    f_test: np.ndarray
    sets: dict[str, list[np.ndarray | None]]
    retrained: dict[str, np.ndarray]
    refit: dict[str, np.ndarray]
    summary: dict[str, dict[str, Any]]
    info: dict[str, Any]

    def arrays(self) -> dict[str, np.ndarray]:
        """``brittleness_*`` arrays: sets as ``(T, max_size)`` indices padded with -1."""
        width = int(self.info["max_size"])
        out = {"brittleness_test_index": self.test_index, "brittleness_f_test": self.f_test}
        for name, ss in self.sets.items():
            pad = np.full((len(ss), width), -1, np.int64)
            for k, st in enumerate(ss):
                if st is not None:
                    pad[k, :st.size] = st
            out[f"brittleness_set_{name}"] = pad
            out[f"brittleness_retrained_{name}"] = self.retrained[name]
            out[f"brittleness_refit_{name}"] = self.refit[name]
        return out


def brittleness(net: FunctionalNet, full: TrainResult, res: InfluenceResult,
                scores: dict[str, np.ndarray], x_train: Any, y_train: Any, x_test: Any,
                y_test: Any, lam: float, *, test_points: int = 20, max_fraction: float = 0.2,
                margin: float = 0.05,
                methods: tuple[str, ...] = ADDITIVE_FLIP_METHODS,
                settings: SolverSettings | None = None,
                store: str | os.PathLike[str] | None = None, chunk_size: int | None = None,
                show_progress: bool = True) -> BrittlenessResult:
    """Flip sets from every method for the first correctly classified test points, verified.

    Args:
      net: the trained net's network (``net.theta0`` is ``W(0)``; retrains start there).
      full: its training run on every point (with ``x_test``).
      res: the NTK influence result (with its factor) on the same points.
      scores: method -> ``(n, t)`` additive scores.
      x_train: ``(n, d)`` training inputs.
      y_train: ``(n,)`` +1/-1 labels.
      x_test: ``(t, d)`` test inputs.
      y_test: ``(t,)`` labels.
      lam: the ridge of eq. (2).
      test_points: how many correctly classified test points (in order) to search.
      max_fraction: the largest set, as a fraction of the training points.
      margin: how far past zero each method's own prediction of the removal must land
        (:func:`greedy_flip_set`): a set that only just flips the kernel refit may not flip the
        finite net, which differs from it by ``O(1 / sqrt(width))``.
      methods: the additive methods (of ``scores``) that propose sets: by default those whose
        scores are ``(f - y)`` times a predicted output change of the *removal* (``ntk``,
        ``ihvp``, ``trak``); ``tracin`` and ``grad_dot`` have no such scale.
      settings: solver settings of the verification retrains (the full run's).
      store: folder for the resumable retraining chunks (None: nothing kept).
      chunk_size: retrains per vmapped chunk.
      show_progress: progress bar on stderr.

    Returns:
      :class:`BrittlenessResult`.
    """
    xtr, ytr = np.asarray(x_train, np.float64), np.asarray(y_train, np.float64)
    yte = np.asarray(y_test, np.float64)
    n = xtr.shape[0]
    test_points = check_whole(test_points, "test_points")
    if not 0 < max_fraction < 1:
        raise InputError(f"max_fraction must be in (0, 1), got {max_fraction!r}.")
    if not (np.isfinite(margin) and margin >= 0):
        raise InputError(f"margin must be a finite number >= 0, got {margin!r}.")
    max_size = max(1, int(max_fraction * n))
    f_net = np.asarray(full.f_test, np.float64)
    correct = np.flatnonzero(np.sign(f_net) == yte)[:test_points]
    if correct.size == 0:
        raise InputError("no test point is classified correctly; there is no prediction to flip.")
    sets: dict[str, list[np.ndarray | None]] = {
        "ntk_refit": [greedy_flip_set(res, int(j), max_size, margin=margin) for j in correct]}
    for name, sc in scores.items():
        if name not in methods:
            continue
        sets[name] = [additive_flip_set(sc[:, j], f_net[j], yte[j], max_size, margin)
                      for j in correct]
    jobs = [(name, k) for name, ss in sets.items() for k, s in enumerate(ss) if s is not None]
    retrained = {name: np.full(correct.size, np.nan) for name in sets}
    refit = {name: np.full(correct.size, np.nan) for name in sets}
    info: dict[str, Any] = {"test_points": int(correct.size), "max_size": max_size,
                            "margin": float(margin),
                            "misclassified_skipped": int(np.sum(np.sign(f_net) != yte))}
    if jobs:
        ret = retrain_without(net, xtr, ytr, np.asarray(x_test)[correct], yte[correct], lam,
                              remove=[sets[name][k] for name, k in jobs], settings=settings,
                              store=store, chunk_size=chunk_size, show_progress=show_progress,
                              full=_subset_full(full, correct))
        info["retrain"] = ret.summary()
        rows = np.arange(len(jobs))
        cols = np.array([k for _, k in jobs])
        # how close to zero the verified predictions land, against the solver's error
        info["min_abs_retrained_over_error"] = float(np.min(
            np.abs(ret.f_retrain_test[rows, cols]) / np.maximum(ret.solver_error, 1e-300)))
        for row, (name, k) in enumerate(jobs):
            retrained[name][k] = ret.f_retrain_test[row, k]
            refit[name][k] = res.f_test[correct[k]] + res.group_delta(sets[name][k])[correct[k]]
    summary = {}
    base = np.array([np.nan if s is None else s.size for s in sets["ntk_refit"]])
    for name, ss in sets.items():
        size = np.array([np.nan if s is None else s.size for s in ss])
        found = np.isfinite(size)
        flipped = np.sign(retrained[name]) != np.sign(f_net[correct])
        both = found & np.isfinite(base)
        summary[name] = {
            "found": int(found.sum()), "of": int(correct.size),
            "median_size": float(np.median(size[found])) if found.any() else None,
            "verified": float(flipped[found].mean()) if found.any() else None,
            "refit_verified": (float((np.sign(refit[name][found])
                                      != np.sign(res.f_test[correct][found])).mean())
                               if found.any() else None),
            "median_size_verified": (float(np.median(size[found & flipped]))
                                     if (found & flipped).any() else None),
            # over every point searched, a point without a set that retraining verified
            # counting as larger than any
            "median_size_all": _median_or_none(np.where(found & flipped, size, np.inf)),
            "larger_than_refit": float(np.mean(size[both] > base[both])) if both.any() else None}
    return BrittlenessResult(correct, f_net[correct], sets, retrained, refit, summary, info)


def _median_or_none(v: np.ndarray) -> float | None:
    """The median, or None when it is infinite (most points have no set within the cap)."""
    m = float(np.median(v))
    return m if np.isfinite(m) else None


def _subset_full(full: TrainResult, rows: np.ndarray) -> TrainResult:
    """The full run restricted to some test points (its predictions there)."""
    return dataclasses.replace(full, f_test=np.asarray(full.f_test)[rows])
