"""Data attribution on trained nets: the IHVP, TRAK, TracIn, the yardsticks and the benchmark.

Every score is ``(n_train, n_test)`` in this library's sign (positive: removing the training
point raises the test loss ``1/2 (f - y)^2``).

- ``_ihvp``: :func:`ihvp` (``H^-1 v`` for the Hessian of eq. 2 by dense solve, Woodbury, CG or
  LiSSA, as an :class:`IHVPResult`), :func:`hvp`, :func:`hessian_dense` and
  :func:`ihvp_influence`, the classic influence of eq. (12) (:class:`IHVPInfluence`);
- ``_trak``: :func:`first_order_scores` (eq. 12 from Gram matrices), TRAK's
  :func:`projected_gradients` and :func:`projection_chunk`, :func:`trak_scores` and
  :func:`trak_ensemble_scores`;
- ``_tracin``: :func:`training_path` (a :class:`TrainingPath` of checkpoints),
  :func:`tracin_scores` (TracIn-CP) and :func:`grad_dot_scores`;
- ``_metrics``: :func:`pearson`, :func:`spearman`, :func:`agreement`, :func:`auc`,
  :func:`linear_datamodeling_score` with :func:`additive_predictions`, and the subset helpers
  :func:`random_subsets`, :func:`subset_mask` and :func:`ntk_refit_outputs`;
- ``_protocols``: :func:`lds_run` (one kept fraction under one seed protocol, as an
  :class:`LDSRun`, with the fresh protocol's noise floor), :func:`fresh_seeds` and
  :func:`seed_protocols` (:data:`SEED_PROTOCOLS`);
- ``_counterfactual``: exact removals on the kernel refit: :func:`removal_deltas` (every
  candidate added to a removed set at once), :func:`greedy_flip_set` (the exact refit's
  smallest set found greedily), :func:`greedy_removal_path` (for data cleaning) and
  :func:`additive_flip_set`;
- ``_brittleness``: :func:`brittleness` (every method's flip sets, verified by retraining, as a
  :class:`BrittlenessResult`);
- ``_cleaning``: :func:`clean` (remove the points most harmful to a validation set by each
  ranking, retrain, measure the test set, as a :class:`CleaningResult`; :data:`CLEAN_METHODS`;
  :func:`summarise_trials` pools repeated trials);
- ``_benchmark``: :func:`method_scores` (every method in :data:`METHODS` on one net, set up by
  :class:`ScoreOptions`) and :func:`attribution_benchmark` (LDS under the seed protocols,
  leave-one-out correlation, brittleness and mislabel AUC, as an :class:`AttributionResult`).
"""

from ._benchmark import METHODS, AttributionResult, ScoreOptions, attribution_benchmark, method_scores
from ._brittleness import BrittlenessResult, brittleness
from ._cleaning import CLEAN_METHODS, CleaningResult, clean, summarise_trials
from ._counterfactual import (
    additive_flip_set,
    greedy_flip_set,
    greedy_removal_path,
    removal_deltas,
)
from ._ihvp import IHVPInfluence, IHVPResult, hessian_dense, hvp, ihvp, ihvp_influence
from ._metrics import (
    additive_predictions,
    agreement,
    auc,
    found_at,
    linear_datamodeling_score,
    ntk_refit_outputs,
    pearson,
    random_subsets,
    spearman,
    subset_mask,
)
from ._protocols import SEED_PROTOCOLS, LDSRun, fresh_seeds, lds_run, seed_protocols
from ._tracin import TrainingPath, grad_dot_scores, tracin_scores, training_path
from ._trak import (
    first_order_scores,
    projected_gradients,
    projection_chunk,
    trak_ensemble_scores,
    trak_scores,
)

__all__ = [
    "CLEAN_METHODS",
    "METHODS",
    "SEED_PROTOCOLS",
    "AttributionResult",
    "BrittlenessResult",
    "CleaningResult",
    "IHVPInfluence",
    "IHVPResult",
    "LDSRun",
    "ScoreOptions",
    "TrainingPath",
    "additive_flip_set",
    "additive_predictions",
    "agreement",
    "attribution_benchmark",
    "auc",
    "brittleness",
    "clean",
    "first_order_scores",
    "found_at",
    "fresh_seeds",
    "grad_dot_scores",
    "greedy_flip_set",
    "greedy_removal_path",
    "hessian_dense",
    "hvp",
    "ihvp",
    "ihvp_influence",
    "lds_run",
    "linear_datamodeling_score",
    "method_scores",
    "ntk_refit_outputs",
    "pearson",
    "projected_gradients",
    "projection_chunk",
    "random_subsets",
    "removal_deltas",
    "seed_protocols",
    "spearman",
    "subset_mask",
    "summarise_trials",
    "tracin_scores",
    "training_path",
    "trak_ensemble_scores",
    "trak_scores",
]
