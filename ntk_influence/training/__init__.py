"""Training a finite net on eq. (2), retraining it without points (eq. 7), and the chunk runner.

- :mod:`._train`: :func:`train` (damped Gauss-Newton, GD or SGD until the predictions settle),
  :func:`check_xy` and :func:`ridge_relative_grad_norm` (the final stationarity measure).
- :mod:`._settings`: :class:`SolverSettings`, :func:`objective` (eq. 2 for a net) and
  :func:`blas_single_thread`.
- :mod:`._gauss_newton`: the damped Gauss-Newton loop and the function-space stopping rule.
- :mod:`._first_order`: the GD/SGD loops and their step size (:func:`gd_step_size`,
  :func:`estimate_lambda_max`).
- :mod:`._results`: :class:`TrainResult`, :class:`RetrainResult` and :func:`actual_influence`.
- :mod:`._retrain`: retraining without points or groups (:func:`retrain_without`,
  :func:`loo_retrain`, :func:`removal_masks`, :func:`plan_chunk_size`,
  :func:`retrain_tolerances`).
- :mod:`._chunks`: the resumable, interruptible chunk runner (:func:`map_chunks`,
  :class:`ChunkMapResult`, :func:`call_interruptibly`, :func:`request_interrupt`,
  :func:`clear_interrupt`).
"""

from ._chunks import ChunkMapResult, call_interruptibly, clear_interrupt, map_chunks, request_interrupt
from ._first_order import estimate_lambda_max, gd_step_size
from ._results import RetrainResult, TrainResult, actual_influence
from ._retrain import loo_retrain, plan_chunk_size, removal_masks, retrain_tolerances, retrain_without
from ._settings import SolverSettings, blas_single_thread, objective
from ._train import check_xy, ridge_relative_grad_norm, train

__all__ = [
    "ChunkMapResult",
    "RetrainResult",
    "SolverSettings",
    "TrainResult",
    "actual_influence",
    "blas_single_thread",
    "call_interruptibly",
    "check_xy",
    "clear_interrupt",
    "estimate_lambda_max",
    "gd_step_size",
    "loo_retrain",
    "map_chunks",
    "objective",
    "plan_chunk_size",
    "removal_masks",
    "request_interrupt",
    "retrain_tolerances",
    "retrain_without",
    "ridge_relative_grad_norm",
    "train",
]
