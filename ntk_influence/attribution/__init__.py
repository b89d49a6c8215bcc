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
- ``_benchmark``: :func:`method_scores` (every method in :data:`METHODS` on one net, set up by
  :class:`ScoreOptions`) and :func:`attribution_benchmark` (LDS, leave-one-out correlation and
  mislabel AUC, as an :class:`AttributionResult`).
"""

from ._benchmark import METHODS, AttributionResult, ScoreOptions, attribution_benchmark, method_scores
from ._ihvp import IHVPInfluence, IHVPResult, hessian_dense, hvp, ihvp, ihvp_influence
from ._metrics import (
    additive_predictions,
    agreement,
    auc,
    linear_datamodeling_score,
    ntk_refit_outputs,
    pearson,
    random_subsets,
    spearman,
    subset_mask,
)
from ._tracin import TrainingPath, grad_dot_scores, tracin_scores, training_path
from ._trak import (
    first_order_scores,
    projected_gradients,
    projection_chunk,
    trak_ensemble_scores,
    trak_scores,
)

__all__ = [
    "METHODS",
    "AttributionResult",
    "IHVPInfluence",
    "IHVPResult",
    "ScoreOptions",
    "TrainingPath",
    "additive_predictions",
    "agreement",
    "attribution_benchmark",
    "auc",
    "first_order_scores",
    "grad_dot_scores",
    "hessian_dense",
    "hvp",
    "ihvp",
    "ihvp_influence",
    "linear_datamodeling_score",
    "method_scores",
    "ntk_refit_outputs",
    "pearson",
    "projected_gradients",
    "projection_chunk",
    "random_subsets",
    "spearman",
    "subset_mask",
    "tracin_scores",
    "training_path",
    "trak_ensemble_scores",
    "trak_scores",
]
