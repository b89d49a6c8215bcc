"""TODO."""

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
