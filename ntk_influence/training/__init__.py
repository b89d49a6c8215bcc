"""TODO."""

from ._chunks import ChunkMapResult, call_interruptibly, clear_interrupt, map_chunks, request_interrupt
from ._first_order import estimate_lambda_max, gd_step_size
from ._results import RetrainResult, TrainResult, actual_influence
from ._retrain import loo_retrain, plan_chunk_size, removal_masks, retrain_tolerances, retrain_without
from ._settings import SolverSettings, blas_single_thread, objective
from ._train import check_xy, train

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
    "train",
]
