"""Results of training and retraining on eq. (2), and the actual influence of eq. (7).

:class:`TrainResult` holds a trained net and how its solver stopped
(:func:`~ntk_influence.training.train`); :class:`RetrainResult` the test predictions of many
retrains without points or groups, with their solver errors
(:func:`~ntk_influence.training.retrain_without`); :func:`actual_influence` turns prediction
changes into eq. (7)'s loss changes without cancellation.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax
import numpy as np

from ..errors import InputError, NotConvergedWarning
from ..linalg import loss_change
from ._settings import SolverSettings


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """A trained net and how the training ended.

    Attributes:
      theta: ``(P,)`` final flat parameters.
      f_train: ``(n_train,)`` predictions on the training points.
      f_test: ``(n_test,)`` predictions on the test points (empty if none).
      loss: final value of eq. (2) (weighted).
      grad_norm: final ``||grad L||``.
      rel_grad_norm: ``grad_norm`` divided by the gradient norm at the start.
      f_change: largest change of any train/test prediction over the last ``window`` steps.
      f_change_test: the same over the test points only.
      iterations: steps taken.
      converged: whether the returned point is stationary: ``ridge_rel_grad_norm <=
        settings.g_tol`` (default 1e-8), whatever rule stopped the run. ReLU nets stopped by
        the prediction rule are normally not converged in this sense (their minimiser sits on
        kinks); ``settled`` says whether their rule was met.
      stalled: the GN line search found no decrease, or annealed GD shrank its step below
        ``2^-30 eta`` (stuck on a kink); the run stopped there and is not settled.
      evaluations: loss evaluations (GN line-search trials, or GD steps).
      method: ``"gn"`` or ``"gd"``.
      step_size: GD step used (NaN for GN).
      final_step: the step in use at the end. GN: the last accepted line-search step ``t``
        (``1`` is the full Gauss-Newton step). A stop with ``t << 1`` means the iterate is
        pinned at ReLU kinks: every direction crosses a kink where the loss rises, the Armijo
        step shrinks geometrically, and the ``f_change`` rule is met by shrinking steps while
        ``rel_grad_norm`` stays put; the predictions are then determined only up to where such
        a solver stalls (``benchmarks/bench_floor.py`` measures how far). GD: ``eta``, or the
        smaller step annealing left.
      lam: the ridge.
      settings: the :class:`SolverSettings` used.
      seconds: wall time.
      ridge_rel_grad_norm: the final gradient relative to the ridge term,
        ``||grad L|| / max(||lam (theta - theta0)||, tiny)`` with ``tiny`` the smallest normal
        float64, computed in float64 at the returned ``theta`` (one extra gradient of eq. (2)).
        At a stationary point the data term ``J^T D (f - y)`` cancels the ridge term
        ``lam (theta - theta0)``, so this scale-free ratio says how far from stationary the
        returned point is (``converged`` compares it with ``g_tol``); it is huge when
        ``lam = 0`` or ``theta = theta0``. NaN where it was not computed.
      settled: whether the prediction-change rule was met (``f_change <= f_tol`` without a
        stall): the stopping rule of ``stop="predictions"`` runs, reported for every run.
    """

    theta: jax.Array
    f_train: np.ndarray
    f_test: np.ndarray
    loss: float
    grad_norm: float
    rel_grad_norm: float
    f_change: float
    f_change_test: float
    iterations: int
    converged: bool
    stalled: bool
    evaluations: int
    method: str
    step_size: float
    final_step: float
    lam: float
    settings: SolverSettings
    seconds: float
    ridge_rel_grad_norm: float = float("nan")
    settled: bool = False

    def summary(self) -> dict[str, Any]:
        """The scalar fields as a JSON-ready dict."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("theta", "f_train", "f_test", "settings")}
        out["settings"] = dataclasses.asdict(self.settings)
        return out


@dataclasses.dataclass(frozen=True)
class RetrainResult:
    """Retraining without sets of training points: the actual influence of eq. (7).

    Attributes:
      removed: ``(k, n)`` boolean, row ``j`` marks the points retrain ``j`` left out.
      f_test: ``(t,)`` predictions of the net trained on all points.
      y_test: ``(t,)`` test labels.
      f_retrain_test: ``(k, t)`` predictions of each retrained net.
      delta: ``(k, t)`` ``f^(S)(x_te) - f(x_te)``.
      influence: ``(k, t)`` ``I_nn = Delta (f - y_te) + Delta^2 / 2`` (eq. 7): the loss change
        when the set is removed.
      solver_error: ``(k,)`` each retrain's largest test-prediction change over its last steps.
      full_solver_error: the same for the full training run.
      grad_norm: ``(k,)`` final gradient norms of the retrains.
      iterations: ``(k,)`` steps of each retrain.
      converged: ``(k,)`` whether each retrain ended at a stationary point
        (``ridge_rel_grad_norm <= settings.g_tol``), whatever rule stopped it.
      warm_start: True if retrains started from the trained W, False if from ``W(0)``.
      full: the :class:`TrainResult` of the full run (retrained to the tightest tolerance any
        retrain got when the relative rule refined some).
      settings: the :class:`SolverSettings`.
      chunk_size: retrains per vmapped chunk.
      seconds: wall time of the retraining (this call; resumed chunks not counted).
      f_tol: ``(k,)`` the tolerance each retrain was stopped at (``settings.f_tol``, or
        ``rel_tol`` times the predicted ``|Delta|`` when a relative rule was used).
      rel_tol: the relative stopping rule (``None`` when every retrain used ``settings.f_tol``).
      refined: ``(k,)`` retrains rerun with a tolerance from the measured ``|Delta|`` because the
        predicted one was too large (relative rule only); their ``f_tol`` is the rerun's.
      settled: ``(k,)`` whether each retrain met the prediction-change rule (its ``f_tol``).
      ridge_rel_grad_norm: ``(k,)`` each retrain's final ``||grad L|| / ||lam (theta -
        theta0)||`` for its own weighted eq. (2), in the net's dtype.
      seeds: ``(k,)`` the initialisation seed of each retrain under the fresh-seed protocol
        (its own ``W(0)``), or ``None`` when every retrain started from the full run's.
      rows_fitted: training rows each retrain's solve fitted: its kept points when every set
        has one size (gathered), else ``None`` (all ``n`` rows, the removed ones weighted 0).
    """

    removed: np.ndarray
    f_test: np.ndarray
    y_test: np.ndarray
    f_retrain_test: np.ndarray
    delta: np.ndarray
    influence: np.ndarray
    solver_error: np.ndarray
    full_solver_error: float
    grad_norm: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    warm_start: bool
    full: TrainResult
    settings: SolverSettings
    chunk_size: int
    seconds: float
    f_tol: np.ndarray | None = None
    rel_tol: float | None = None
    refined: np.ndarray | None = None
    settled: np.ndarray | None = None
    ridge_rel_grad_norm: np.ndarray | None = None
    seeds: np.ndarray | None = None
    rows_fitted: int | None = None

    def __post_init__(self) -> None:
        k = np.shape(self.removed)[0]
        if self.f_tol is None:  # absolute rule: every retrain used settings.f_tol
            object.__setattr__(self, "f_tol", np.full(k, self.settings.f_tol))
        if self.refined is None:
            object.__setattr__(self, "refined", np.zeros(k, bool))
        if self.settled is None:
            object.__setattr__(self, "settled", np.zeros(k, bool))
        if self.ridge_rel_grad_norm is None:
            object.__setattr__(self, "ridge_rel_grad_norm", np.full(k, np.nan))

    @classmethod
    def from_outputs(cls, removed: np.ndarray, full: TrainResult, out: dict[str, np.ndarray],
                     y_test: Any, settings: SolverSettings, *, warm_start: bool,
                     chunk_size: int, seconds: float, **extra: Any) -> RetrainResult:
        """Build the result from the per-retrain solver outputs (eq. 7).

        Warns (:class:`NotConvergedWarning`) when any retrain did not meet its stopping rule
        (its ``f_tol`` for ``stop="predictions"``, ``g_tol`` for ``stop="gradient"``).

        Args:
          removed: ``(k, n)`` removal masks.
          full: the full-data training run.
          out: per-retrain arrays ``f_test``, ``f_change_test``, ``grad_norm``, ``ridge_norm``
            (``||lam (theta - theta0)||``), ``iterations``, ``settled``, in the order of
            ``removed``.
          y_test: test labels.
          settings: the solver settings shared by every run.
          warm_start: whether the retrains started from the trained weights.
          chunk_size: retrains per vmapped chunk.
          seconds: wall time of the retraining.
          **extra: further fields (``f_tol``, ``rel_tol``, ``refined``, ``seeds``,
            ``rows_fitted``).

        Returns:
          :class:`RetrainResult`.
        """
        f_full = np.asarray(full.f_test, np.float64)
        f_new = np.asarray(out["f_test"], np.float64)
        delta = f_new - f_full[None]
        y_np = np.asarray(y_test, np.float64)
        gn = np.asarray(out["grad_norm"], np.float64)
        ratio = gn / np.maximum(np.asarray(out["ridge_norm"], np.float64),
                                np.finfo(np.float64).tiny)
        res = cls(
            removed=np.asarray(removed, bool), f_test=f_full, y_test=y_np, f_retrain_test=f_new,
            delta=delta, influence=actual_influence(delta, f_full, y_np),
            solver_error=np.asarray(out["f_change_test"], np.float64),
            full_solver_error=float(full.f_change_test),
            grad_norm=gn, iterations=np.asarray(out["iterations"]),
            converged=ratio <= settings.g_tol, warm_start=bool(warm_start),
            full=full, settings=settings, chunk_size=chunk_size, seconds=seconds,
            settled=np.asarray(out["settled"]).astype(bool), ridge_rel_grad_norm=ratio, **extra)
        if settings.stop == "predictions" and not res.settled.all():
            warnings.warn(f"{int((~res.settled).sum())} of {res.settled.size} retrains did "
                          "not reach their f_tol; their solver_error is recorded in the result.",
                          NotConvergedWarning, stacklevel=3)
        elif settings.stop == "gradient" and not res.converged.all():
            warnings.warn(f"{int((~res.converged).sum())} of {res.converged.size} retrains "
                          f"ended above g_tol={settings.g_tol:g} (largest ridge-relative "
                          f"gradient {float(ratio.max()):.3g}): not stationary; raise max_steps "
                          "or newton_cg.", NotConvergedWarning, stacklevel=3)
        return res

    @property
    def group_size(self) -> np.ndarray:
        """``(k,)`` number of points each retrain removed."""
        return self.removed.sum(axis=1)

    @property
    def is_leave_one_out(self) -> bool:
        """Whether every retrain removed exactly one point."""
        return bool(np.all(self.group_size == 1))

    @property
    def train_index(self) -> np.ndarray:
        """``(k,)`` the point each leave-one-out retrain removed.

        Raises:
          InputError: some retrain removed more or fewer than one point (use ``removed``).
        """
        if not self.is_leave_one_out:
            raise InputError("these retrains removed groups of points; their sets are in "
                             "`removed` ((k, n) boolean), not a train_index.")
        return np.argmax(self.removed, axis=1)

    @property
    def f_loo_test(self) -> np.ndarray:
        """``(k, t)`` predictions of each retrained net (alias of ``f_retrain_test``)."""
        return self.f_retrain_test

    @property
    def error_ratio(self) -> np.ndarray:
        """``(k, t)`` solver error bound ``(err_i + err_full) / |Delta|``: must be far below 1."""
        err = self.solver_error[:, None] + self.full_solver_error
        return err / np.maximum(np.abs(self.delta), np.finfo(float).tiny)

    def flagged(self, max_ratio: float = 0.05) -> np.ndarray:
        """``(k,)`` retrains whose error bound exceeds ``max_ratio`` of ``|Delta|`` on any test.

        Args:
          max_ratio: the largest acceptable ``(err_i + err_full) / |Delta|``.

        Returns:
          Boolean mask over the retrains.
        """
        return (self.error_ratio > max_ratio).any(axis=1)

    def labels(self) -> np.ndarray:
        """``(k,)`` the removed point of each retrain (leave-one-out), else the retrain number."""
        return self.train_index if self.is_leave_one_out else np.arange(self.removed.shape[0])

    def summary(self) -> dict[str, Any]:
        """Scalars describing the run, JSON-ready."""
        r = self.error_ratio
        sizes = self.group_size
        return {
            "n_retrains": int(self.removed.shape[0]), "warm_start": self.warm_start,
            "start": ("trained W (warm start)" if self.warm_start else
                      "same W(0)" if self.seeds is None else "fresh W(0) per retrain"),
            "seed_protocol": "fixed" if self.seeds is None else "fresh",
            "min_group_size": int(sizes.min()), "max_group_size": int(sizes.max()),
            "rows_fitted": (int(self.removed.shape[1]) if self.rows_fitted is None
                            else self.rows_fitted),
            "method": self.settings.method, "f_tol": self.settings.f_tol,
            "chunk_size": self.chunk_size, "seconds": self.seconds,
            "stop": self.settings.stop, "g_tol": self.settings.g_tol,
            "all_converged": bool(self.converged.all()),
            "all_settled": bool(self.settled.all()),
            "max_ridge_rel_grad_norm": float(np.max(self.ridge_rel_grad_norm)),
            "max_solver_error": float(self.solver_error.max()),
            "full_solver_error": self.full_solver_error,
            "full_f_tol": float(self.full.settings.f_tol),
            "min_abs_delta": float(np.abs(self.delta).min()),
            "median_abs_delta": float(np.median(np.abs(self.delta))),
            "max_error_ratio": float(r.max()), "median_error_ratio": float(np.median(r)),
            "rel_tol": self.rel_tol, "min_f_tol": float(self.f_tol.min()),
            "n_refined": int(self.refined.sum()),
            "max_f_tol": float(self.f_tol.max()),
            "n_flagged_5pct": int(self.flagged(0.05).sum()),
            "flagged_5pct": [int(i) for i in self.labels()[self.flagged(0.05)]],
            "total_iterations": int(self.iterations.sum()),
            "max_iterations": int(self.iterations.max()),
            "max_grad_norm": float(self.grad_norm.max()),
        }


def actual_influence(delta: Any, f_test: Any, y_test: Any) -> np.ndarray:
    """Eq. (7) from the prediction change: ``Delta (f - y) + Delta^2 / 2``.

    Args:
      delta: ``(..., t)`` ``f^(S)(x_te) - f(x_te)``.
      f_test: ``(t,)`` predictions of the full net.
      y_test: ``(t,)`` labels.

    Returns:
      The influences, same shape as ``delta`` (float64).
    """
    d = np.asarray(delta, np.float64)
    return loss_change(d, np.asarray(f_test, np.float64) - np.asarray(y_test, np.float64))
